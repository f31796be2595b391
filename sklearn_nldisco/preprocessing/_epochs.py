"""Spike trains seen as a sequence of epochs (trials or time blocks).

Scikit-learn splits ``X`` along its first axis. A list of spike trains has
one entry per unit, so cross-validating over it splits neurons: each fold
is fitted on some units and scored on others. :class:`SpikeEpochs` puts
time on the first axis instead: its samples are ``[start, stop)``
intervals, and indexing it selects intervals while every unit's spike
train is kept whole (and shared, never copied). A :class:`SpikeBinner`
given a ``SpikeEpochs`` bins exactly the epochs it is given, so a test
fold is binned on its own epochs.
"""

from numbers import Integral, Real

import numpy as np
import pandas as pd

from ..datasets import Recording
from ._binning import _finite_interval, _number, _spike_trains, edge_offsets

# Metadata columns listed by the repr before it says "..."
_REPR_COLUMNS = 4


class SpikeEpochs:
    """Spike trains with ``[start, stop)`` epochs as samples, for cross-validation.

    An array-like of epochs for scikit-learn: ``len(epochs)`` and
    ``epochs.shape == (n_epochs,)`` count epochs, and indexing with an
    integer, a slice, an integer array or a boolean mask returns a
    ``SpikeEpochs`` over the chosen epochs, sharing the spike trains. Every
    cross-validation splitter and ``GridSearchCV`` thus split epochs
    (trials or contiguous time blocks), never units. Pass it as ``X`` to a
    :class:`SpikeBinner` (which bins the epochs it is given at every call)
    at the start of a ``Pipeline``.

    Parameters
    ----------
    spike_times : sequence of array-like, or any unit-major input of SpikeBinner
        One 1-D array of spike times (s) per unit (float64 arrays are kept,
        not copied), or a long-form DataFrame (``unit`` and ``time``
        columns), a pynwb ``Units`` table or an object with ``spike_times``
        and ``units`` (such as a :class:`~sklearn_nldisco.datasets.Recording`),
        whose unit names are kept.
    intervals : array-like of shape (n_epochs, 2) or DataFrame, default=None
        ``[start, stop)`` times (s) of the epochs, finite, with ``stop >
        start``, not overlapping (touching is allowed), in any order. A
        DataFrame needs ``start_time`` and ``stop_time`` columns (a trial
        table); it is then also the default ``metadata``. None: contiguous
        blocks of ``block_duration`` seconds, ``[i * block_duration, (i + 1)
        * block_duration)``, from the one holding the earliest spike to the
        one holding the latest.
    block_duration : float, default=None
        Length (s) of each block when ``intervals`` is None; only then. A
        multiple of the binner's ``bin_size`` fills each block with whole
        bins.
    unit_names : sequence of str, default=None
        One name per unit; None keeps the names ``spike_times`` carries,
        if any.
    metadata : DataFrame of shape (n_epochs, n_columns), default=None
        Per-epoch information (e.g. trial-table columns), row ``i`` for
        epoch ``i``; :meth:`SpikeBinner.transform_metadata` spreads it onto
        the bins.
    epoch_ids : array-like of shape (n_epochs,), default=None
        Unique ids of the epochs, kept through indexing; None: the index of
        ``metadata`` when given, else ``0 .. n_epochs - 1``.

    Attributes
    ----------
    spike_times : list of ndarray of float64
        The spike trains of all units, whole, shared by every subset.
    unit_names : ndarray of str or None
        Unit names, when known.
    intervals : ndarray of shape (n_epochs, 2)
        ``[start, stop)`` of each epoch (read-only).
    metadata : DataFrame or None
        Per-epoch metadata, one row per epoch.
    epoch_ids : ndarray of shape (n_epochs,)
        Id of each epoch.
    n_units, n_epochs : int
    shape : tuple
        ``(n_epochs,)``: the samples are epochs.

    See Also
    --------
    SpikeBinner : Bins a ``SpikeEpochs`` epoch by epoch.
    SpikeEpochs.from_recording : Trials or time blocks of a recording.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.preprocessing import SpikeEpochs
    >>> spike_times = [np.array([0.1, 1.2, 2.5]), np.array([0.4, 0.5, 3.9])]
    >>> epochs = SpikeEpochs(spike_times, [[0, 1], [1, 2], [2, 3], [3, 4]])
    >>> epochs
    SpikeEpochs(n_epochs=4, n_units=2, span_s=(0.0, 4.0))
    >>> len(epochs), epochs.shape
    (4, (4,))
    >>> test = epochs[[1, 3]]
    >>> test.intervals.tolist(), test.epoch_ids.tolist()
    ([[1.0, 2.0], [3.0, 4.0]], [1, 3])
    >>> test.spike_times[0] is epochs.spike_times[0]
    True
    """

    def __init__(self, spike_times, intervals=None, *, block_duration=None, unit_names=None,
                 metadata=None, epoch_ids=None):
        trains = _spike_trains(spike_times, "unit", "time")
        if len(trains.times) == 0:
            raise ValueError(
                "spike_times has no units; expected spike times of at least one unit.")
        if isinstance(intervals, pd.DataFrame):
            if metadata is None:
                metadata = intervals
            intervals = _interval_table(intervals)
        if intervals is None:
            intervals = _blocks(trains.times, block_duration)
        elif block_duration is not None:
            raise ValueError(
                f"block_duration={_number(block_duration)} was given with intervals; "
                "expected block_duration only with intervals=None.")
        intervals = _check_intervals(intervals)
        names = trains.names if unit_names is None else _check_unit_names(
            unit_names, len(trains.times))
        metadata = _check_metadata(metadata, len(intervals))
        if epoch_ids is None:
            epoch_ids = (np.arange(len(intervals)) if metadata is None
                         else metadata.index.to_numpy())
        self._set(trains.times, names, intervals, metadata,
                  _check_epoch_ids(epoch_ids, len(intervals)))

    @classmethod
    def from_recording(cls, recording, intervals="trials", *, block_duration=None):
        """The trials, given intervals or contiguous blocks of a recording.

        Parameters
        ----------
        recording : Recording
            The session; its unit ids name the units.
        intervals : "trials", array-like of shape (n_epochs, 2), DataFrame or None, \
default="trials"
            ``"trials"``: the recording's trials (its trial table, with the
            trial ids as ``epoch_ids`` and as a ``trial_id`` column of
            ``metadata``). An array or a DataFrame (``start_time``,
            ``stop_time``): those intervals (a DataFrame is also the
            metadata). None: blocks of ``block_duration`` seconds, for a
            recording without trials.
        block_duration : float, default=None
            Block length (s), with ``intervals=None`` only.

        Returns
        -------
        epochs : SpikeEpochs

        Examples
        --------
        >>> from sklearn_nldisco.datasets import make_reaching_session
        >>> from sklearn_nldisco.preprocessing import SpikeEpochs
        >>> recording, _ = make_reaching_session(n_units=20, n_trials=12, random_state=0)
        >>> epochs = SpikeEpochs.from_recording(recording)
        >>> epochs.n_epochs, epochs.n_units, "trial_type" in epochs.metadata
        (12, 20, True)
        >>> SpikeEpochs.from_recording(recording, None, block_duration=5.0).n_epochs > 1
        True
        """
        if not isinstance(recording, Recording):
            raise TypeError(
                f"recording is a {type(recording).__name__}; expected a Recording "
                "(use SpikeEpochs(spike_times, intervals) for other inputs).")
        if isinstance(intervals, str):
            if intervals != "trials":
                raise ValueError(
                    f"intervals={intervals!r}; expected 'trials', an (n_epochs, 2) array, "
                    "a DataFrame with start_time and stop_time, or None.")
            trials = recording.trials
            if trials is None or len(trials) == 0:
                raise ValueError(
                    f"intervals='trials' but the recording {recording.session_id!r} has no "
                    "trials; pass intervals=None with block_duration (seconds) for "
                    "contiguous time blocks.")
            metadata = trials
            if "trial_id" not in trials.columns:
                metadata = trials.copy()
                metadata.insert(0, "trial_id", trials.index.to_numpy())
            return cls(recording, _interval_table(trials), metadata=metadata,
                       epoch_ids=trials.index.to_numpy())
        return cls(recording, intervals, block_duration=block_duration)

    # -- the array-like face ---------------------------------------------------

    @property
    def n_units(self):
        """Number of units."""
        return len(self.spike_times)

    @property
    def n_epochs(self):
        """Number of epochs."""
        return len(self.intervals)

    @property
    def shape(self):
        """``(n_epochs,)``: the samples scikit-learn splits are epochs."""
        return (self.n_epochs,)

    def __len__(self):
        return self.n_epochs

    def __getitem__(self, key):
        # scikit-learn's _safe_indexing asks for ``X[key, ...]``
        if isinstance(key, tuple):
            if len(key) == 2 and key[1] is Ellipsis:
                key = key[0]
            elif len(key) == 1:
                key = key[0]
            else:
                raise IndexError(
                    f"SpikeEpochs has one axis (epochs); got the index {key!r}.")
        return self._take(self._positions(key))

    def __repr__(self):
        parts = [f"n_epochs={self.n_epochs}", f"n_units={self.n_units}"]
        if self.n_epochs:
            parts.append(f"span_s=({_short(self.intervals[:, 0].min())}, "
                         f"{_short(self.intervals[:, 1].max())})")
        if self.metadata is not None:
            columns = [str(column) for column in self.metadata.columns]
            shown = columns[:_REPR_COLUMNS] + (["..."] if len(columns) > _REPR_COLUMNS else [])
            parts.append(f"metadata=[{', '.join(shown)}]")
        return f"SpikeEpochs({', '.join(parts)})"

    # -- helpers -----------------------------------------------------------------

    def _positions(self, key):
        n_epochs = self.n_epochs
        if isinstance(key, (bool, np.bool_)):
            raise IndexError("SpikeEpochs cannot be indexed with a single boolean.")
        if isinstance(key, Integral):
            if not -n_epochs <= key < n_epochs:
                raise IndexError(f"epoch {key} is out of range for {n_epochs} epochs.")
            return np.array([int(key) % n_epochs])
        if isinstance(key, slice):
            return np.arange(n_epochs)[key]
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (n_epochs,):
                raise IndexError(
                    f"a boolean mask over {n_epochs} epochs must have shape ({n_epochs},); "
                    f"got {key.shape}.")
            return np.flatnonzero(key)
        if key.size == 0:
            return np.empty(0, dtype=np.intp)
        if key.ndim != 1 or key.dtype.kind not in "iu":
            raise IndexError(
                f"SpikeEpochs is indexed by an int, a slice, a 1-D integer array or a "
                f"boolean mask; got an array of shape {key.shape} and dtype {key.dtype}.")
        if key.min() < -n_epochs or key.max() >= n_epochs:
            raise IndexError(f"epoch indices must be in [-{n_epochs}, {n_epochs}); got "
                             f"{key.min()} to {key.max()}.")
        return key % n_epochs

    def _take(self, positions):
        subset = object.__new__(type(self))
        metadata = None if self.metadata is None else self.metadata.iloc[positions]
        subset._set(self.spike_times, self.unit_names, self.intervals[positions], metadata,
                    self.epoch_ids[positions])
        return subset

    def _set(self, spike_times, unit_names, intervals, metadata, epoch_ids):
        intervals.flags.writeable = False
        self.spike_times = spike_times
        self.unit_names = None if unit_names is None else np.asarray(unit_names, dtype=object)
        self.intervals = intervals
        self.metadata = metadata
        self.epoch_ids = epoch_ids


