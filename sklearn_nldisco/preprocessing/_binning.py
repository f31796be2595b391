"""Spike trains to spike counts on a grid of half-open time bins.

The grid is fixed at fit: bins of ``bin_size`` seconds laid out in one or
more intervals (a whole recording, or its trials). Edges are computed from
integer bin indices, never accumulated, and every spike is placed by exact
comparison with those edges, so ``bin_edges_`` alone says which bin a spike
falls in. The numerics are plain functions (:func:`make_bin_grid`,
:func:`bin_spike_trains`, :func:`smooth_within_intervals`);
:class:`SpikeBinner` is their scikit-learn face.
"""

import sys
import threading
from collections.abc import Hashable, Mapping
from fractions import Fraction
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from scipy.ndimage import gaussian_filter1d
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted

# Bins per interval are capped so that ``index * numerator`` stays exact in
# float64 (below 2**53) in ``edge_offsets``.
_MAX_BINS_PER_INTERVAL = 2**31
_MAX_EXACT_NUMERATOR = 2**21
# A bin must span this many float64 steps at the largest time of the grid, so
# that an estimated bin index is never off by more than one.
_MIN_ULPS_PER_BIN = 1024
# Subtracted from estimated bin positions (in bins) so that an estimate is
# never past the true bin; many times the worst rounding error.
_ESTIMATE_MARGIN = 1.0 / 16.0
# Units filled per block before the block is copied, transposed, into the
# C-ordered output (see ``bin_spike_trains``).
_BLOCK_UNITS = 64


def _number(value):
    """A number as Python prints a float (``0.05``, ``nan``), for messages."""
    return repr(float(value)) if isinstance(value, Real) else repr(value)


def edge_offsets(bin_indices, bin_size):
    """Offsets ``i * bin_size`` of bin edges from the start of their interval.

    Each offset is rounded once, from exact arithmetic: the bin size is read
    as the shortest decimal that prints as the float (``0.02`` for 0.02),
    i.e. the rational ``p / q``, and ``i * p / q`` is rounded to the nearest
    float. An edge is thus the float nearest to its true time, and equals a
    time computed the usual way from a sampling rate: ``35 * 0.02`` is
    ``0.7000000000000001`` in floating point, but edge 35 of a 20 ms grid is
    ``0.7``, as is the time of sample 700 at 1 kHz, ``700 / 1000``. When
    ``p`` is too large for exact integer products, the offset is the product
    ``i * bin_size``, also rounded once.

    Parameters
    ----------
    bin_indices : array-like of int
        Edge indices, ``0 <= i <= 2**31``.
    bin_size : float
        Bin width in seconds.

    Returns
    -------
    offsets : ndarray of float64, the shape of ``bin_indices``

    Examples
    --------
    >>> from sklearn_nldisco.preprocessing._binning import edge_offsets
    >>> edge_offsets([0, 1, 35], 0.02).tolist()
    [0.0, 0.02, 0.7]
    >>> 35 * 0.02
    0.7000000000000001
    """
    indices = np.asarray(bin_indices, dtype=np.int64)
    ratio = Fraction(repr(float(bin_size)))
    if ratio.numerator <= _MAX_EXACT_NUMERATOR and ratio.denominator <= 2**53:
        # exact integers in float64, so the one division is the only rounding
        return (indices * ratio.numerator).astype(np.float64) / float(ratio.denominator)
    return indices * float(bin_size)


def _last_edge_at_or_before(start, time, bin_size):
    """Largest ``i >= 0`` whose edge ``start + offset(i)`` is ``<= time``."""
    estimate = np.floor((time - start) / bin_size)
    estimate = int(min(max(estimate, 0), _MAX_BINS_PER_INTERVAL))
    candidates = np.arange(max(estimate - 2, 0), estimate + 3)
    at_or_before = start + edge_offsets(candidates, bin_size) <= time
    return int(candidates[np.flatnonzero(at_or_before)[-1]])


def _check_resolution(bin_size, largest_time):
    """float64 must resolve the bins at the largest time of the grid."""
    resolution = _MIN_ULPS_PER_BIN * np.spacing(abs(float(largest_time)))
    if bin_size < resolution:
        raise ValueError(
            f"bin_size={_number(bin_size)} is too small for times as large as "
            f"{_number(largest_time)} s, where float64 resolves only "
            f"{np.spacing(abs(float(largest_time))):.3g} s; expected bin_size >= "
            f"{resolution:.3g} s, or times measured from a later origin."
        )


def make_bin_grid(intervals, bin_size):
    """Full bins of ``bin_size`` in each interval, in time order.

    Interval ``[start, stop)`` holds the bins ``[start + offset(i),
    start + offset(i + 1))`` whose right edge is at or before ``stop``
    (``offset`` is :func:`edge_offsets`); a trailing partial bin is not part
    of the grid.

    Parameters
    ----------
    intervals : ndarray of shape (n_intervals, 2)
        Finite ``[start, stop)`` pairs with ``stop > start``, in any order,
        not overlapping (touching is allowed).
    bin_size : float
        Bin width in seconds.

    Returns
    -------
    bin_edges : ndarray of shape (n_bins, 2)
        Left and right edge of each bin, sorted by time.
    interval_ids : ndarray of shape (n_bins,), dtype int64
        Row of ``intervals`` that each bin belongs to.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.preprocessing._binning import make_bin_grid
    >>> edges, ids = make_bin_grid(np.array([[2.0, 2.25], [0.0, 0.2]]), 0.1)
    >>> edges.tolist()
    [[0.0, 0.1], [0.1, 0.2], [2.0, 2.1], [2.1, 2.2]]
    >>> ids.tolist()
    [1, 1, 0, 0]
    """
    intervals = np.asarray(intervals, dtype=np.float64)
    order = np.argsort(intervals[:, 0], kind="stable")
    ordered = intervals[order]
    overlapping = np.flatnonzero(ordered[1:, 0] < ordered[:-1, 1])
    if overlapping.size:
        first, second = order[overlapping[0]], order[overlapping[0] + 1]
        overlap = intervals[first, 1] - intervals[second, 0]
        raise ValueError(
            f"intervals overlap (by {overlap:.3g} s): interval {first} "
            f"{intervals[first].tolist()} and interval {second} "
            f"{intervals[second].tolist()}; expected disjoint [start, stop) intervals "
            "(touching is allowed)."
        )
    _check_resolution(bin_size, np.abs(intervals).max())
    lefts, rights, ids = [], [], []
    for interval_id in order:
        start, stop = intervals[interval_id]
        n_bins = _last_edge_at_or_before(start, stop, bin_size)
        if n_bins >= _MAX_BINS_PER_INTERVAL:
            raise ValueError(
                f"interval {interval_id} [{_number(start)}, {_number(stop)}) holds more "
                f"than {_MAX_BINS_PER_INTERVAL} bins of bin_size={_number(bin_size)}; expected "
                "fewer bins (a larger bin_size or shorter intervals)."
            )
        edges = start + edge_offsets(np.arange(n_bins + 1), bin_size)
        lefts.append(edges[:-1])
        rights.append(edges[1:])
        ids.append(np.full(n_bins, interval_id, dtype=np.int64))
    bin_edges = np.column_stack([np.concatenate(lefts), np.concatenate(rights)])
    return bin_edges, np.concatenate(ids)


