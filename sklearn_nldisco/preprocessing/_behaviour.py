"""Behaviour and trial metadata on a bin grid.

The bin grid is the one a fitted ``SpikeBinner`` exposes: ``bin_edges_``, an
array of shape (n_bins, 2) of half-open ``[left, right)`` edges in seconds,
sorted in time, and ``interval_ids_``, the interval (e.g. trial) each bin
belongs to. Every function here takes either such an object or the edges
array itself, so this layer needs nothing from the binner but those two
arrays.

Conventions, also described in ``docs/behaviour.md``:

- A continuous signal is resampled by averaging the finite samples whose
  timestamps fall in ``[left, right)``; a bin without any is NaN.
- Smoothing and differences stay inside one interval: they never cross a
  change of interval id or a gap in time between consecutive bins.
- Direction is ``atan2(v_y, v_x)`` in degrees, in ``[-180, 180)``; NaN where
  ``v_x`` and ``v_y`` are both zero.
- ``acceleration`` is the time derivative of the speed (signed: positive
  while speeding up); ``acc_x``, ``acc_y`` are the derivatives of the
  smoothed velocity.
- A bin belongs to the trial and to the task phase in force at its centre
  ``(left + right) / 2``: the trial with ``start_time <= centre < stop_time``
  and the phase of the latest event with ``event_time <= centre``.
"""

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from ..datasets import MC_MAZE_CONDITIONS, MC_MAZE_EVENTS, Recording

_MOVE_ONSET_COLUMN = "move_onset_time"
_MOVE_END_COLUMN = "move_end_time"

# Consecutive bins closer than this fraction of a bin width count as touching.
_CONTIGUITY_TOLERANCE = 1e-6

# scipy's default kernel reach, in standard deviations.
_SMOOTHING_TRUNCATE = 4.0


# --------------------------------------------------------------------------
# The bin grid


def _bin_grid(bins, interval_ids=None):
    """Return validated ``(bin_edges, interval_ids)`` from any accepted ``bins``."""
    if hasattr(bins, "bin_edges_"):
        if interval_ids is not None:
            raise ValueError(
                "interval_ids is taken from bins.interval_ids_ when bins is a "
                "fitted binner; pass interval_ids only with a bin_edges array."
            )
        edges = bins.bin_edges_
        interval_ids = getattr(bins, "interval_ids_", None)
    else:
        edges = bins
    try:
        edges = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"bins must be an array of shape (n_bins, 2) of bin edges or an "
            f"object with a bin_edges_ attribute; got {type(bins).__name__}."
        ) from error
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(
            f"bins must have shape (n_bins, 2), one [left, right) pair per bin; "
            f"got shape {edges.shape}."
        )
    if not np.isfinite(edges).all():
        raise ValueError("bins must hold finite edges; got NaN or infinite values.")
    left, right = edges[:, 0], edges[:, 1]
    if np.any(right <= left):
        first = int(np.flatnonzero(right <= left)[0])
        raise ValueError(
            f"bins must have right > left in every bin; bin {first} is "
            f"[{left[first]}, {right[first]})."
        )
    if np.any(left[1:] < left[:-1]):
        first = int(np.flatnonzero(left[1:] < left[:-1])[0]) + 1
        raise ValueError(
            f"bins must be sorted in time; bin {first} starts at {left[first]}, "
            f"before bin {first - 1} at {left[first - 1]}."
        )
    if interval_ids is None:
        interval_ids = _inferred_interval_ids(edges)
    else:
        interval_ids = _check_interval_ids(interval_ids, len(edges))
    return edges, interval_ids


def _breaks_in_time(edges):
    """Boolean (n_bins - 1,): True where bin i + 1 does not start where bin i ends."""
    widths = edges[:, 1] - edges[:, 0]
    tolerance = _CONTIGUITY_TOLERANCE * widths[:-1]
    return np.abs(edges[1:, 0] - edges[:-1, 1]) > tolerance


def _inferred_interval_ids(edges):
    """Interval ids of a bare edges array: a new interval at each gap or width change."""
    if len(edges) == 0:
        return np.zeros(0, dtype=np.int64)
    widths = edges[:, 1] - edges[:, 0]
    width_changes = np.abs(widths[1:] - widths[:-1]) > _CONTIGUITY_TOLERANCE * widths[:-1]
    breaks = _breaks_in_time(edges) | width_changes
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)