def _short(seconds):
    return float(f"{seconds:.6g}")


def _interval_table(table):
    missing = {"start_time", "stop_time"} - set(table.columns)
    if missing:
        raise ValueError(
            f"intervals is a DataFrame without column(s) {sorted(missing)}; expected "
            f"start_time and stop_time, got {list(table.columns)}.")
    return table[["start_time", "stop_time"]].to_numpy()


def _check_intervals(intervals):
    try:
        intervals = np.array(intervals, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"intervals cannot be read as numbers ({error}); expected an (n_epochs, 2) "
            "array of [start, stop) times in seconds.") from None
    if intervals.ndim != 2 or intervals.shape[1] != 2 or len(intervals) == 0:
        raise ValueError(
            f"intervals has shape {intervals.shape}; expected (n_epochs, 2) with "
            "n_epochs >= 1.")
    for row, (start, stop) in enumerate(intervals):
        _finite_interval(f"intervals[{row}]", start, stop)
    order = np.argsort(intervals[:, 0], kind="stable")
    overlapping = np.flatnonzero(intervals[order[1:], 0] < intervals[order[:-1], 1])
    if overlapping.size:
        first, second = order[overlapping[0]], order[overlapping[0] + 1]
        raise ValueError(
            f"intervals {first} {intervals[first].tolist()} and {second} "
            f"{intervals[second].tolist()} overlap; expected disjoint [start, stop) epochs "
            "(touching is allowed), so that no spike is counted twice.")
    return intervals