def _segment_bounds(interval_ids):
    """First and one-past-last bin of each run of bins of one interval."""
    breaks = np.flatnonzero(np.diff(interval_ids)) + 1
    return np.r_[0, breaks], np.r_[breaks, len(interval_ids)]


class _CellLayout(NamedTuple):
    """Where a spike may land: each segment's bins plus one cell on each side.

    A segment (the bins of one interval) of ``n`` bins owns ``n + 2`` cells:
    cell 0 holds spikes before its first bin, cells ``1..n`` its bins and
    cell ``n + 1`` spikes after its last full bin. ``pad_edges`` holds, per
    segment, ``[-inf, edge_0, ..., edge_n, +inf]``, so the cell ``j`` of
    segment ``s`` is ``[pad_edges[p], pad_edges[p + 1])`` with
    ``p = pad_offsets[s] + j``, and its cell number is ``p - s``.

    With several segments, ``slot_segments`` (when not None) finds a spike's
    segment in constant time: slot ``i`` is ``[starts[0] + i * slot_width,
    ...)``, half as wide as the closest two starts, so at most one start
    lies within a slot and a spike's segment is its slot's segment or the
    next one.
    """

    starts: np.ndarray
    next_starts: np.ndarray
    slot_width: float
    slot_segments: np.ndarray | None
    last_cells: np.ndarray
    pad_offsets: np.ndarray
    pad_edges: np.ndarray
    n_cells: int
    bin_cells: object
    outside_cells: np.ndarray


def _cell_layout(bin_edges, interval_ids):
    firsts, lasts = _segment_bounds(interval_ids)
    sizes = lasts - firsts
    n_bins, n_segments = len(bin_edges), len(firsts)
    starts = bin_edges[firsts, 0]
    segment_of_bin = np.repeat(np.arange(n_segments), sizes)
    pad_offsets = np.r_[0, np.cumsum(sizes + 3)[:-1]]
    pad_edges = np.empty(n_bins + 3 * n_segments)
    pad_edges[pad_offsets] = -np.inf
    pad_edges[np.arange(n_bins) + 1 + 3 * segment_of_bin] = bin_edges[:, 0]
    pad_edges[pad_offsets + sizes + 1] = bin_edges[lasts - 1, 1]
    pad_edges[pad_offsets + sizes + 2] = np.inf
    slot_width, slot_segments = np.inf, None
    if n_segments == 1:
        bin_cells = slice(1, n_bins + 1)
    else:
        bin_cells = np.arange(n_bins) + 1 + 2 * segment_of_bin
        # starts are at least one bin apart, so slot_width >= bin_size / 2
        slot_width = np.diff(starts).min() / 2.0
        n_slots = int((starts[-1] - starts[0]) / slot_width) + 2
        if n_slots <= max(4 * n_bins, 2**20):
            slot_starts = starts[0] + np.arange(n_slots) * slot_width
            slot_segments = np.searchsorted(starts, slot_starts, side="right") - 1
    first_cells = pad_offsets - np.arange(n_segments)
    return _CellLayout(
        starts=starts,
        next_starts=np.r_[starts[1:], np.inf],
        slot_width=slot_width,
        slot_segments=slot_segments,
        last_cells=(sizes + 1).astype(np.float64),
        pad_offsets=pad_offsets,
        pad_edges=pad_edges,
        n_cells=n_bins + 2 * n_segments,
        bin_cells=bin_cells,
        outside_cells=np.r_[first_cells, first_cells + sizes + 1],
    )


class _Workspace:
    """Per-thread buffers, grown to the longest spike train seen."""

    def __init__(self):
        self.size = -1

    def take(self, n_spikes):
        if n_spikes > self.size:
            self.size = n_spikes
            self.scaled = np.empty(n_spikes, dtype=np.float64)
            self.index = np.empty(n_spikes, dtype=np.intp)
            self.flags = np.empty(n_spikes, dtype=bool)
            self.segment = np.empty(n_spikes, dtype=np.intp)
        return (self.scaled[:n_spikes], self.index[:n_spikes], self.flags[:n_spikes],
                self.segment[:n_spikes])


def _find_segments(times, layout, segment, scaled, index, flags):
    """Into ``segment``: the last segment starting at or before each spike (0 if none)."""
    if layout.slot_segments is None:
        segment[...] = np.searchsorted(layout.starts, times, side="right")
        segment -= 1
        np.maximum(segment, 0, out=segment)
        return
    # slot estimate never past the true slot (see _count_cells), so the
    # segment is the slot's or the next
    np.subtract(times, layout.starts[0], out=scaled)
    scaled *= 1.0 / layout.slot_width
    scaled -= _ESTIMATE_MARGIN
    np.clip(scaled, 0.0, len(layout.slot_segments) - 1, out=scaled)
    np.copyto(index, scaled, casting="unsafe")  # truncation: floor of values >= 0
    np.take(layout.slot_segments, index, out=segment)
    np.take(layout.next_starts, segment, out=scaled)
    np.greater_equal(times, scaled, out=flags)
    segment += flags