def _check_interval_ids(interval_ids, n_bins):
    interval_ids = np.asarray(interval_ids)
    if interval_ids.shape != (n_bins,):
        raise ValueError(
            f"interval_ids must have shape ({n_bins},), one id per bin; got "
            f"shape {interval_ids.shape}."
        )
    if interval_ids.dtype.kind not in "iu":
        raise ValueError(
            f"interval_ids must hold integers; got dtype {interval_ids.dtype}."
        )
    run_starts = np.flatnonzero(np.diff(interval_ids)) + 1
    ids_of_runs = interval_ids[np.concatenate([[0], run_starts])] if n_bins else interval_ids
    if len(np.unique(ids_of_runs)) != len(ids_of_runs):
        raise ValueError(
            "interval_ids must keep the bins of one interval contiguous; some "
            "interval id appears in two separate runs of bins."
        )
    return interval_ids.astype(np.int64)


def _segments(edges, interval_ids):
    """Segment number per bin: runs of touching bins of one interval.

    Smoothing and differences are computed within a segment only.
    """
    if len(edges) == 0:
        return np.zeros(0, dtype=np.int64)
    breaks = _breaks_in_time(edges) | (interval_ids[1:] != interval_ids[:-1])
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)


# --------------------------------------------------------------------------
# Continuous signals


def _check_timestamps(timestamps, name):
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {timestamps.shape}.")
    if not np.isfinite(timestamps).all():
        raise ValueError(f"{name} must be finite; got NaN or infinite times.")
    if np.any(timestamps[1:] < timestamps[:-1]):
        first = int(np.flatnonzero(timestamps[1:] < timestamps[:-1])[0]) + 1
        raise ValueError(
            f"{name} must be sorted (non-decreasing); sample {first} at "
            f"{timestamps[first]} s comes after {timestamps[first - 1]} s. Sort "
            f"the samples first, e.g. with np.argsort(timestamps, kind='stable')."
        )
    return timestamps


def _running_sum(values):
    """Cumulative sum with a leading zero, so that sum(values[a:b]) = out[b] - out[a]."""
    out = np.zeros(len(values) + 1, dtype=np.result_type(values, np.float64))
    np.cumsum(values, out=out[1:])
    return out


def resample_to_bins(timestamps, values, bins):
    """Average a sampled signal over each bin.

    Each bin ``[left, right)`` receives the mean of the finite samples whose
    timestamps satisfy ``left <= t < right``: an average over the bin, not
    the nearest sample. Non-finite samples (NaN, inf) are ignored channel by
    channel, so one missing sample does not spoil its bin. A bin with no
    finite sample is NaN. Samples that fall between bins are not used.

    The sums come from cumulative sums and two binary searches, so the cost
    is linear in the number of samples and logarithmic per bin (hours of a
    1 kHz signal onto 10^5 bins take a fraction of a second).

    Parameters
    ----------
    timestamps : array-like of shape (n_samples,)
        Sample times in seconds, finite and sorted (non-decreasing). Unsorted
        timestamps are rejected rather than silently sorted.
    values : array-like of shape (n_samples,) or (n_samples, n_channels)
        The samples.
    bins : array-like of shape (n_bins, 2) or fitted binner
        Bin edges ``[left, right)`` in seconds, sorted in time, or an object
        with a ``bin_edges_`` attribute (a fitted ``SpikeBinner``).

    Returns
    -------
    binned : ndarray of shape (n_bins,) or (n_bins, n_channels)
        Mean of each channel in each bin; 1-D when ``values`` is 1-D.

    See Also
    --------
    bin_metadata : Resample every behavioural signal of a session at once.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.preprocessing._behaviour import resample_to_bins
    >>> timestamps = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25])
    >>> values = np.array([1.0, 3.0, np.nan, 10.0, 20.0, 40.0])
    >>> resample_to_bins(timestamps, values, [[0.0, 0.5], [0.5, 1.0], [2.0, 3.0]])
    array([ 2., 10., nan])
    """
    edges, _ = _bin_grid(bins)
    timestamps = _check_timestamps(timestamps, "timestamps")
    values = np.asarray(values, dtype=np.float64)
    one_channel = values.ndim == 1
    if one_channel:
        values = values[:, None]
    if values.ndim != 2 or len(values) != len(timestamps):
        raise ValueError(
            f"values must have one row per timestamp, shape ({len(timestamps)},) "
            f"or ({len(timestamps)}, n_channels); got shape {values.shape}."
        )
    first_sample = np.searchsorted(timestamps, edges[:, 0], side="left")
    end_sample = np.searchsorted(timestamps, edges[:, 1], side="left")
    binned = np.full((len(edges), values.shape[1]), np.nan)
    for channel in range(values.shape[1]):
        column = values[:, channel]
        finite = np.isfinite(column)
        all_finite = bool(finite.all())
        if all_finite:
            counts = end_sample - first_sample
            reference = column.mean() if len(column) else 0.0
            deviations = column - reference
        else:
            finite_counts = _running_sum(finite.astype(np.int64))
            counts = finite_counts[end_sample] - finite_counts[first_sample]
            reference = column[finite].mean() if finite.any() else 0.0
            deviations = np.where(finite, column - reference, 0.0)
        # Summing deviations from the mean keeps the running sum small, so the
        # difference of two running sums loses no precision to a large offset.
        sums = _running_sum(deviations)
        filled = counts > 0
        bin_sums = sums[end_sample[filled]] - sums[first_sample[filled]]
        binned[filled, channel] = bin_sums / counts[filled] + reference
    return binned[:, 0] if one_channel else binned


