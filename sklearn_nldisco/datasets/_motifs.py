"""A simulated session with planted spatio-temporal motifs: sequences and a rotation."""

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from ._recording import Recording
from ._simulate import _as_bin_bounds, _background_trains, _merged_trains

_SEQUENCE = "sequence"
_ROTATION = "rotation"


@dataclass
class MotifGroundTruth:
    """The motifs planted in a simulated session, and their exact expectations.

    Each motif is a fixed spatio-temporal pattern of extra firing that starts
    at each of its onset times. The rate of unit ``u`` at time ``t`` is its
    background rate plus, for each motif ``m`` and each onset ``o`` of ``m``,
    the motif's added rate of ``u`` at ``t - o``:

    - a sequence (``kind == "sequence"``): unit ``units[j]`` fires a burst
      of ``burst_spikes`` expected spikes, uniform over
      ``[lags_s[j], lags_s[j] + burst_duration_s)`` after the onset;
    - the rotation (``kind == "rotation"``): during
      ``[0, duration_s)`` after the onset, unit ``units[j]`` fires at
      ``rotation_peak_rate_hz * (1 + cos(2 pi f t - phases[j])) / 2`` with
      ``f = rotation_frequency_hz`` and ``t`` the time since onset: the
      rates are the projections of a point rotating at ``f`` onto preferred
      directions spread evenly around the circle, so ``units[j]`` peaks
      ``lags_s[j] = phases[j] / (2 pi f)`` after each cycle starts.

    Parameters
    ----------
    motif_names : tuple of str
        ``"sequence_0"``, ``"sequence_1"``, ... then ``"rotation"`` if any.
    motifs : dict of str to dict
        Per motif name: ``kind`` (``"sequence"`` or ``"rotation"``),
        ``units`` (int ndarray, indices into the recording's units, in the
        motif's order), ``lags_s`` (float ndarray, one per unit; see above),
        ``onset_times_s`` (sorted float ndarray) and ``duration_s`` (time from
        an onset to the end of its extra firing); a rotation also has
        ``phases`` (radians, ``2 pi j / n_rotation_units``).
    baseline_rates_hz : ndarray of shape (n_units,)
        Background rate of each unit.
    duration_s : float
        Length of the session; it starts at 0.
    burst_spikes : float
        Expected spikes per unit per sequence occurrence.
    burst_duration_s : float
        Length of each burst.
    rotation_frequency_hz : float
        Rotation frequency ``f``.
    rotation_peak_rate_hz : float
        Peak added rate of a rotational unit.

    Examples
    --------
    >>> from sklearn_nldisco.datasets import make_motif_session
    >>> recording, truth = make_motif_session(n_units=30, duration_s=60.0, random_state=0)
    >>> truth.motif_names
    ('sequence_0', 'sequence_1', 'rotation')
    >>> truth.kernel("sequence_0", bin_size_s=0.02).shape[1]
    30
    >>> n_onsets = truth.onset_indicator("rotation", [0.0, 30.0, 60.0]).sum()
    >>> bool(n_onsets == len(truth.motifs["rotation"]["onset_times_s"]))
    True
    """

    motif_names: tuple
    motifs: dict = field(repr=False)
    baseline_rates_hz: np.ndarray = field(repr=False)
    duration_s: float
    burst_spikes: float
    burst_duration_s: float
    rotation_frequency_hz: float
    rotation_peak_rate_hz: float

    @property
    def n_units(self):
        """Number of units."""
        return len(self.baseline_rates_hz)

    def _motif(self, name):
        try:
            return self.motifs[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"No motif named {name!r}; motifs are {list(self.motif_names)}."
            ) from None

    def _cumulative(self, motif, since_onset_s):
        """Expected extra spikes of each motif unit from the onset to each time.

        ``since_onset_s`` has shape (n,); the result (n, n_motif_units).
        """
        tau = np.asarray(since_onset_s, dtype=np.float64)[:, None]
        if motif["kind"] == _SEQUENCE:
            fraction = np.clip((tau - motif["lags_s"]) / self.burst_duration_s, 0.0, 1.0)
            return self.burst_spikes * fraction
        # the integral of peak * (1 + cos(w s - phase)) / 2 from 0 to t
        omega = 2.0 * np.pi * self.rotation_frequency_hz
        elapsed = np.clip(tau, 0.0, motif["duration_s"])
        phases = motif["phases"]
        return 0.5 * self.rotation_peak_rate_hz * (
            elapsed + (np.sin(omega * elapsed - phases) + np.sin(phases)) / omega)

    def kernel(self, name, bin_size_s, onset_offset_s=0.0):
        """The motif as a lags x units matrix of expected extra spike counts.

        Row ``l`` holds the expected extra count of every unit in the bin
        ``[l * bin_size_s, (l + 1) * bin_size_s)`` of a grid on which the
        onset falls ``onset_offset_s`` after the start of bin 0 (by default
        on its left edge); units outside the motif are 0. Correlate it with
        a model's decoder kernel (over the same bins) to score recovery.

        Parameters
        ----------
        name : str
            A name in ``motif_names``.
        bin_size_s : float
            Bin size (s).
        onset_offset_s : float, default=0.0
            Where in bin 0 the onset falls, in ``[0, bin_size_s)``.

        Returns
        -------
        kernel : ndarray of shape (n_lags, n_units)
            ``n_lags = ceil((duration_s + onset_offset_s) / bin_size_s)``,
            ``duration_s`` the motif's; each column of a motif unit sums to
            its expected extra spikes per occurrence.
        """
        motif = self._motif(name)
        if not isinstance(bin_size_s, Real) or not 0 < bin_size_s < np.inf:
            raise ValueError(f"bin_size_s must be a positive number; got {bin_size_s!r}.")
        if not isinstance(onset_offset_s, Real) or not 0 <= onset_offset_s < bin_size_s:
            raise ValueError(
                f"onset_offset_s must be in [0, bin_size_s={bin_size_s!r}); "
                f"got {onset_offset_s!r}.")
        # a tolerance so that a duration of exactly n bins gives n lags
        span = motif["duration_s"] + onset_offset_s
        n_lags = max(1, int(np.ceil(span / bin_size_s - 1e-9)))
        edges = np.arange(n_lags + 1) * bin_size_s - onset_offset_s
        kernel = np.zeros((n_lags, self.n_units))
        kernel[:, motif["units"]] = np.diff(self._cumulative(motif, edges), axis=0)
        return kernel

    def onset_indicator(self, name, bin_edges):
        """Number of onsets of a motif in each bin.

        Parameters
        ----------
        name : str
            A name in ``motif_names``.
        bin_edges : array-like of shape (n_bins + 1,) or (n_bins, 2)
            Increasing bin edges (s), or the ``[left, right)`` edges of each
            bin (``SpikeBinner.bin_edges_``, which may have gaps).

        Returns
        -------
        indicator : ndarray of shape (n_bins,), int
            Onsets in ``[left, right)`` of each bin (0 or 1 whenever bins are
            shorter than a motif, as occurrences of one motif never overlap).
        """
        motif = self._motif(name)
        left, right = _as_bin_bounds(bin_edges)
        onsets = motif["onset_times_s"]
        return (np.searchsorted(onsets, right, side="left")
                - np.searchsorted(onsets, left, side="left")).astype(np.int64)

    def expected_counts(self, bin_edges):
        """Expected spike count of each unit in each bin, background and motifs.

        Parameters
        ----------
        bin_edges : array-like of shape (n_bins + 1,) or (n_bins, 2)
            Increasing bin edges (s), or the ``[left, right)`` edges of each
            bin (``SpikeBinner.bin_edges_``, which may have gaps).

        Returns
        -------
        counts : ndarray of shape (n_bins, n_units)
            The integral of each unit's rate over each bin, exactly.
        """
        left, right = _as_bin_bounds(bin_edges)
        inside = np.clip(right, 0.0, self.duration_s) - np.clip(left, 0.0, self.duration_s)
        counts = np.maximum(inside, 0.0)[:, None] * self.baseline_rates_hz
        for name in self.motif_names:
            motif = self._motif(name)
            for onset in motif["onset_times_s"]:
                # the bins that meet [onset, onset + duration)
                hit = np.flatnonzero((right > onset) & (left < onset + motif["duration_s"]))
                if hit.size:
                    extra = (self._cumulative(motif, right[hit] - onset)
                             - self._cumulative(motif, left[hit] - onset))
                    counts[np.ix_(hit, motif["units"])] += extra
        return counts