def _count_cells(times, layout, bin_size, workspace):
    """Spikes of one unit per cell of ``layout``; ``times`` are finite."""
    segmented = len(layout.starts) > 1
    scaled, index, flags, segment = workspace.take(len(times))
    if segmented:
        _find_segments(times, layout, segment, scaled, index, flags)
        np.take(layout.starts, segment, out=scaled)
        np.subtract(times, scaled, out=scaled)
    else:
        np.subtract(times, layout.starts[0], out=scaled)
    # Estimated cell 1 + floor((t - start) / bin_size - margin). The rounding
    # error of the quotient is far below the margin (``_check_resolution``),
    # so the estimate is the true cell or the one before it.
    scaled *= 1.0 / bin_size
    scaled += 1.0 - _ESTIMATE_MARGIN
    if segmented:
        np.clip(scaled, 0.0, np.take(layout.last_cells, segment), out=scaled)
    else:
        np.clip(scaled, 0.0, layout.last_cells[0], out=scaled)
    np.copyto(index, scaled, casting="unsafe")  # truncation: floor of values >= 0
    if segmented:
        index += np.take(layout.pad_offsets, segment)
    # the exact step: move to the next cell when the spike is at or past its
    # left edge
    index += 1
    np.take(layout.pad_edges, index, out=scaled)
    index -= 1
    np.greater_equal(times, scaled, out=flags)
    index += flags
    if segmented:
        index -= segment
    return np.bincount(index, minlength=layout.n_cells)


def _finite_range(times, unit):
    """Earliest and latest spike of a unit (None if it has none); raises on
    NaN and infinite times."""
    if not times.size:
        return None
    earliest, latest = times.min(), times.max()
    if not (np.isfinite(earliest) and np.isfinite(latest)):
        bad = times[~np.isfinite(times)][0]
        raise ValueError(
            f"spike times of unit {unit} contain {_number(bad)}; expected finite "
            "times in seconds."
        )
    return earliest, latest


def bin_spike_trains(spike_trains, bin_edges, interval_ids, bin_size, *,
                     dtype=np.float64, n_jobs=None, check_finite=True):
    """Count each unit's spikes in the bins of a grid.

    A spike at time ``t`` is counted in bin ``b`` when
    ``bin_edges[b, 0] <= t < bin_edges[b, 1]``; spikes in no bin are dropped.

    Parameters
    ----------
    spike_trains : sequence of ndarray of float64
        One 1-D array of spike times (s) per unit, in any order.
    bin_edges : ndarray of shape (n_bins, 2)
        Bins from :func:`make_bin_grid`.
    interval_ids : ndarray of shape (n_bins,)
        Interval of each bin, from :func:`make_bin_grid`.
    bin_size : float
        The bin width the grid was made with.
    dtype : numpy dtype, default=np.float64
        Dtype of the counts. An integer dtype too small for a count raises.
    n_jobs : int, default=None
        Threads over units; None means 1 unless in a joblib context.
    check_finite : bool, default=True
        Raise on NaN or infinite spike times. False only for times already
        checked (NaN would give wrong counts).

    Returns
    -------
    counts : ndarray of shape (n_bins, n_units), C-ordered
    n_dropped : int
        Number of spikes outside every bin.
    """
    dtype = np.dtype(dtype)
    layout = _cell_layout(bin_edges, interval_ids)
    n_units, n_bins = len(spike_trains), len(bin_edges)
    counts = np.empty((n_bins, n_units), dtype=dtype)
    n_workers = max(1, min(effective_n_jobs(n_jobs), n_units))
    # A unit is a strided column of the C-ordered output. Units are counted
    # into a per-thread block of rows, then copied, transposed, into the
    # output; blocks are kept small next to the output (1/4 for all threads).
    block_units = min(_BLOCK_UNITS, n_units // (4 * n_workers))
    if block_units < 8:
        block_units = 1
    groups = iter(range(0, n_units, block_units))
    lock = threading.Lock()
    overflow_at = np.iinfo(dtype).max if dtype.kind in "iu" else None

    def work():
        workspace, n_dropped = _Workspace(), 0
        block = np.empty((block_units, n_bins), dtype=dtype) if block_units > 1 else None
        while True:
            with lock:
                first = next(groups, None)
            if first is None:
                return n_dropped
            stop = min(first + block_units, n_units)
            for unit in range(first, stop):
                times = spike_trains[unit]
                if check_finite:
                    _finite_range(times, unit)
                cells = _count_cells(times, layout, bin_size, workspace)
                n_dropped += int(cells[layout.outside_cells].sum())
                binned = cells[layout.bin_cells]
                if overflow_at is not None and binned.size and binned.max() > overflow_at:
                    raise ValueError(
                        f"dtype={dtype.name!r} cannot hold a count of {binned.max()} "
                        f"spikes (unit {unit}); expected a wider dtype, e.g. 'int64' "
                        "or 'float64'."
                    )
                if block is None:
                    counts[:, unit] = binned
                else:
                    block[unit - first] = binned
            if block is not None:
                counts[:, first:stop] = block[: stop - first].T

    dropped = Parallel(n_jobs=n_workers, require="sharedmem")(
        delayed(work)() for _ in range(n_workers)
    )
    return counts, int(sum(dropped))


def smooth_within_intervals(counts, interval_ids, sigma_bins):
    """Gaussian smoothing along time, in place, within each interval only.

    Each run of bins of one interval is filtered on its own with
    :func:`scipy.ndimage.gaussian_filter1d` (``mode="reflect"``, truncated
    at 4 sigma): nothing leaks between intervals, even touching ones, and
    the reflecting boundary keeps each interval's total count.

    Parameters
    ----------
    counts : ndarray of shape (n_bins, n_units), floating dtype
        Modified in place.
    interval_ids : ndarray of shape (n_bins,)
        Interval of each bin.
    sigma_bins : float
        Standard deviation of the kernel, in bins.

    Returns
    -------
    counts : ndarray
        The same array.
    """
    firsts, lasts = _segment_bounds(interval_ids)
    for first, last in zip(firsts, lasts):
        # column chunks bound the filter's temporary copy
        width = max(1, 2**22 // (last - first))
        for column in range(0, counts.shape[1], width):
            block = counts[first:last, column : column + width]
            block[...] = gaussian_filter1d(block, sigma_bins, axis=0, mode="reflect")
    return counts


class _SpikeTrains(NamedTuple):
    times: list
    names: list | None
    long_form: bool = False


def _as_spike_trains(X, name="X"):
    """A sequence of 1-D arrays, as a list of float64 arrays (no copy if float64)."""
    if isinstance(X, np.ndarray) and X.dtype != object:
        hint = "[X] for one unit" if X.ndim == 1 else "list(X) if each row is a unit"
        raise ValueError(
            f"{name} is a {X.ndim}-D {X.dtype} array of shape {X.shape}; expected a "
            f"sequence of 1-D spike-time arrays, one per unit (pass {hint})."
        )
    if isinstance(X, (str, bytes, Mapping)) or not hasattr(X, "__iter__"):
        raise ValueError(
            f"{name} is a {type(X).__name__}; expected a sequence of 1-D spike-time "
            "arrays (one per unit), a long-form DataFrame, a pynwb Units table, a "
            "pynapple TsGroup or an object with spike_times and units attributes."
        )
    trains = []
    for unit, times in enumerate(X):
        pynapple_kind = _pynapple_class(times)
        if pynapple_kind is not None:
            # a Tsd's array is its values, not its times: read the timestamps
            trains.append(_pynapple_spike_times(times, pynapple_kind, f"{name}[{unit}]"))
            continue
        if isinstance(times, (str, bytes)):
            raise ValueError(
                f"{name}[{unit}] is a {type(times).__name__}; expected a 1-D array "
                "of spike times in seconds."
            )
        try:
            times = np.asarray(times, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{name}[{unit}] cannot be read as spike times ({error}); expected a "
                "1-D array of numbers in seconds."
            ) from None
        if times.ndim != 1:
            raise ValueError(
                f"{name}[{unit}] has shape {times.shape}; expected a 1-D array of "
                "spike times in seconds."
            )
        trains.append(times)
    return trains


def _from_long_form(frame, unit_column, time_column):
    for argument, column in (("unit_column", unit_column), ("time_column", time_column)):
        if column not in frame.columns:
            raise ValueError(
                f"{argument}={column!r} is not a column of X; its columns are "
                f"{list(frame.columns)}."
            )
    try:
        times = frame[time_column].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"column {time_column!r} of X cannot be read as spike times ({error}); "
            "expected numbers in seconds."
        ) from None
    codes, labels = pd.factorize(frame[unit_column], sort=True)
    if (codes < 0).any():
        raise ValueError(f"column {unit_column!r} of X has missing unit labels.")
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes, minlength=len(labels)))
    trains = np.split(times[order], ends[:-1]) if len(labels) else []
    return _SpikeTrains(trains, [str(label) for label in labels], long_form=True)