# --------------------------------------------------------------------------
# Kinematics


def _smooth_within_segments(values, segments, sigma_bins):
    """Gaussian smoothing per segment, ignoring NaN bins, which stay NaN.

    The segments are laid out with zero-weight padding between them, as wide
    as the kernel's reach, so one filter call never mixes two segments. The
    kernel is renormalised over the finite bins it covers (at segment ends
    and around missing bins).
    """
    if sigma_bins == 0 or len(values) == 0:
        return values.copy()
    reach = int(_SMOOTHING_TRUNCATE * sigma_bins + 0.5)
    padded_index = np.arange(len(values)) + (segments + 1) * reach
    padded_length = padded_index[-1] + reach + 1
    finite = np.isfinite(values)
    weighted = np.zeros((padded_length, values.shape[1]))
    weights = np.zeros((padded_length, values.shape[1]))
    weighted[padded_index] = np.where(finite, values, 0.0)
    weights[padded_index] = finite
    options = dict(sigma=sigma_bins, axis=0, mode="constant", cval=0.0,
                   truncate=_SMOOTHING_TRUNCATE)
    numerator = gaussian_filter1d(weighted, **options)[padded_index]
    denominator = gaussian_filter1d(weights, **options)[padded_index]
    smoothed = np.full_like(values, np.nan)
    smoothed[finite] = numerator[finite] / denominator[finite]
    return smoothed


def _derivative_within_segments(values, times, segments):
    """Time derivative per segment: centred differences, one-sided at the ends.

    A segment of a single bin has no derivative (NaN).
    """
    n_bins = len(values)
    index = np.arange(n_bins)
    same_as_next = np.zeros(n_bins, dtype=bool)
    same_as_next[:-1] = segments[1:] == segments[:-1]
    same_as_previous = np.zeros(n_bins, dtype=bool)
    same_as_previous[1:] = same_as_next[:-1]
    later = np.where(same_as_next, index + 1, index)
    earlier = np.where(same_as_previous, index - 1, index)
    with np.errstate(divide="ignore", invalid="ignore"):
        derivative = (values[later] - values[earlier]) / (times[later] - times[earlier])[:, None]
    derivative[later == earlier] = np.nan
    return derivative


def _axis_names(n_axes):
    return ("x", "y", "z")[:n_axes] if n_axes <= 3 else tuple(str(i) for i in range(n_axes))


def _check_per_bin(array, name, n_bins):
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or len(array) != n_bins:
        raise ValueError(
            f"{name} must have one row per bin, shape ({n_bins}, n_axes); got "
            f"shape {array.shape}."
        )
    return array