def make_motif_session(
    n_units=50,
    duration_s=300.0,
    *,
    n_sequences=2,
    sequence_length=8,
    lag_step_range_s=(0.02, 0.05),
    burst_spikes=3.0,
    burst_duration_s=0.01,
    n_rotation_units=8,
    rotation_frequency_hz=4.0,
    rotation_duration_s=0.5,
    rotation_peak_rate_hz=40.0,
    mean_gap_s=2.0,
    background_rate_range_hz=(2.0, 10.0),
    random_state=None,
):
    """Simulate a session with planted spatio-temporal motifs.

    Each motif is a pattern of firing over a few hundred milliseconds across
    several units, so no single time bin holds it: a model that sees one bin
    at a time needs several latents (or none) for it, a model of windows of
    bins can hold it as one. Spikes are Poisson; there is no trials table.

    **Background.** Every unit fires as a homogeneous Poisson process at a
    rate log-uniform in ``background_rate_range_hz``.

    **Sequences.** Each of ``n_sequences`` motifs takes ``sequence_length``
    units; consecutive units in the sequence fire ``U(*lag_step_range_s)``
    apart (drawn once per motif and then fixed), so with the defaults a
    sequence spans about 250 ms. At each onset, the unit at lag ``lags_s[j]``
    fires a Poisson number of spikes of mean ``burst_spikes``, uniform over
    ``[onset + lags_s[j], onset + lags_s[j] + burst_duration_s)``.

    **Rotation.** ``n_rotation_units`` units (none if 0) have preferred
    phases ``2 pi j / n_rotation_units`` around a circle. At each onset an
    episode of ``rotation_duration_s`` starts, during which unit ``j`` fires
    at ``rotation_peak_rate_hz * (1 + cos(2 pi f t - phase_j)) / 2``, ``t``
    the time since onset and ``f = rotation_frequency_hz``: a point rotating
    at ``f``, seen by units tuned to directions around the circle, so the
    rates of any two of them are shifted copies of each other.

    **Timing.** The units of different motifs are distinct, drawn at random.
    Each motif's onsets are a renewal process of its own: the wait from the
    start of the session, and from the end of each occurrence to the next
    onset, is exponential of mean ``mean_gap_s``; occurrences of one motif
    never overlap, those of different motifs may. Only occurrences that end
    within the session are kept.

    Parameters
    ----------
    n_units : int, default=50
        Number of units, at least ``n_sequences * sequence_length +
        n_rotation_units``.
    duration_s : float, default=300.0
        Length of the session (s); it runs from 0.
    n_sequences : int, default=2
        Number of sequence motifs (0 for none).
    sequence_length : int, default=8
        Units in each sequence (at least 2).
    lag_step_range_s : tuple of float, default=(0.02, 0.05)
        Range of the lag between consecutive units of a sequence (s).
    burst_spikes : float, default=3.0
        Expected spikes of each sequence unit per occurrence.
    burst_duration_s : float, default=0.01
        Length of each burst (s), at most the smallest lag step.
    n_rotation_units : int, default=8
        Units of the rotational motif (0 for none, otherwise at least 3).
    rotation_frequency_hz : float, default=4.0
        Frequency of the rotation.
    rotation_duration_s : float, default=0.5
        Length of a rotational episode (two cycles at 4 Hz).
    rotation_peak_rate_hz : float, default=40.0
        Peak rate a rotational unit adds during an episode.
    mean_gap_s : float, default=2.0
        Mean wait between the end of one occurrence of a motif and the next
        onset of the same motif.
    background_rate_range_hz : tuple of float, default=(2.0, 10.0)
        Range of the background rates.
    random_state : int, RandomState instance or None, default=None
        Seed of every random draw; a fixed value gives identical output.

    Returns
    -------
    recording : Recording
        ``spike_times`` (s, sorted, in ``[0, duration_s)``); ``units``
        indexed by ``unit_id`` (no columns: which units carry which motif is
        ground truth); ``trials`` None; no behaviour. Bin it over the whole
        session with ``SpikeBinner(bin_size, t_start=0.0, t_stop=duration_s)``.
    ground_truth : MotifGroundTruth
        Each motif's units, lags and onsets, and for any bin size its kernel
        (lags x units), per-bin onsets and the expected counts.

    See Also
    --------
    MotifGroundTruth : What the ground truth holds.
    make_reaching_session : A reaching task with single-bin features.

    Examples
    --------
    >>> from sklearn_nldisco.datasets import make_motif_session
    >>> recording, truth = make_motif_session(n_units=30, duration_s=60.0, random_state=0)
    >>> recording.n_units, recording.trials is None
    (30, True)
    >>> motif = truth.motifs["sequence_0"]
    >>> len(motif["units"]), bool(0.14 <= motif["lags_s"][-1] <= 0.35)
    (8, True)
    >>> truth.kernel("sequence_0", bin_size_s=0.01).sum(axis=0)[motif["units"]].round(6)
    array([3., 3., 3., 3., 3., 3., 3., 3.])
    """
    _check_parameters(
        n_units, duration_s, n_sequences, sequence_length, lag_step_range_s,
        burst_spikes, burst_duration_s, n_rotation_units, rotation_frequency_hz,
        rotation_duration_s, rotation_peak_rate_hz, mean_gap_s, background_rate_range_hz,
    )
    rng = check_random_state(random_state)
    duration_s = float(duration_s)
    baseline = np.exp(rng.uniform(*np.log(background_rate_range_hz), size=n_units))
    order = rng.permutation(n_units)

    motifs = {}
    for index in range(n_sequences):
        units = order[index * sequence_length:(index + 1) * sequence_length]
        steps = rng.uniform(*lag_step_range_s, size=sequence_length - 1)
        lags = np.concatenate(([0.0], np.cumsum(steps)))
        motifs[f"{_SEQUENCE}_{index}"] = {
            "kind": _SEQUENCE, "units": units, "lags_s": lags,
            "duration_s": float(lags[-1] + burst_duration_s),
        }
    if n_rotation_units:
        first = n_sequences * sequence_length
        phases = 2.0 * np.pi * np.arange(n_rotation_units) / n_rotation_units
        motifs[_ROTATION] = {
            "kind": _ROTATION, "units": order[first:first + n_rotation_units],
            "lags_s": phases / (2.0 * np.pi * rotation_frequency_hz),
            "phases": phases, "duration_s": float(rotation_duration_s),
        }
    for motif in motifs.values():
        motif["onset_times_s"] = _onsets(motif["duration_s"], mean_gap_s, duration_s, rng)

    trains = _background_trains(baseline, duration_s, rng)
    for motif in motifs.values():
        onsets = motif["onset_times_s"]
        for j, unit in enumerate(motif["units"]):
            if motif["kind"] == _SEQUENCE:
                counts = rng.poisson(burst_spikes, size=onsets.size)
                times = (np.repeat(onsets + motif["lags_s"][j], counts)
                         + rng.uniform(0.0, burst_duration_s, counts.sum()))
            else:
                # thinning of a homogeneous process at the peak rate
                counts = rng.poisson(rotation_peak_rate_hz * rotation_duration_s, onsets.size)
                since = rng.uniform(0.0, rotation_duration_s, counts.sum())
                keep_probability = 0.5 * (1.0 + np.cos(
                    2.0 * np.pi * rotation_frequency_hz * since - motif["phases"][j]))
                keep = rng.random_sample(since.size) < keep_probability
                times = (np.repeat(onsets, counts) + since)[keep]
            trains[unit].append(times)
    spike_times = _merged_trains(trains)

    rotation = (f"a rotation of {n_rotation_units} units" if n_rotation_units
                else "no rotation")
    recording = Recording(
        spike_times=spike_times,
        units=pd.DataFrame(index=pd.Index(np.arange(n_units), name="unit_id")),
        trials=None,
        session_id="simulated-motifs",
        description=(
            f"Simulated motifs: {n_units} units, {duration_s:g} s, {n_sequences} "
            f"sequences of {sequence_length} units, {rotation}."
        ),
    )
    ground_truth = MotifGroundTruth(
        motif_names=tuple(motifs),
        motifs=motifs,
        baseline_rates_hz=baseline,
        duration_s=duration_s,
        burst_spikes=float(burst_spikes),
        burst_duration_s=float(burst_duration_s),
        rotation_frequency_hz=float(rotation_frequency_hz),
        rotation_peak_rate_hz=float(rotation_peak_rate_hz),
    )
    return recording, ground_truth