def _blocks(trains, block_duration):
    if block_duration is None:
        raise ValueError(
            "intervals=None needs block_duration (seconds); expected intervals (trials) "
            "or a block_duration for contiguous time blocks.")
    if (not isinstance(block_duration, Real) or isinstance(block_duration, bool)
            or not np.isfinite(block_duration) or block_duration <= 0):
        raise ValueError(
            f"block_duration={block_duration!r}; expected a positive number of seconds.")
    spiking = [times for times in trains if len(times)]
    if not spiking:
        raise ValueError(
            "spike_times has no spikes, so blocks cannot span them; pass intervals.")
    earliest = min(times.min() for times in spiking)
    latest = max(times.max() for times in spiking)
    if not (np.isfinite(earliest) and np.isfinite(latest)):
        raise ValueError("spike_times contain NaN or infinite times; expected finite seconds.")
    # Edges at whole multiples of block_duration from time 0, each rounded
    # once, as the binner's edges are: a block of whole bins then ends on the
    # edge of its last bin (blocks started at the first spike could miss it
    # by a rounding step and lose that bin).
    first = int(np.floor(earliest / block_duration)) - 1
    last = int(np.floor(latest / block_duration)) + 2
    edges = edge_offsets(np.arange(first, last + 1), block_duration)
    edges = edges[np.searchsorted(edges, earliest, side="right") - 1:]
    edges = edges[: np.searchsorted(edges, latest, side="right") + 1]
    return np.column_stack([edges[:-1], edges[1:]])


def _check_unit_names(unit_names, n_units):
    names = [str(name) for name in unit_names]
    if len(names) != n_units:
        raise ValueError(
            f"unit_names has {len(names)} names for {n_units} units; expected one per unit.")
    return names


def _check_metadata(metadata, n_epochs):
    if metadata is None:
        return None
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(
            f"metadata is a {type(metadata).__name__}; expected a DataFrame with one row "
            "per epoch.")
    if len(metadata) != n_epochs:
        raise ValueError(
            f"metadata has {len(metadata)} rows for {n_epochs} epochs; expected one row "
            "per epoch.")
    return metadata


def _check_epoch_ids(epoch_ids, n_epochs):
    epoch_ids = np.asarray(epoch_ids)
    if epoch_ids.shape != (n_epochs,):
        raise ValueError(
            f"epoch_ids has shape {epoch_ids.shape}; expected ({n_epochs},), one id per epoch.")
    if len(pd.unique(epoch_ids)) != n_epochs:
        raise ValueError("epoch_ids has repeated ids; expected one unique id per epoch.")
    return epoch_ids