def _from_nwb_units(units):
    if units.spike_times is None:
        raise ValueError(
            f"the Units table {units.name!r} has no spike_times column; expected "
            "spike times for every unit."
        )
    times = np.asarray(units.spike_times.data[:], dtype=np.float64)
    ends = np.asarray(units.spike_times_index.data[:], dtype=np.int64)
    starts = np.r_[0, ends[:-1]]
    trains = [times[start:end] for start, end in zip(starts, ends)]
    return _SpikeTrains(trains, [str(unit_id) for unit_id in units.id[:]])


def _pynapple_class(obj):
    """Name of the pynapple class ``obj`` is an instance of, or None.

    Read from the class hierarchy, so that pynapple is never imported here.
    """
    for cls in type(obj).__mro__:
        module = cls.__module__
        if module == "pynapple" or module.startswith("pynapple."):
            return cls.__name__
    return None


def _pynapple_spike_times(obj, kind, name):
    """Timestamps (s) of a pynapple ``Ts`` or ``Tsd`` as spike times; a Tsd's
    values (e.g. amplitudes) are not used."""
    if kind not in ("Ts", "Tsd"):
        raise ValueError(
            f"{name} is a pynapple {kind}; expected a Ts or Tsd of spike times "
            "for one unit."
        )
    return np.asarray(obj.t, dtype=np.float64)


def _from_pynapple(X, kind):
    """A TsGroup gives one unit per key, named by the key; a Ts or Tsd one unit."""
    if kind == "TsGroup":
        keys = list(X.keys())
        trains = [
            _pynapple_spike_times(X[key], _pynapple_class(X[key]), f"X[{key!r}]")
            for key in keys
        ]
        return _SpikeTrains(trains, [str(key) for key in keys])
    if kind in ("Ts", "Tsd"):
        return _SpikeTrains([_pynapple_spike_times(X, kind, "X")], None)
    if kind == "IntervalSet":
        raise ValueError(
            "X is a pynapple IntervalSet, which holds time intervals, not spikes; "
            "expected it as SpikeBinner(intervals=...), and spike times (a TsGroup, "
            "Ts or Tsd) as X."
        )
    raise ValueError(
        f"X is a pynapple {kind}; expected a TsGroup (one unit per key), or a Ts "
        "or Tsd (one unit) whose timestamps are spike times in seconds."
    )


def _spike_trains(X, unit_column, time_column):
    """Per-unit spike times and unit names from any accepted input."""
    nwb = sys.modules.get("pynwb.misc")  # a Units table means pynwb is loaded
    if nwb is not None and isinstance(X, nwb.Units):
        return _from_nwb_units(X)
    if isinstance(X, pd.DataFrame):
        return _from_long_form(X, unit_column, time_column)
    pynapple_kind = _pynapple_class(X)
    if pynapple_kind is not None:
        return _from_pynapple(X, pynapple_kind)
    if hasattr(X, "spike_times") and isinstance(getattr(X, "units", None), pd.DataFrame):
        trains = _as_spike_trains(X.spike_times, "X.spike_times")
        if len(trains) != len(X.units):
            raise ValueError(
                f"X.spike_times has {len(trains)} units but X.units has "
                f"{len(X.units)} rows; expected one row per unit."
            )
        return _SpikeTrains(trains, [str(unit_id) for unit_id in X.units.index])
    return _SpikeTrains(_as_spike_trains(X), None)


def _finite_interval(argument, start, stop):
    if not (np.isfinite(start) and np.isfinite(stop)):
        raise ValueError(
            f"{argument}=[{_number(start)}, {_number(stop)}) is not finite; expected "
            "times in seconds."
        )
    if stop <= start:
        raise ValueError(
            f"{argument}: stop={_number(stop)} <= start={_number(start)}; expected stop > start."
        )


_UNIT_SPLIT_HINT = (
    " Cross-validation (GridSearchCV, cross_validate) over spike trains splits "
    "neurons, not time: each fold is fitted on some units and scored on others. "
    "Pass a SpikeEpochs as X (trials or time blocks as samples, e.g. "
    "SpikeEpochs.from_recording(recording)) to split time instead."
)


def _as_epochs(X):
    """``X`` when it is a SpikeEpochs, else None."""
    from ._epochs import SpikeEpochs  # _epochs builds on this module

    return X if isinstance(X, SpikeEpochs) else None