def _onsets(motif_duration_s, mean_gap_s, session_duration_s, rng):
    """Onsets of a renewal process: exponential waits between occurrences."""
    parts, end = [], 0.0
    while end <= session_duration_s:
        n_draw = int(session_duration_s / (motif_duration_s + mean_gap_s)) + 16
        intervals = rng.exponential(mean_gap_s, n_draw) + motif_duration_s
        intervals[0] -= motif_duration_s  # the first wait is from `end`, not an occurrence
        onsets = end + np.cumsum(intervals)
        parts.append(onsets)
        end = onsets[-1] + motif_duration_s
    onsets = np.concatenate(parts)
    return onsets[onsets + motif_duration_s <= session_duration_s]


def _check_parameters(
    n_units, duration_s, n_sequences, sequence_length, lag_step_range_s,
    burst_spikes, burst_duration_s, n_rotation_units, rotation_frequency_hz,
    rotation_duration_s, rotation_peak_rate_hz, mean_gap_s, background_rate_range_hz,
):
    for name, value, low in (("n_units", n_units, 1), ("n_sequences", n_sequences, 0),
                             ("sequence_length", sequence_length, 2),
                             ("n_rotation_units", n_rotation_units, 0)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    if n_rotation_units in (1, 2):
        raise ValueError(
            f"n_rotation_units must be 0 (no rotation) or at least 3; got {n_rotation_units!r}.")
    for name, value in (("duration_s", duration_s), ("burst_spikes", burst_spikes),
                        ("burst_duration_s", burst_duration_s),
                        ("rotation_frequency_hz", rotation_frequency_hz),
                        ("rotation_duration_s", rotation_duration_s),
                        ("rotation_peak_rate_hz", rotation_peak_rate_hz),
                        ("mean_gap_s", mean_gap_s)):
        if not isinstance(value, Real) or isinstance(value, bool) or not 0 < value < np.inf:
            raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
    needed = n_sequences * sequence_length + n_rotation_units
    if needed > n_units:
        raise ValueError(
            f"n_units={n_units} is too few: the motifs need n_sequences * sequence_length "
            f"+ n_rotation_units = {needed} distinct units.")
    for name, value in (("lag_step_range_s", lag_step_range_s),
                        ("background_rate_range_hz", background_rate_range_hz)):
        bounds = np.asarray(value, dtype=np.float64) if _is_pair(value) else None
        if bounds is None or not 0 < bounds[0] <= bounds[1] < np.inf:
            raise ValueError(
                f"{name} must be (low, high) with 0 < low <= high; got {value!r}.")
    if burst_duration_s > lag_step_range_s[0]:
        raise ValueError(
            f"burst_duration_s must be at most the smallest lag step "
            f"lag_step_range_s[0]={lag_step_range_s[0]!r}, so bursts of a sequence "
            f"keep their order; got {burst_duration_s!r}.")
    longest = max(
        [(sequence_length - 1) * lag_step_range_s[1] + burst_duration_s] * bool(n_sequences)
        + [rotation_duration_s] * bool(n_rotation_units), default=0.0)
    if longest > duration_s:
        raise ValueError(
            f"duration_s={duration_s!r} is shorter than a motif (up to {longest:g} s).")


def _is_pair(value):
    try:
        return len(value) == 2 and all(
            isinstance(v, Real) and not isinstance(v, bool) for v in value)
    except TypeError:
        return False