def kinematics(bins, position=None, velocity=None, *, interval_ids=None,
               smooth_sigma_bins=1.0, min_speed=None):
    """Velocity, speed, direction and acceleration on the bins.

    The velocity is ``velocity`` when given, otherwise the time derivative
    of ``position``. It is smoothed with a Gaussian of ``smooth_sigma_bins``
    bins, then speed, direction and accelerations are computed from it.
    Smoothing and derivatives are computed separately within each interval
    (and each run of touching bins): nothing leaks across a trial gap.

    Derivatives are centred differences over the bin centres, one-sided at
    the first and last bin of an interval; an interval of a single bin has
    none (NaN). Smoothing ignores NaN bins, renormalises the kernel at
    interval ends, and leaves NaN bins NaN.

    Parameters
    ----------
    bins : array-like of shape (n_bins, 2) or fitted binner
        Bin edges ``[left, right)`` in seconds, or an object with
        ``bin_edges_`` and ``interval_ids_`` (a fitted ``SpikeBinner``).
    position : array-like of shape (n_bins, n_axes), default=None
        Position per bin (e.g. from :func:`resample_to_bins`). Used only
        when ``velocity`` is None.
    velocity : array-like of shape (n_bins, n_axes), default=None
        Velocity per bin, in position units per second.
    interval_ids : array-like of int of shape (n_bins,), default=None
        Interval of each bin, with ``bins`` given as an edges array. When
        None, a new interval starts at every gap in time.
    smooth_sigma_bins : float, default=1.0
        Standard deviation of the Gaussian applied to the velocity, in bins;
        0 disables smoothing.
    min_speed : float, default=None
        Speed (position units per second) at or below which the direction
        is undefined (NaN): at rest the direction of a velocity that is only
        rounding noise would be a random label. None means ``1e-6`` times
        the largest speed of the data, which removes rounding noise only;
        give a physical threshold (e.g. a few mm/s) to label only real
        movement.

    Returns
    -------
    kinematics : DataFrame of shape (n_bins, n_columns)
        One row per bin with columns

        - ``vel_x``, ``vel_y`` ...: the smoothed velocity;
        - ``speed``: its norm;
        - ``direction_deg``: ``atan2(vel_y, vel_x)`` in degrees, in
          ``[-180, 180)``: 0 is +x, 90 is +y, -180 is -x; NaN where
          the speed is at most ``min_speed``. Present with two or more axes
          (uses the first two);
        - ``acc_x``, ``acc_y`` ...: the time derivative of the smoothed
          velocity;
        - ``acceleration``: the time derivative of ``speed``, i.e. the
          tangential acceleration, positive while speeding up and negative
          while slowing down.

    See Also
    --------
    resample_to_bins : Bring a sampled position or velocity onto the bins.
    bin_metadata : All metadata of a session at once.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.preprocessing._behaviour import kinematics
    >>> edges = np.column_stack([np.arange(4) * 0.5, np.arange(1, 5) * 0.5])
    >>> position = np.column_stack([np.arange(4) * 1.5, np.arange(4) * 2.0])
    >>> kinematics(edges, position=position, smooth_sigma_bins=0)[
    ...     ["vel_x", "vel_y", "speed", "direction_deg", "acceleration"]]
       vel_x  vel_y  speed  direction_deg  acceleration
    0    3.0    4.0    5.0      53.130102           0.0
    1    3.0    4.0    5.0      53.130102           0.0
    2    3.0    4.0    5.0      53.130102           0.0
    3    3.0    4.0    5.0      53.130102           0.0
    """
    edges, interval_ids = _bin_grid(bins, interval_ids)
    n_bins = len(edges)
    if not _is_non_negative_number(smooth_sigma_bins):
        raise ValueError(
            f"smooth_sigma_bins must be a finite number >= 0; got {smooth_sigma_bins!r}."
        )
    segments = _segments(edges, interval_ids)
    centres = edges.mean(axis=1)
    if velocity is not None:
        velocity = _check_per_bin(velocity, "velocity", n_bins)
    elif position is not None:
        position = _check_per_bin(position, "position", n_bins)
        velocity = _derivative_within_segments(position, centres, segments)
    else:
        raise ValueError("kinematics needs position or velocity; both are None.")
    if min_speed is not None and not _is_non_negative_number(min_speed):
        raise ValueError(f"min_speed must be a finite number >= 0 or None; got {min_speed!r}.")
    velocity = _smooth_within_segments(velocity, segments, float(smooth_sigma_bins))
    speed = np.sqrt(np.sum(velocity**2, axis=1))
    if min_speed is None:
        finite = speed[np.isfinite(speed)]
        min_speed = 1e-6 * finite.max() if finite.size else 0.0
    acceleration_vector = _derivative_within_segments(velocity, centres, segments)
    acceleration = _derivative_within_segments(speed[:, None], centres, segments)[:, 0]
    axes = _axis_names(velocity.shape[1])
    columns = {f"vel_{axis}": velocity[:, i] for i, axis in enumerate(axes)}
    columns["speed"] = speed
    if velocity.shape[1] >= 2:
        direction = _direction_deg(velocity[:, 0], velocity[:, 1])
        columns["direction_deg"] = np.where(speed > min_speed, direction, np.nan)
    columns.update({f"acc_{axis}": acceleration_vector[:, i] for i, axis in enumerate(axes)})
    columns["acceleration"] = acceleration
    return pd.DataFrame(columns, index=pd.RangeIndex(n_bins))


def _is_non_negative_number(value):
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
        and value >= 0
    )


def _direction_deg(velocity_x, velocity_y):
    """``atan2(vy, vx)`` in degrees, in ``[-180, 180)``; NaN for a zero vector."""
    degrees = np.degrees(np.arctan2(velocity_y, velocity_x))
    degrees = np.where(degrees >= 180.0, degrees - 360.0, degrees)
    return np.where((velocity_x == 0) & (velocity_y == 0), np.nan, degrees)