def _epoch_trains(epochs):
    names = None if epochs.unit_names is None else list(epochs.unit_names)
    return _SpikeTrains(list(epochs.spike_times), names)


class SpikeBinner(TransformerMixin, BaseEstimator):
    """Bin spike trains into spike counts (time bins x units).

    Bins are half-open, ``[left, right)``, ``bin_size`` seconds wide, and
    laid out either over one stretch (``t_start`` to ``t_stop``, by default
    the span of the spikes seen in ``fit``) or over each of several
    ``intervals`` (trials) separately. The grid is fixed at ``fit``;
    ``transform`` counts any spike data with the same units on that grid.
    Given a :class:`SpikeEpochs` instead (epochs as samples, for
    cross-validation over time), every call bins the epochs it is given.

    Edge ``i`` of an interval starting at ``a`` is ``a + i * bin_size``
    computed from the integer ``i`` and rounded once (see Notes), never by
    adding up bin widths. A spike is placed by comparing it with these exact
    edges, so one lying on an edge belongs to the bin that edge opens.

    Parameters
    ----------
    bin_size : float, default=0.05
        Bin width in seconds, > 0.
    t_start : float, default=None
        Start of the grid (s). None: the earliest spike seen in ``fit``.
    t_stop : float, default=None
        End of the grid (s); only the full bins before it are used. None: the
        grid ends with the bin that holds the latest spike seen in ``fit``.
    intervals : array-like of shape (n_intervals, 2) or DataFrame, default=None
        ``[start, stop)`` intervals (s), e.g. trials, each binned from its own
        start; a DataFrame needs ``start_time`` and ``stop_time`` columns
        (an NWB trials table); a pynapple ``IntervalSet`` gives its start and
        end columns. They may come in any order (bins are laid out
        in time order, ``interval_ids_`` gives each bin's row) and may touch
        but not overlap. Cannot be combined with ``t_start``/``t_stop``.
    smooth_sigma : float, default=None
        Standard deviation (s) of a Gaussian kernel applied along time,
        within each interval only; None does not smooth. Needs a floating
        ``dtype``.
    unit_column : hashable, default="unit"
        Column of unit labels when ``X`` is a long-form DataFrame.
    time_column : hashable, default="time"
        Column of spike times (s) when ``X`` is a long-form DataFrame.
    dtype : numpy dtype, default=np.float64
        Dtype of the counts: float64 (ready for any estimator), float32 (half
        the memory) or an integer dtype (raises if a count does not fit).
    n_jobs : int, default=None
        Threads that count units in parallel. None means 1 unless in a
        :func:`joblib.parallel_config` context; -1 uses all processors.

    Attributes
    ----------
    bin_edges_ : ndarray of shape (n_bins, 2)
        Left and right edge (s) of each bin, in time order. Two columns
        because bins of different intervals are not contiguous.
    bin_centers_ : ndarray of shape (n_bins,)
        Middle of each bin (s).
    interval_ids_ : ndarray of shape (n_bins,), dtype int64
        Row of ``intervals`` (0 when binning ``t_start`` to ``t_stop``) each
        bin belongs to.
    intervals_ : ndarray of shape (n_intervals, 2)
        The intervals binned, in the order given; with ``t_stop=None`` the
        stop is the right edge of the last bin. With a ``SpikeEpochs`` ``X``,
        ``bin_edges_``, ``bin_centers_``, ``interval_ids_`` (rows of
        ``X.intervals``) and ``intervals_`` describe the epochs of the last
        call, ``fit``, ``transform`` or ``fit_transform``.
    bin_size_ : float
        The ``bin_size`` the grid was made with.
    n_spikes_dropped_ : int
        Spikes of the last ``transform`` (or ``fit_transform``) call that
        fell in no bin: outside every interval or in an interval's trailing
        partial bin. Set by ``transform``, not by ``fit``.
    n_features_in_ : int
        Number of units.
    feature_names_in_ : ndarray of str
        Unit names, when ``X`` carries them: sorted unit labels of a
        long-form DataFrame, ids of a pynwb Units table, keys of a pynapple
        ``TsGroup``, or the index of ``X.units``.

    See Also
    --------
    SpikeEpochs : Spike trains with epochs as samples, for cross-validation.
    sklearn_nldisco.datasets.Recording : A recording session, accepted as ``X``.
    scipy.ndimage.gaussian_filter1d : The smoothing filter.

    Notes
    -----
    Accepted inputs ``X``: a sequence of 1-D spike-time arrays (s), one per
    unit, in any order within a unit (float64 arrays are not copied); a
    long-form DataFrame with one row per spike (units are its sorted unique
    labels; at ``transform`` a fitted unit without spikes may be absent); a
    pynwb ``Units`` table; or an object with ``spike_times`` (list of arrays)
    and ``units`` (DataFrame indexed by unit id) attributes, such as
    :class:`sklearn_nldisco.datasets.Recording`.

    pynapple objects need no conversion (pynapple is not imported unless
    one is passed): a ``TsGroup`` gives one unit per key, named by the key;
    a ``Ts`` or ``Tsd``, alone or in a list, one unit whose timestamps are
    its spike times (a Tsd's values are not used). Their ``time_support`` is
    not the grid; to bin exactly the support, pass it as ``intervals``
    (pynapple's default support ends at the last spike, which then falls in
    a trailing partial bin and is dropped).

    Interval ``[a, b)`` holds the bins whose right edge is at or before
    ``b``, i.e. ``floor((b - a) / bin_size)`` bins up to rounding, decided
    by the same exact edges; spikes in the trailing partial bin are dropped
    (and counted in ``n_spikes_dropped_``).

    Edge offsets ``i * bin_size`` are computed from the shortest decimal of
    ``bin_size`` (0.02 is 1/50) as ``i * p / q`` rounded once, so that they
    match times computed from a sampling rate: the spike of sample ``k`` at
    1 kHz, ``k / 1000``, falls in bin ``k // 20`` of a 20 ms grid even when
    it lies exactly on an edge. Times far from 0 leave fewer float64 steps
    per bin; a ``bin_size`` below 1024 of those steps raises.

    Smoothing uses :func:`scipy.ndimage.gaussian_filter1d` with
    ``mode="reflect"`` on each interval's bins separately, so it never mixes
    trials or crosses a gap, and keeps each interval's total count.

    With ``set_output(transform="pandas")`` the counts come as a DataFrame
    with the unit names as columns and a RangeIndex over bins (match bins
    to times with ``bin_edges_``).

    **Cross-validation.** scikit-learn splits ``X`` along its first axis,
    which for every input above is units: ``GridSearchCV`` or
    ``cross_validate`` over a list of spike trains fits each fold on some
    neurons and scores it on others. A :class:`SpikeEpochs` has epochs
    (trials or time blocks) as its first axis; with it as ``X``,
    ``intervals``, ``t_start`` and ``t_stop`` must be None, and ``fit``,
    ``transform`` and ``fit_transform`` each bin the epochs they are given,
    every one from its own start, with all units: a test fold is binned on
    its own epochs, in time order (:meth:`transform_metadata` labels those
    bins). A binner fitted on ``SpikeEpochs`` transforms only
    ``SpikeEpochs``, and one fitted on other inputs transforms none.

    To catch a split along units, ``transform`` checks that ``X`` has the
    fitted units: the same number; the same names in the same order when
    both carry names (a long-form DataFrame may lack units, but not bring
    unknown ones); and otherwise that at least one unit has the same spike
    count, earliest and latest spike as the fitted unit at its position
    (units silent in either are skipped; with fewer than two units left to
    compare nothing is checked, so one unit's new spikes can be binned on
    the fitted grid). New spikes of the same units, all changed (a
    jittered copy), must therefore carry unit names.

    The estimator checks of scikit-learn feed 2-D numeric arrays, which are
    not spike trains, so the estimator declares that it does not take them.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.preprocessing import SpikeBinner
    >>> spike_times = [np.array([0.01, 0.1, 0.13, 0.31]), np.array([0.05, 0.25])]
    >>> binner = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=0.3)
    >>> binner.fit_transform(spike_times)
    array([[1., 1.],
           [2., 0.],
           [0., 1.]])
    >>> binner.bin_edges_.tolist()
    [[0.0, 0.1], [0.1, 0.2], [0.2, 0.3]]
    >>> binner.n_spikes_dropped_
    1
    >>> binner.get_feature_names_out()
    array(['unit0', 'unit1'], dtype=object)

    Trials, each binned from its own start; the partial bin at the end of
    the first trial is left out:

    >>> trials = [[0.0, 0.25], [1.0, 1.1]]
    >>> binner = SpikeBinner(bin_size=0.1, intervals=trials).fit(spike_times)
    >>> binner.interval_ids_.tolist()
    [0, 0, 1]
    >>> binner.transform(spike_times)
    array([[1., 1.],
           [2., 0.],
           [0., 0.]])
    """

    _parameter_constraints = {
        "bin_size": [Interval(Real, 0, None, closed="neither")],
        "t_start": [Real, None],
        "t_stop": [Real, None],
        "intervals": ["array-like", None],
        "smooth_sigma": [Interval(Real, 0, None, closed="neither"), None],
        "unit_column": [Hashable],
        "time_column": [Hashable],
        "dtype": "no_validation",
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        bin_size=0.05,
        *,
        t_start=None,
        t_stop=None,
        intervals=None,
        smooth_sigma=None,
        unit_column="unit",
        time_column="time",
        dtype=np.float64,
        n_jobs=None,
    ):
        self.bin_size = bin_size
        self.t_start = t_start
        self.t_stop = t_stop
        self.intervals = intervals
        self.smooth_sigma = smooth_sigma
        self.unit_column = unit_column
        self.time_column = time_column
        self.dtype = dtype
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fix the grid of bins and the units.

        Parameters
        ----------
        X : SpikeEpochs, sequence of array-like, DataFrame, pynwb Units or Recording
            Spike times in seconds; see Notes for the accepted forms.
        y : Ignored

        Returns
        -------
        self : SpikeBinner
        """
        epochs = _as_epochs(X)
        if epochs is not None:
            self._fit_trains(_epoch_trains(epochs), epochs)
        else:
            self._fit_trains(_spike_trains(X, self.unit_column, self.time_column))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fix the grid on ``X`` and return its spike counts.

        Same result as ``fit(X).transform(X)``, reading ``X`` once.

        Parameters
        ----------
        X : SpikeEpochs, sequence of array-like, DataFrame, pynwb Units or Recording
            Spike times in seconds; see Notes for the accepted forms.
        y : Ignored

        Returns
        -------
        counts : ndarray of shape (n_bins, n_units)
            A DataFrame with ``set_output(transform="pandas")``.
        """
        epochs = _as_epochs(X)
        if epochs is not None:
            trains = _epoch_trains(epochs)
            self._fit_trains(trains, epochs)
        else:
            trains = _spike_trains(X, self.unit_column, self.time_column)
            self._fit_trains(trains)
        return self._transform_trains(trains, check_finite=False)

    def transform(self, X):
        """Count spikes in the fitted bins, or in the bins of the given epochs.

        Parameters
        ----------
        X : SpikeEpochs, sequence of array-like, DataFrame, pynwb Units or Recording
            Spike times in seconds of the fitted units (see Notes for what
            is checked). A ``SpikeEpochs`` (when the binner was fitted on
            one) is binned on a grid of its own epochs, which becomes
            ``bin_edges_`` and ``interval_ids_``.

        Returns
        -------
        counts : ndarray of shape (n_bins, n_units)
            Spike counts (smoothed with ``smooth_sigma``), of ``dtype``; a
            DataFrame with ``set_output(transform="pandas")``.
        """
        check_is_fitted(self)
        epochs = _as_epochs(X)
        fitted_on_epochs = getattr(self, "_fitted_on_epochs", False)
        if fitted_on_epochs and epochs is None:
            raise ValueError(
                f"X is a {type(X).__name__}, but SpikeBinner was fitted on SpikeEpochs; "
                "expected SpikeEpochs of the same units."
            )
        if epochs is not None and not fitted_on_epochs:
            raise ValueError(
                "X is a SpikeEpochs, but SpikeBinner was fitted on spike trains, with "
                "a grid fixed at fit; fit it on SpikeEpochs too (each call then bins "
                "the epochs it is given)."
            )
        if epochs is not None:
            return self._transform_trains(_epoch_trains(epochs), epochs=epochs)
        return self._transform_trains(_spike_trains(X, self.unit_column, self.time_column))

    def transform_metadata(self, X):
        """What is known about each bin that ``transform(X)`` returns, one row per bin.

        The scorers of a grid search use it to label the bins of a test
        fold: each bin gets the metadata row of its epoch.

        Parameters
        ----------
        X : SpikeEpochs
            The epochs, as passed to ``transform``.

        Returns
        -------
        metadata : DataFrame of shape (n_bins, n_columns)
            Index 0 .. n_bins - 1, rows in the order of ``transform(X)``,
            with columns ``bin_start``, ``bin_stop`` (s), ``interval_id``
            (the row of ``X.intervals`` the bin belongs to, as in
            ``interval_ids_``), ``epoch_id`` (from ``X.epoch_ids``),
            ``time_in_epoch`` (left edge of the bin minus the start of its
            epoch, s), then every column of ``X.metadata`` (none when it is
            None). Does not change the binner.

        Examples
        --------
        >>> import numpy as np
        >>> import pandas as pd
        >>> from sklearn_nldisco.preprocessing import SpikeBinner, SpikeEpochs
        >>> epochs = SpikeEpochs([np.array([0.1, 2.3])], [[0.0, 0.2], [2.0, 2.4]],
        ...                      metadata=pd.DataFrame({"target": ["left", "right"]}))
        >>> binner = SpikeBinner(bin_size=0.1).fit(epochs)
        >>> binner.transform_metadata(epochs[1:])
           bin_start  bin_stop  interval_id  epoch_id  time_in_epoch target
        0        2.0       2.1            0         1            0.0  right
        1        2.1       2.2            0         1            0.1  right
        2        2.2       2.3            0         1            0.2  right
        3        2.3       2.4            0         1            0.3  right
        """
        check_is_fitted(self)
        epochs = _as_epochs(X)
        if epochs is None:
            raise TypeError(
                f"X is a {type(X).__name__}; transform_metadata expects a SpikeEpochs "
                "(spike trains alone carry no per-bin metadata; see bin_metadata)."
            )
        bin_edges, interval_ids = self._grid(epochs.intervals, self.bin_size_)
        starts = epochs.intervals[interval_ids, 0]
        table = pd.DataFrame({
            "bin_start": bin_edges[:, 0],
            "bin_stop": bin_edges[:, 1],
            "interval_id": interval_ids,
            "epoch_id": epochs.epoch_ids[interval_ids],
            "time_in_epoch": edge_offsets(np.rint((bin_edges[:, 0] - starts) / self.bin_size_),
                                          self.bin_size_),
        })
        if epochs.metadata is None:
            return table
        clash = sorted(set(table.columns) & set(epochs.metadata.columns))
        if clash:
            raise ValueError(
                f"X.metadata has column(s) {clash}, which transform_metadata adds itself; "
                "expected other column names."
            )
        rows = epochs.metadata.iloc[interval_ids].reset_index(drop=True)
        return pd.concat([table, rows], axis=1)

    def get_feature_names_out(self, input_features=None):
        """Unit names of the output columns.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Unit names; must match ``feature_names_in_`` when it is defined.
            None uses ``feature_names_in_``, or ``unit0``, ``unit1``, ...

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "n_features_in_")
        fitted = getattr(self, "feature_names_in_", None)
        if input_features is None:
            if fitted is not None:
                return fitted.copy()
            return np.asarray([f"unit{i}" for i in range(self.n_features_in_)], dtype=object)
        names = np.asarray(input_features, dtype=object)
        if len(names) != self.n_features_in_ or (
            fitted is not None and not np.array_equal(names, fitted)
        ):
            raise ValueError(
                f"input_features={names.tolist()} does not match the {self.n_features_in_} "
                f"fitted units{'' if fitted is None else ' ' + str(fitted.tolist())}."
            )
        return names

    def _output_dtype(self):
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or not (dtype.kind in "iu" or dtype in (np.float32, np.float64)):
            raise ValueError(
                f"dtype={self.dtype!r} is not supported; expected float64, float32 "
                "or an integer dtype."
            )
        if self.smooth_sigma is not None and dtype.kind != "f":
            raise ValueError(
                f"smooth_sigma={self.smooth_sigma!r} needs a floating dtype but "
                f"dtype={dtype.name!r}; expected dtype float64 or float32, or "
                "smooth_sigma=None."
            )
        return dtype

    def _intervals_from(self, ranges):
        """The intervals to bin, in the given order, validated; ``ranges`` are
        the units' (earliest, latest) spikes, None for a silent unit."""
        if self.intervals is not None:
            if self.t_start is not None or self.t_stop is not None:
                raise ValueError(
                    f"intervals and t_start={_number(self.t_start)}/"
                    f"t_stop={_number(self.t_stop)} were both given; expected intervals, "
                    "or t_start/t_stop, not both."
                )
            intervals = self.intervals
            if isinstance(intervals, pd.DataFrame):
                missing = {"start_time", "stop_time"} - set(intervals.columns)
                if missing:
                    raise ValueError(
                        f"intervals is a DataFrame without column(s) {sorted(missing)}; "
                        f"expected start_time and stop_time, got {list(intervals.columns)}."
                    )
                intervals = intervals[["start_time", "stop_time"]]
            elif _pynapple_class(intervals) == "IntervalSet":
                intervals = intervals.values  # start and end, without metadata
            try:
                intervals = np.asarray(intervals, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"intervals cannot be read as numbers ({error}); expected an "
                    "(n_intervals, 2) array of [start, stop) times in seconds."
                ) from None
            if intervals.ndim != 2 or intervals.shape[1] != 2 or len(intervals) == 0:
                raise ValueError(
                    f"intervals has shape {intervals.shape}; expected (n_intervals, 2) "
                    "with n_intervals >= 1."
                )
            for row, (start, stop) in enumerate(intervals):
                _finite_interval(f"intervals[{row}]", start, stop)
            return intervals
        for argument, value in (("t_start", self.t_start), ("t_stop", self.t_stop)):
            if value is not None and not np.isfinite(value):
                raise ValueError(f"{argument}={_number(value)} is not finite; expected seconds.")
        ranges = [extent for extent in ranges if extent is not None]
        if (self.t_start is None or self.t_stop is None) and not ranges:
            raise ValueError(
                f"X has no spikes, so t_start={_number(self.t_start)}/"
                f"t_stop={_number(self.t_stop)} cannot be taken from it; pass t_start "
                "and t_stop, or intervals."
            )
        start = self.t_start
        if start is None:
            start = min(extent[0] for extent in ranges)
        if self.t_stop is not None:
            if self.t_stop <= start:
                raise ValueError(
                    f"t_stop={_number(self.t_stop)} <= t_start={_number(start)}"
                    f"{'' if self.t_start is not None else ' (the earliest spike)'}; "
                    "expected t_stop > t_start."
                )
            return np.array([[start, self.t_stop]], dtype=np.float64)
        latest = max(extent[1] for extent in ranges)
        if latest < start:
            raise ValueError(
                f"every spike is before t_start={_number(start)} (the latest is at "
                f"{_number(latest)}); expected spikes at or after t_start, or t_stop."
            )
        _check_resolution(self.bin_size, max(abs(start), abs(latest)))
        # the grid ends with the bin holding the latest spike
        n_bins = _last_edge_at_or_before(start, latest, self.bin_size) + 1
        stop = start + edge_offsets(n_bins, self.bin_size)
        return np.array([[start, stop]], dtype=np.float64)

    def _fit_trains(self, trains, epochs=None):
        if len(trains.times) == 0:
            raise ValueError("X has no units; expected spike times of at least one unit.")
        self._output_dtype()
        ranges = [_finite_range(times, unit) for unit, times in enumerate(trains.times)]
        if epochs is None:
            intervals = self._intervals_from(ranges)
        else:
            given = {name: value for name, value in (("intervals", self.intervals),
                     ("t_start", self.t_start), ("t_stop", self.t_stop)) if value is not None}
            if given:
                raise ValueError(
                    f"X is a SpikeEpochs, which brings its own intervals, but "
                    f"{', '.join(given)} {'was' if len(given) == 1 else 'were'} given; "
                    "expected intervals=None, t_start=None and t_stop=None."
                )
            intervals = np.array(epochs.intervals)
        self._set_grid(intervals, float(self.bin_size))
        self.bin_size_ = float(self.bin_size)
        self.n_features_in_ = len(trains.times)
        if trains.names is not None:
            self.feature_names_in_ = np.asarray(trains.names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._fitted_on_epochs = epochs is not None
        # spike count, earliest and latest spike of each unit (NaN if silent),
        # to recognise other units at transform (see _check_same_units)
        self._unit_fingerprints = np.array(
            [(len(times), *((np.nan, np.nan) if extent is None else extent))
             for times, extent in zip(trains.times, ranges)], dtype=np.float64)

    def _grid(self, intervals, bin_size):
        if len(intervals) == 0:
            raise ValueError("X has no epochs; expected at least one [start, stop) interval.")
        bin_edges, interval_ids = make_bin_grid(intervals, bin_size)
        if len(bin_edges) == 0:
            raise ValueError(
                f"no interval holds a full bin of bin_size={_number(bin_size)} s "
                f"(intervals {intervals.tolist()}); expected a smaller bin_size or "
                "longer intervals."
            )
        return bin_edges, interval_ids

    def _set_grid(self, intervals, bin_size):
        bin_edges, interval_ids = self._grid(intervals, bin_size)
        self.bin_edges_ = bin_edges
        self.bin_centers_ = bin_edges.mean(axis=1)
        self.interval_ids_ = interval_ids
        self.intervals_ = intervals

    def _aligned_times(self, trains):
        """The spike trains in the fitted unit order, checked against the fit."""
        fitted = getattr(self, "feature_names_in_", None)
        if trains.long_form and fitted is not None:
            position = {name: unit for unit, name in enumerate(fitted)}
            unknown = [name for name in trains.names if name not in position]
            if unknown:
                raise ValueError(
                    f"X has units {unknown} that were not seen in fit; expected units "
                    f"among {fitted.tolist()}.{_UNIT_SPLIT_HINT}"
                )
            aligned = [np.empty(0)] * len(fitted)
            for name, times in zip(trains.names, trains.times):
                aligned[position[name]] = times
            return aligned
        if len(trains.times) != self.n_features_in_:
            raise ValueError(
                f"X has {len(trains.times)} units, but SpikeBinner was fitted with "
                f"{self.n_features_in_} units; expected the same units.{_UNIT_SPLIT_HINT}"
            )
        if fitted is not None and trains.names is not None:
            if list(fitted) != list(trains.names):
                raise ValueError(
                    f"X has units {list(trains.names)} but SpikeBinner was fitted with "
                    f"units {fitted.tolist()}; expected the same units in the same "
                    f"order.{_UNIT_SPLIT_HINT}"
                )
        else:
            self._check_same_units(trains.times)
        return trains.times

    def _check_same_units(self, times):
        """Unnamed units: raise when none matches its fitted unit's fingerprint.

        A unit matches when its spike count, earliest and latest spike equal
        those of the fitted unit at the same position. Units silent in fit
        or in ``X`` are not compared; fewer than two compared units check
        nothing (one unit's new spikes on the fitted grid are a normal use).
        The scan stops at the first match, so the same data costs one unit.
        """
        fingerprints = getattr(self, "_unit_fingerprints", None)
        if fingerprints is None:  # fitted before fingerprints were kept
            return
        n_compared = 0
        for unit, unit_times in enumerate(times):
            if fingerprints[unit, 0] == 0 or len(unit_times) == 0:
                continue
            earliest, latest = _finite_range(unit_times, unit)
            if (len(unit_times), earliest, latest) == tuple(fingerprints[unit]):
                return
            n_compared += 1
        if n_compared >= 2:
            raise ValueError(
                f"X holds other units than SpikeBinner was fitted with: none of its "
                f"{n_compared} units with spikes has the spike count, earliest and latest "
                f"spike of the fitted unit at its position.{_UNIT_SPLIT_HINT} To bin "
                "new spikes of the same units on the fitted grid, name the units (a "
                "long-form DataFrame, or an object with spike_times and units); names "
                "are then compared instead."
            )

    def _transform_trains(self, trains, check_finite=True, epochs=None):
        times = self._aligned_times(trains)
        if epochs is not None:
            self._set_grid(np.array(epochs.intervals), self.bin_size_)
        counts, n_dropped = bin_spike_trains(
            times, self.bin_edges_, self.interval_ids_, self.bin_size_,
            dtype=self._output_dtype(), n_jobs=self.n_jobs, check_finite=check_finite,
        )
        if self.smooth_sigma is not None:
            smooth_within_intervals(counts, self.interval_ids_, self.smooth_sigma / self.bin_size_)
        self.n_spikes_dropped_ = n_dropped
        if _get_output_config("transform", self)["dense"] == "pandas":
            # index over bins, whatever the input's index (a long-form frame
            # has one row per spike)
            return pd.DataFrame(counts, columns=self.get_feature_names_out(), copy=False)
        return counts

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.transformer_tags.preserves_dtype = []
        return tags