# --------------------------------------------------------------------------
# Trials and task phases


def _check_trials(trials):
    if not isinstance(trials, pd.DataFrame):
        raise TypeError(
            f"trials must be a pandas DataFrame with start_time and stop_time "
            f"columns; got {type(trials).__name__}."
        )
    missing = [c for c in ("start_time", "stop_time") if c not in trials.columns]
    if missing:
        raise ValueError(
            f"trials must have columns start_time and stop_time; missing "
            f"{missing}. Columns present: {list(trials.columns)}."
        )
    start = _event_times(trials, "start_time")
    stop = _event_times(trials, "stop_time")
    if not (np.isfinite(start).all() and np.isfinite(stop).all()):
        raise ValueError("trials start_time and stop_time must be finite; got NaN.")
    if np.any(stop < start):
        first = int(np.flatnonzero(stop < start)[0])
        raise ValueError(
            f"trials must have stop_time >= start_time; trial at row {first} runs "
            f"from {start[first]} to {stop[first]}."
        )
    return start, stop


def _event_times(trials, column):
    try:
        return trials[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"trials column {column!r} must hold times in seconds; got dtype "
            f"{trials[column].dtype}."
        ) from error


def _resolve_events(trials, events, movement_duration_s):
    """Event columns, the phase each starts, and their times (n_trials, n_events)."""
    derived = {}
    if movement_duration_s is not None:
        if not _is_non_negative_number(movement_duration_s):
            raise ValueError(
                f"movement_duration_s must be a finite number >= 0 or None; got "
                f"{movement_duration_s!r}."
            )
        if _MOVE_ONSET_COLUMN not in trials.columns:
            raise ValueError(
                f"movement_duration_s needs a {_MOVE_ONSET_COLUMN!r} column in "
                f"trials; columns present: {list(trials.columns)}."
            )
        derived[_MOVE_END_COLUMN] = (
            _event_times(trials, _MOVE_ONSET_COLUMN) + movement_duration_s
        )
    if events is None:
        available = set(trials.columns) | set(derived)
        events = [
            (column, phase)
            for column, phase in MC_MAZE_EVENTS
            if column != _MOVE_END_COLUMN or column in available
        ]
    else:
        events = list(events)
        if not events or not all(
            isinstance(pair, tuple | list) and len(pair) == 2 for pair in events
        ):
            raise ValueError(
                f"events must be a non-empty sequence of (column, phase) pairs; "
                f"got {events!r}."
            )
    columns = [column for column, _ in events]
    missing = [c for c in columns if c not in trials.columns and c not in derived]
    if missing:
        raise ValueError(
            f"events names trial columns that trials lacks: {missing}. Columns "
            f"present: {list(trials.columns)}."
        )
    times = np.column_stack(
        [derived[c] if c in derived else _event_times(trials, c) for c in columns]
    ).reshape(len(trials), len(columns))
    phases = [str(phase) for _, phase in events]
    return columns, phases, times


def _resolve_conditions(trials, conditions):
    if conditions is None:
        return [c for c in MC_MAZE_CONDITIONS if c in trials.columns]
    conditions = [conditions] if isinstance(conditions, str) else list(conditions)
    missing = [c for c in conditions if c not in trials.columns]
    if missing:
        raise ValueError(
            f"conditions names trial columns that trials lacks: {missing}. "
            f"Columns present: {list(trials.columns)}."
        )
    return conditions


def _assign_trials(centres, start, stop):
    """Row of ``trials`` holding each bin centre, or -1.

    Trials are visited in order of start time and later ones overwrite, so
    where trials overlap a bin goes to the latest-starting trial holding it.
    """
    order = np.argsort(centres, kind="stable")
    sorted_centres = centres[order]
    first_bin = np.searchsorted(sorted_centres, start, side="left")
    end_bin = np.searchsorted(sorted_centres, stop, side="left")
    trial_of_sorted_bin = np.full(len(centres), -1, dtype=np.int64)
    for row in np.argsort(start, kind="stable"):
        trial_of_sorted_bin[first_bin[row]:end_bin[row]] = row
    trial_row = np.empty_like(trial_of_sorted_bin)
    trial_row[order] = trial_of_sorted_bin
    return trial_row


def _latest_event(times, happened):
    """Index of the latest event among those that happened, per row, or -1.

    Ties in time go to the event listed last, so a phase of zero duration is
    skipped.
    """
    latest = np.where(happened, times, -np.inf)
    n_events = times.shape[1]
    index = n_events - 1 - np.argmax(latest[:, ::-1], axis=1)
    return np.where(happened.any(axis=1), index, -1)


def _categorical(codes_into_names, names):
    """Categorical from indices into ``names`` (which may repeat), -1 = missing."""
    categories = list(dict.fromkeys(names))
    name_to_code = np.array([categories.index(name) for name in names] + [-1])
    return pd.Categorical.from_codes(name_to_code[codes_into_names], categories=categories)


def _event_label(column):
    return column[: -len("_time")] if column.endswith("_time") else column


def trial_labels(bins, trials, *, events=None, conditions=None, trial_id_column=None,
                 movement_duration_s=None):
    """Trial id, trial conditions and task phase of every bin.

    A bin belongs to the trial whose ``[start_time, stop_time)`` holds the
    bin's centre ``(left + right) / 2``, and to the phase of that trial's
    latest event with ``event_time <= centre``. Equivalently, a phase starts
    at the first bin whose centre is at or after its event: an event on a
    bin's left edge or in its first half starts the new phase in that bin;
    an event in its second half (or on its right edge) starts it in the next
    bin. So each bin gets the phase that covers most of it.

    Parameters
    ----------
    bins : array-like of shape (n_bins, 2) or fitted binner
        Bin edges ``[left, right)`` in seconds, or an object with a
        ``bin_edges_`` attribute (a fitted ``SpikeBinner``).
    trials : DataFrame
        One row per trial with ``start_time`` and ``stop_time`` (seconds),
        event-time columns and condition columns. Rows need not be sorted.
        Where trials overlap, a bin goes to the latest-starting trial that
        holds it.
    events : sequence of (str, str) pairs, default=None
        ``(column, phase)``: the trial column holding an event time and the
        name of the phase that event starts. Every column must be present.
        None uses :data:`~sklearn_nldisco.datasets.MC_MAZE_EVENTS`: ``start_time`` -> "before_target",
        ``target_on_time`` -> "delay", ``go_cue_time`` -> "reaction",
        ``move_onset_time`` -> "movement", ``move_end_time`` ->
        "after_movement", where ``move_end_time`` is dropped if trials lacks
        it and ``movement_duration_s`` is None.
    conditions : sequence of str, default=None
        Trial columns copied onto every bin of the trial. None copies those
        of :data:`~sklearn_nldisco.datasets.MC_MAZE_CONDITIONS` that trials has; a given list must all
        be present.
    trial_id_column : str, default=None
        Column holding the trial ids; None uses the index of ``trials``.
    movement_duration_s : float, default=None
        When given, ``move_end_time`` is ``move_onset_time +
        movement_duration_s`` (replacing any such column), so that the
        "after_movement" phase exists on data that records no end of
        movement.

    Returns
    -------
    labels : DataFrame of shape (n_bins, n_columns)
        One row per bin (index 0 .. n_bins - 1) with columns

        - ``trial_id``: the trial's id, -1 for a bin outside every trial
          (with non-integer ids, missing instead);
        - the condition columns, missing outside trials; integer and
          boolean columns become pandas' nullable ``Int64`` and ``boolean``
          (missing: ``<NA>``), so they stay discrete for selectivity;
        - ``phase``: categorical, in the order of ``events``. An event with
          a NaN time (e.g. no movement onset in a failed trial) never
          happens, so the previous phase lasts until the next event that
          did happen. Missing outside trials and before the first event;
        - ``event``: categorical, the event (column name without ``_time``)
          whose time lies in the bin ``[left, right)``, the latest one if
          several do; missing in other bins. Only the bin's own trial's
          events count.

    See Also
    --------
    bin_metadata : Trial labels and behaviour of a session at once.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn_nldisco.preprocessing._behaviour import trial_labels
    >>> edges = np.column_stack([np.arange(8) * 0.25, np.arange(1, 9) * 0.25])
    >>> trials = pd.DataFrame(
    ...     {"start_time": [0.0], "stop_time": [1.75], "target_on_time": [0.5],
    ...      "go_cue_time": [0.8], "move_onset_time": [1.2], "maze_id": [7]},
    ...     index=pd.Index([42], name="trial_id"))
    >>> trial_labels(edges, trials)
       trial_id  maze_id          phase       event
    0        42        7  before_target       start
    1        42        7  before_target         NaN
    2        42        7          delay   target_on
    3        42        7       reaction      go_cue
    4        42        7       reaction  move_onset
    5        42        7       movement         NaN
    6        42        7       movement         NaN
    7        -1     <NA>            NaN         NaN

    The target appears on bin 2's left edge, so bin 2 is "delay". The go cue
    (0.8 s) lies in the first half of bin 3 ``[0.75, 1.0)``, so bin 3 is
    "reaction"; movement onset (1.2 s) lies in the second half of bin 4
    ``[1.0, 1.25)``, so movement starts at bin 5. Bin 7 is past ``stop_time``.
    """
    edges, _ = _bin_grid(bins)
    start, stop = _check_trials(trials)
    columns, phases, times = _resolve_events(trials, events, movement_duration_s)
    condition_columns = _resolve_conditions(trials, conditions)
    if trial_id_column is None:
        trial_ids = trials.index
    elif trial_id_column in trials.columns:
        trial_ids = pd.Index(trials[trial_id_column])
    else:
        raise ValueError(
            f"trial_id_column {trial_id_column!r} is not a column of trials; "
            f"columns present: {list(trials.columns)}."
        )

    n_bins = len(edges)
    centres = edges.mean(axis=1)
    trial_row = _assign_trials(centres, start, stop)
    inside = trial_row >= 0
    event_times = times[trial_row[inside]]

    phase_index = np.full(n_bins, -1, dtype=np.int64)
    phase_index[inside] = _latest_event(event_times, event_times <= centres[inside, None])
    in_bin = (event_times >= edges[inside, :1]) & (event_times < edges[inside, 1:])
    event_index = np.full(n_bins, -1, dtype=np.int64)
    event_index[inside] = _latest_event(event_times, in_bin)

    labels = pd.DataFrame(index=pd.RangeIndex(n_bins))
    if trial_ids.dtype.kind in "iu":
        ids = np.full(n_bins, -1, dtype=np.int64)
        ids[inside] = trial_ids.to_numpy()[trial_row[inside]]
        labels["trial_id"] = ids
    else:
        labels["trial_id"] = pd.Series(trial_ids).reindex(trial_row).to_numpy()
    per_trial = trials[condition_columns].reset_index(drop=True)
    per_bin = per_trial.reindex(trial_row).reset_index(drop=True)
    for column in condition_columns:
        labels[column] = _keep_discrete_dtype(per_bin[column], per_trial[column].dtype)
    labels["phase"] = _categorical(phase_index, phases)
    labels["event"] = _categorical(event_index, [_event_label(c) for c in columns])
    return labels


def _keep_discrete_dtype(values, dtype):
    """Integer and boolean trial columns stay integer and boolean (pandas'
    nullable dtypes) once bins outside trials make them missing, instead of
    turning into floats and objects."""
    if pd.api.types.is_bool_dtype(dtype):
        return values.astype("boolean")
    if pd.api.types.is_integer_dtype(dtype):
        return values.astype("Int64")
    return values


# --------------------------------------------------------------------------
# Everything at once


def _as_samples(name, series):
    """``(timestamps, values)`` of a BehaviourSeries-like or a pair."""
    if hasattr(series, "timestamps") and hasattr(series, "data"):
        return series.timestamps, series.data
    if isinstance(series, tuple | list) and len(series) == 2:
        return series
    raise TypeError(
        f"behaviour[{name!r}] must be a BehaviourSeries or a (timestamps, values) "
        f"pair; got {type(series).__name__}."
    )


def bin_metadata(bins, trials=None, behaviour=None, *, interval_ids=None, events=None,
                 conditions=None, trial_id_column=None, movement_duration_s=None,
                 kinematics_from=("hand_pos", "hand_vel"), smooth_sigma_bins=1.0,
                 min_speed=None):
    """Everything known about each bin: time, trial, conditions, phase, behaviour.

    This is the table that selectivity analysis reads: one row per bin of
    the spike counts, in the same order.

    Parameters
    ----------
    bins : fitted binner or array-like of shape (n_bins, 2)
        An object with ``bin_edges_`` and ``interval_ids_`` (a fitted
        ``SpikeBinner``), or bin edges ``[left, right)`` in seconds.
    trials : DataFrame or Recording, default=None
        The trial table (see :func:`trial_labels`), or a ``Recording``
        whose ``trials`` and ``behaviour`` are used. None adds no trial
        columns.
    behaviour : mapping of str to BehaviourSeries or (timestamps, values), default=None
        Sampled signals, resampled onto the bins with
        :func:`resample_to_bins`. Given with a ``Recording``, it replaces
        the recording's behaviour. None adds no behaviour columns.
    interval_ids : array-like of int of shape (n_bins,), default=None
        Interval of each bin, with ``bins`` given as an edges array. When
        None, a new interval starts at every gap in time.
    events, conditions, trial_id_column, movement_duration_s
        Passed to :func:`trial_labels`.
    kinematics_from : (str, str) or None, default=("hand_pos", "hand_vel")
        Names of the position and velocity signals in ``behaviour`` from
        which :func:`kinematics` derives speed, direction and acceleration:
        the velocity signal when present, else the position signal. None,
        or neither signal present, adds no kinematic columns.
    smooth_sigma_bins : float, default=1.0
        Gaussian smoothing of the velocity, in bins (see :func:`kinematics`).
    min_speed : float, default=None
        Speed at or below which the direction is NaN (see :func:`kinematics`).

    Returns
    -------
    metadata : DataFrame of shape (n_bins, n_columns)
        Index 0 .. n_bins - 1, one row per bin, with columns

        - ``bin_start``, ``bin_stop``: the bin edges in seconds;
        - ``interval_id``: the interval of the bin;
        - with trials: ``trial_id``, the condition columns, ``phase`` and
          ``event`` (see :func:`trial_labels`);
        - with behaviour: ``<name>_x``, ``<name>_y`` ... for each signal
          (``<name>`` alone for a one-channel signal), the mean of the
          samples in the bin, NaN where there is none;
        - with kinematics: ``vel_x``, ``vel_y`` (smoothed velocity),
          ``speed``, ``direction_deg``, ``acc_x``, ``acc_y`` and
          ``acceleration`` (see :func:`kinematics`).

    See Also
    --------
    resample_to_bins, kinematics, trial_labels : The building blocks.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn_nldisco.preprocessing._behaviour import bin_metadata
    >>> edges = np.column_stack([np.arange(4) * 0.5, np.arange(1, 5) * 0.5])
    >>> trials = pd.DataFrame({"start_time": [0.0], "stop_time": [2.0],
    ...                        "go_cue_time": [1.0]})
    >>> timestamps = np.arange(2000) / 1000
    >>> hand_pos = np.column_stack([10 * timestamps, np.zeros_like(timestamps)])
    >>> metadata = bin_metadata(
    ...     edges, trials, {"hand_pos": (timestamps, hand_pos)},
    ...     events=[("start_time", "wait"), ("go_cue_time", "go")])
    >>> metadata[["bin_start", "trial_id", "phase", "hand_pos_x", "speed",
    ...           "direction_deg"]].round(4)
       bin_start  trial_id phase  hand_pos_x  speed  direction_deg
    0        0.0         0  wait       2.495   10.0            0.0
    1        0.5         0  wait       7.495   10.0            0.0
    2        1.0         0    go      12.495   10.0            0.0
    3        1.5         0    go      17.495   10.0            0.0
    """
    edges, interval_ids = _bin_grid(bins, interval_ids)
    if isinstance(trials, Recording):
        if behaviour is None:
            behaviour = trials.behaviour
        trials = trials.trials
    if behaviour is None:
        behaviour = {}
    if not isinstance(behaviour, Mapping):
        raise TypeError(
            f"behaviour must be a mapping of signal name to BehaviourSeries or "
            f"(timestamps, values); got {type(behaviour).__name__}."
        )

    metadata = pd.DataFrame(
        {"bin_start": edges[:, 0], "bin_stop": edges[:, 1], "interval_id": interval_ids},
        index=pd.RangeIndex(len(edges)),
    )
    parts = [metadata]
    if trials is not None:
        parts.append(
            trial_labels(edges, trials, events=events, conditions=conditions,
                         trial_id_column=trial_id_column,
                         movement_duration_s=movement_duration_s)
        )
    binned = {}
    for name, series in behaviour.items():
        timestamps, values = _as_samples(name, series)
        signal = resample_to_bins(timestamps, values, edges)
        signal = signal[:, None] if signal.ndim == 1 else signal
        binned[name] = signal
        axes = _axis_names(signal.shape[1])
        names = [str(name)] if signal.shape[1] == 1 else [f"{name}_{a}" for a in axes]
        parts.append(pd.DataFrame(signal, columns=names, index=metadata.index))
    if kinematics_from is not None:
        position_name, velocity_name = kinematics_from
        if velocity_name in binned or position_name in binned:
            parts.append(
                kinematics(edges, position=binned.get(position_name),
                           velocity=binned.get(velocity_name),
                           interval_ids=interval_ids,
                           smooth_sigma_bins=smooth_sigma_bins, min_speed=min_speed)
            )
    metadata = pd.concat(parts, axis=1)
    duplicated = metadata.columns[metadata.columns.duplicated()].tolist()
    if duplicated:
        raise ValueError(
            f"bin_metadata would hold two columns named {duplicated}; rename the "
            f"behaviour signals or trial columns that collide."
        )
    return metadata
