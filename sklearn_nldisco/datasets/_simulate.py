"""A simulated delayed centre-out reaching session with known latent features."""

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from ._recording import BehaviourSeries, Recording

# Task timing in seconds: (low, high) of a uniform draw, or a constant.
_FIRST_START_S = (0.2, 0.5)
_CENTRE_HOLD_S = (0.3, 0.6)
_DELAY_S = (0.3, 0.9)
_REACTION_TIME_S = (0.25, 0.4)
_REACH_DURATION_S = (0.25, 0.5)
_TARGET_HOLD_S = (0.3, 0.5)
_RETURN_DURATION_S = 0.5
_REST_S = (0.2, 0.5)

# Time courses of the task-phase features, in seconds.
_DELAY_LATENCY_S = 0.05
_DELAY_RISE_S = 0.1
_DELAY_DECAY_S = 0.08
_DELAY_DECAY_SPAN = 5  # decay time constants after which the feature is 0
_GO_LATENCY_S = 0.1
_GO_WIDTH_S = 0.03
_GO_SPAN = 4  # widths either side of the peak beyond which the feature is 0

# Loadings: fraction of units that load on a feature, the loading range (Hz),
# and the relative chance of an M1 (vs PMd) unit to be one of them.
_LOADING_PLAN = {
    "moving": (0.3, (15.0, 35.0), 2.0),
    "reach": (0.1, (20.0, 40.0), 2.0),
    "fast": (0.15, (10.0, 25.0), 2.0),
    "delay": (0.25, (8.0, 20.0), 0.5),
    "go": (0.15, (10.0, 25.0), 0.5),
}

# The condition each non-direction feature is built to fire for (variable, value).
_PLANTED_CONDITIONS = {
    "moving": ("phase", "movement"),
    "fast": ("reach_speed", "fast"),
    "delay": ("epoch", "preparation"),
    "go": ("phase", "reaction"),
}

# Peak of the normalised minimum-jerk speed profile ds/dtau (at tau = 1/2).
_MIN_JERK_PEAK = 1.875


@dataclass
class ReachingGroundTruth:
    """The latent features behind a simulated reaching session.

    The firing rate of unit ``u`` at time ``t`` is
    ``baseline_rates_hz[u] + feature_activity(t) @ feature_loadings[:, u]``,
    where ``feature_activity`` is held constant over each step
    ``[timestamps[i], timestamps[i] + time_step_s)`` and is zero outside the
    session.

    Parameters
    ----------
    feature_names : tuple of str
        One name per feature.
    feature_parents : dict of str to str or None
        The hierarchy: each feature's parent, ``None`` for a root. A child
        is active only while its parent is.
    feature_loadings : ndarray of shape (n_features, n_units)
        Non-negative, sparse: the rate (Hz) each feature adds to each unit
        at activity 1.
    baseline_rates_hz : ndarray of shape (n_units,)
        Rate of each unit when no feature is active.
    timestamps : ndarray of shape (n_samples,)
        Start of each time step (s); the same grid as the behaviour.
    time_step_s : float
        Length of a step.
    feature_activity : ndarray of shape (n_samples, n_features)
        The time course of each feature, in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.datasets._simulate import make_reaching_session
    >>> recording, truth = make_reaching_session(n_units=6, n_trials=8, random_state=0)
    >>> truth.feature_names[:3]
    ('moving', 'reach_0deg', 'reach_45deg')
    >>> truth.feature_parents["reach_45deg"]
    'moving'
    >>> edges = np.arange(0.0, 5.0, 0.05)
    >>> truth.binned_activity(edges).shape, truth.expected_counts(edges).shape
    ((99, 12), (99, 6))
    """

    feature_names: tuple
    feature_parents: dict
    feature_loadings: np.ndarray
    baseline_rates_hz: np.ndarray
    timestamps: np.ndarray
    time_step_s: float
    feature_activity: np.ndarray = field(repr=False)

    @property
    def n_features(self):
        """Number of features."""
        return len(self.feature_names)

    @property
    def duration_s(self):
        """End of the simulated session (s); it starts at 0."""
        return len(self.timestamps) * self.time_step_s

    def feature_index(self, name):
        """Column of ``feature_activity`` (row of ``feature_loadings``) of a feature."""
        try:
            return self.feature_names.index(name)
        except ValueError:
            raise ValueError(
                f"No feature named {name!r}; features are {list(self.feature_names)}."
            ) from None

    @property
    def planted_conditions(self):
        """The behavioural condition each feature is built to fire for.

        A dict from feature name to ``(variable, condition)``, naming a
        column of :meth:`condition_variables` and one of its values:

        - ``moving``: ``("phase", "movement")``;
        - ``reach_<d>deg``: ``("reach_direction", "<d>")``, the target
          direction during the movement phase;
        - ``fast``: ``("reach_speed", "fast")``, the movement phase of reaches
          faster than the median reach;
        - ``delay``: ``("epoch", "preparation")``, from target onset to
          movement onset (the feature holds through the delay and the
          reaction time, so neither phase alone is its condition);
        - ``go``: ``("phase", "reaction")``, from the go cue to movement onset.

        Each is compared within its own variable: a feature's latent should
        prefer the planted condition over the other values of that variable.
        """
        planted = {}
        for name in self.feature_names:
            if name.startswith("reach_") and name.endswith("deg"):
                planted[name] = ("reach_direction", name[len("reach_"):-len("deg")])
            else:
                planted[name] = _PLANTED_CONDITIONS[name]
        return planted

    def condition_variables(self, metadata):
        """Per-bin variables in which each feature has one planted condition.

        Parameters
        ----------
        metadata : DataFrame
            Per-bin metadata of this session from ``bin_metadata``, with
            the columns ``phase``, ``trial_id``, ``trial_type`` (the target)
            and ``speed``.

        Returns
        -------
        variables : DataFrame of shape (n_bins, 4), same index as metadata
            ``phase`` (as in metadata); ``epoch`` (``phase`` with "delay"
            and "reaction" merged into "preparation"); ``reach_direction``
            (the target direction in degrees, as in the feature names,
            during the movement phase; missing elsewhere); ``reach_speed``
            ("fast" or "slow" during the movement phase of trials whose peak
            binned speed is above or at most the median over trials; missing
            elsewhere). Bins outside trials are missing in all four.

        See Also
        --------
        planted_conditions : Which condition of which variable each feature
            is built to fire for.
        """
        missing = [c for c in ("phase", "trial_id", "trial_type", "speed")
                   if c not in metadata.columns]
        if missing:
            raise ValueError(
                f"metadata lacks the columns {missing}; pass the output of bin_metadata "
                "for this session.")
        phase = metadata["phase"].astype(object).where(metadata["phase"].notna(), None)
        moving = (phase == "movement").to_numpy()
        epoch = phase.replace({"delay": "preparation", "reaction": "preparation"})
        n_directions = sum(name.startswith("reach_") for name in self.feature_names)
        target = metadata["trial_type"].to_numpy(np.float64, na_value=np.nan)
        direction = np.full(len(metadata), None, dtype=object)
        direction[moving] = [f"{360.0 * t / n_directions:g}" for t in target[moving]]
        peak = metadata["speed"].where(moving).groupby(metadata["trial_id"]).max()
        is_fast = metadata["trial_id"].map(peak > peak.median()).to_numpy(bool)
        speed_class = np.full(len(metadata), None, dtype=object)
        speed_class[moving] = np.where(is_fast[moving], "fast", "slow")
        return pd.DataFrame(
            {"phase": phase.to_numpy(object), "epoch": epoch.to_numpy(object),
             "reach_direction": direction, "reach_speed": speed_class},
            index=metadata.index)

    def _integrals(self, bin_edges):
        """Left edges, right edges and the integral of each feature over each
        bin (activity x s), exactly."""
        left, right = _as_bin_bounds(bin_edges)
        grid = np.arange(len(self.timestamps) + 1) * self.time_step_s
        cumulative = np.zeros((len(grid), self.n_features))
        np.cumsum(self.feature_activity * self.time_step_s, axis=0, out=cumulative[1:])
        integrals = np.column_stack(
            [np.interp(right, grid, cumulative[:, f]) - np.interp(left, grid, cumulative[:, f])
             for f in range(self.n_features)]
        )
        return left, right, integrals

    def binned_activity(self, bin_edges):
        """Mean activity of each feature in each bin.

        Parameters
        ----------
        bin_edges : array-like of shape (n_bins + 1,) or (n_bins, 2)
            Increasing bin edges (s), or the ``[left, right)`` edges of each
            bin (``SpikeBinner.bin_edges_``, which may have gaps).

        Returns
        -------
        activity : ndarray of shape (n_bins, n_features)
        """
        left, right, integrals = self._integrals(bin_edges)
        return integrals / (right - left)[:, None]

    def expected_counts(self, bin_edges):
        """Expected spike count of each unit in each bin.

        Parameters
        ----------
        bin_edges : array-like of shape (n_bins + 1,) or (n_bins, 2)
            Increasing bin edges (s), or the ``[left, right)`` edges of each
            bin (``SpikeBinner.bin_edges_``, which may have gaps).

        Returns
        -------
        counts : ndarray of shape (n_bins, n_units)
            The integral of each unit's rate over each bin.
        """
        left, right, integrals = self._integrals(bin_edges)
        inside = np.clip(right, 0.0, self.duration_s) - np.clip(left, 0.0, self.duration_s)
        return inside[:, None] * self.baseline_rates_hz + integrals @ self.feature_loadings


def _as_bin_bounds(bin_edges):
    """Left and right edges from 1-D increasing edges or (n_bins, 2) pairs."""
    edges = np.asarray(bin_edges, dtype=np.float64)
    if edges.ndim == 2 and edges.shape[1] == 2 and len(edges):
        left, right = edges[:, 0], edges[:, 1]
        if np.all(np.isfinite(edges)) and np.all(right > left):
            return left, right
        raise ValueError(
            "bin_edges of shape (n_bins, 2) must be finite with right > left in every row."
        )
    if edges.ndim == 1 and edges.size >= 2 and np.all(np.diff(edges) > 0):
        return edges[:-1], edges[1:]
    raise ValueError(
        "bin_edges must be a 1-D increasing array of at least 2 edges or an "
        f"(n_bins, 2) array of [left, right) edges; got shape {edges.shape}."
    )


def make_reaching_session(
    n_units=100,
    n_trials=200,
    *,
    n_directions=8,
    reach_distance_mm=80.0,
    sampling_rate_hz=1000.0,
    baseline_rate_range_hz=(2.0, 20.0),
    max_rate_hz=60.0,
    split_fractions=(0.7, 0.15, 0.15),
    random_state=None,
):
    """Simulate a delayed centre-out reaching session with known features.

    Spikes are Poisson, driven by a small hierarchy of non-negative latent
    features that are sparse in time and load sparsely on the units, so a
    sparse dictionary method has a known answer to find.

    **Task.** Trials follow one another; the hand starts each at the centre
    (0, 0) mm. ``start_time``; after a centre hold of U(0.3, 0.6) s the
    target appears (``target_on_time``) at ``reach_distance_mm`` in one of
    ``n_directions`` equally spaced directions (``direction_deg = 360 *
    target_id / n_directions``); after a delay of U(0.3, 0.9) s the go cue
    (``go_cue_time``); after a reaction time of U(0.25, 0.4) s the reach
    starts (``move_onset_time``) and lasts U(0.25, 0.5) s
    (``move_end_time``); the hand holds on the target for U(0.3, 0.5) s
    (``stop_time``). Between trials the hand returns to the centre in 0.5 s
    and rests U(0.2, 0.5) s. Targets come in shuffled blocks of every
    direction. Both reach and return follow a minimum-jerk path
    ``x(t) = x0 + (x1 - x0) s(tau)``, ``s = 10 tau^3 - 15 tau^4 + 6 tau^5``,
    ``tau = (t - onset) / duration``, whose speed is bell-shaped and peaks at
    ``1.875 * distance / duration``.

    **Features** (activity in ``[0, 1]``; ``ds = 30 tau^2 - 60 tau^3 +
    30 tau^4`` during a movement, 0 otherwise):

    - ``moving``: ``ds / 1.875``, the speed profile of every movement
      (reaches and returns) scaled to peak at 1. Root.
    - ``reach_<d>deg``, one per direction: equal to ``moving`` during the
      outward reaches towards that target, 0 at all other times. Children of
      ``moving``.
    - ``fast``: a speed gain, ``moving * clip((v_peak - v_mid) / (v_max -
      v_mid), 0, 1)`` during outward reaches (0 during returns), where
      ``v_peak`` is the reach's peak speed and ``v_mid`` and ``v_max`` are
      the peak speeds of reaches lasting 0.375 s and 0.25 s: it follows the
      speed profile of the faster half of reaches, more strongly the faster
      the reach. Child of ``moving``.
    - ``delay`` (preparatory): from 50 ms after target onset it rises as
      ``1 - exp(-t / 0.1 s)``, holds until move onset, then decays as
      ``exp(-t / 0.08 s)`` for 0.4 s. Root.
    - ``go``: a Gaussian bump, peak 1 at 100 ms after the go cue, standard
      deviation 30 ms, cut at 4 standard deviations. Root.

    **Units.** Each unit is in ``M1`` or ``PMd`` (probability 1/2,
    ``units["electrode_group"]``). Its baseline rate is log-uniform in
    ``baseline_rate_range_hz``. Each feature loads on a fixed fraction of the
    units, drawn without replacement: ``moving`` 30 %, each ``reach_*``
    10 %, ``fast`` 15 %, ``delay`` 25 %, ``go`` 15 % (at least one unit
    each), movement features twice as likely on M1 units, phase features
    twice as likely on PMd units. Loadings are uniform in (15, 35) Hz for
    ``moving``, (20, 40) for ``reach_*``, (10, 25) for ``fast``, (8, 20)
    for ``delay`` and (10, 25) for ``go``; where a unit's baseline plus all
    its loadings exceeds ``max_rate_hz`` its loadings are scaled down to
    reach it, so no rate ever exceeds ``max_rate_hz``. The rate is

        rate_u(t) = baseline_u + sum_f loading_{f,u} * activity_f(t),

    with activity held constant over each sampling step. Spikes are an
    inhomogeneous Poisson process of that rate, drawn exactly as the
    superposition of one process per term (homogeneous for the baseline;
    inverse-CDF sampling of the activity for each feature), so there is no
    refractory period.

    Parameters
    ----------
    n_units : int, default=100
        Number of units.
    n_trials : int, default=200
        Number of trials.
    n_directions : int, default=8
        Number of reach directions (targets, conditions).
    reach_distance_mm : float, default=80.0
        Distance from the centre to every target.
    sampling_rate_hz : float, default=1000.0
        Rate of the behaviour and of the feature time grid (MC_Maze samples
        at 1 kHz).
    baseline_rate_range_hz : tuple of float, default=(2.0, 20.0)
        Range of the baseline rates.
    max_rate_hz : float, default=60.0
        Upper bound on every unit's rate.
    split_fractions : tuple of float, default=(0.7, 0.15, 0.15)
        Fractions of trials labelled ``"train"``, ``"val"`` and ``"test"`` in
        the ``split`` column, assigned at random.
    random_state : int, RandomState instance or None, default=None
        Seed of every random draw; a fixed value gives identical output.

    Returns
    -------
    recording : Recording
        ``spike_times`` (s); ``units`` indexed by ``unit_id`` with an
        ``electrode_group`` column; ``trials`` indexed by ``trial_id`` with
        ``start_time``, ``stop_time``, ``target_on_time``, ``go_cue_time``,
        ``move_onset_time``, ``move_end_time``, ``target_id``,
        ``trial_type`` (equal to ``target_id``, the condition as in
        MC_Maze), ``direction_deg``, ``peak_speed_mm_s``, ``success`` (all
        True) and ``split``; ``behaviour`` with ``hand_pos`` (mm) and
        ``hand_vel`` (mm/s, the exact derivative), both of shape
        (n_samples, 2) on the grid ``arange(n_samples) / sampling_rate_hz``.
    ground_truth : ReachingGroundTruth
        The features, their hierarchy, loadings, baselines and time courses.

    See Also
    --------
    ReachingGroundTruth : What the ground truth holds.
    write_nwb : Save the session as an NWB file.

    Examples
    --------
    >>> from sklearn_nldisco.datasets._simulate import make_reaching_session
    >>> recording, truth = make_reaching_session(n_units=20, n_trials=16, random_state=0)
    >>> recording.n_units, len(recording.trials)
    (20, 16)
    >>> recording.trials["target_id"].value_counts().tolist()
    [2, 2, 2, 2, 2, 2, 2, 2]
    >>> truth.feature_loadings.shape
    (12, 20)
    >>> bool((truth.baseline_rates_hz + truth.feature_loadings.sum(0) <= 60.0 + 1e-9).all())
    True
    """
    _check_parameters(
        n_units,
        n_trials,
        n_directions,
        reach_distance_mm,
        sampling_rate_hz,
        baseline_rate_range_hz,
        max_rate_hz,
        split_fractions,
    )
    rng = check_random_state(random_state)
    time_step_s = 1.0 / sampling_rate_hz

    trials, movements, session_end_s = _simulate_task(
        n_trials, n_directions, reach_distance_mm, split_fractions, rng
    )
    n_samples = int(np.ceil(session_end_s * sampling_rate_hz))
    timestamps = np.arange(n_samples) * time_step_s
    hand_pos, hand_vel, moving, reach_target, peak_speed = _kinematics(timestamps, movements)

    feature_names, feature_parents, activity = _feature_activity(
        timestamps, trials, peak_speed, moving, reach_target, n_directions, reach_distance_mm
    )

    electrode_group = np.where(rng.random_sample(n_units) < 0.5, "M1", "PMd")
    baseline = np.exp(rng.uniform(*np.log(baseline_rate_range_hz), size=n_units))
    loadings = _loadings(feature_names, electrode_group == "M1", baseline, max_rate_hz, rng)
    spike_times = _poisson_spikes(baseline, loadings, activity, time_step_s, rng)

    recording = Recording(
        spike_times=spike_times,
        units=pd.DataFrame(
            {"electrode_group": electrode_group.tolist()},
            index=pd.Index(np.arange(n_units), name="unit_id"),
        ),
        trials=trials,
        behaviour={
            "hand_pos": BehaviourSeries(timestamps, hand_pos, unit="mm"),
            "hand_vel": BehaviourSeries(timestamps, hand_vel, unit="mm/s"),
        },
        session_id="simulated-reaching",
        description=(
            f"Simulated delayed centre-out reaching: {n_units} units, {n_trials} "
            f"trials, {n_directions} directions."
        ),
    )
    ground_truth = ReachingGroundTruth(
        feature_names=feature_names,
        feature_parents=feature_parents,
        feature_loadings=loadings,
        baseline_rates_hz=baseline,
        timestamps=timestamps,
        time_step_s=time_step_s,
        feature_activity=activity,
    )
    return recording, ground_truth


def _check_parameters(
    n_units,
    n_trials,
    n_directions,
    reach_distance_mm,
    sampling_rate_hz,
    baseline_rate_range_hz,
    max_rate_hz,
    split_fractions,
):
    for name, value in (
        ("n_units", n_units),
        ("n_trials", n_trials),
        ("n_directions", n_directions),
    ):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    for name, value in (
        ("reach_distance_mm", reach_distance_mm),
        ("sampling_rate_hz", sampling_rate_hz),
        ("max_rate_hz", max_rate_hz),
    ):
        if not isinstance(value, Real) or not value > 0:
            raise ValueError(f"{name} must be a positive number; got {value!r}.")
    low, high = baseline_rate_range_hz
    if not 0 < low <= high < max_rate_hz:
        raise ValueError(
            "baseline_rate_range_hz must be (low, high) with 0 < low <= high < "
            f"max_rate_hz={max_rate_hz}; got {baseline_rate_range_hz!r}."
        )
    fractions = np.asarray(split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1):
        raise ValueError(
            "split_fractions must be three non-negative fractions (train, val, "
            f"test) summing to 1; got {split_fractions!r}."
        )


def _simulate_task(n_trials, n_directions, reach_distance_mm, split_fractions, rng):
    """Trial events and the list of movements (reach, return, reach, ...)."""
    blocks = [rng.permutation(n_directions) for _ in range(-(-n_trials // n_directions))]
    target_id = np.concatenate(blocks)[:n_trials]
    direction_deg = 360.0 * target_id / n_directions
    angle = np.deg2rad(direction_deg)
    target_xy = reach_distance_mm * np.column_stack([np.cos(angle), np.sin(angle)])

    centre_hold = rng.uniform(*_CENTRE_HOLD_S, n_trials)
    delay = rng.uniform(*_DELAY_S, n_trials)
    reaction_time = rng.uniform(*_REACTION_TIME_S, n_trials)
    reach_duration = rng.uniform(*_REACH_DURATION_S, n_trials)
    target_hold = rng.uniform(*_TARGET_HOLD_S, n_trials)
    rest = rng.uniform(*_REST_S, n_trials)
    first_start = rng.uniform(*_FIRST_START_S)

    trial_length = centre_hold + delay + reaction_time + reach_duration + target_hold
    gap = _RETURN_DURATION_S + rest
    start = first_start + np.concatenate(([0.0], np.cumsum(trial_length + gap)[:-1]))
    target_on = start + centre_hold
    go_cue = target_on + delay
    move_onset = go_cue + reaction_time
    move_end = move_onset + reach_duration
    stop = move_end + target_hold
    session_end = stop[-1] + gap[-1]

    split = np.empty(n_trials, dtype=object)
    n_train, n_val = np.round(np.asarray(split_fractions[:2]) * n_trials).astype(int)
    n_train = min(n_train, n_trials)
    n_val = min(n_val, n_trials - n_train)
    order = rng.permutation(n_trials)
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    split[order[n_train + n_val :]] = "test"

    trials = pd.DataFrame(
        {
            "start_time": start,
            "stop_time": stop,
            "target_on_time": target_on,
            "go_cue_time": go_cue,
            "move_onset_time": move_onset,
            "move_end_time": move_end,
            "target_id": target_id.astype(np.int64),
            "trial_type": target_id.astype(np.int64),
            "direction_deg": direction_deg,
            "peak_speed_mm_s": _MIN_JERK_PEAK * reach_distance_mm / reach_duration,
            "success": np.ones(n_trials, dtype=bool),
            "split": split.tolist(),
        },
        index=pd.Index(np.arange(n_trials), name="trial_id"),
    )

    # movements alternate: reach of trial k, return of trial k, reach of k + 1 ...
    centre = np.zeros_like(target_xy)
    movements = {
        "onset": np.column_stack([move_onset, stop]).ravel(),
        "duration": np.column_stack(
            [reach_duration, np.full(n_trials, _RETURN_DURATION_S)]
        ).ravel(),
        "origin": np.stack([centre, target_xy], axis=1).reshape(-1, 2),
        "goal": np.stack([target_xy, centre], axis=1).reshape(-1, 2),
        "reach_target": np.column_stack([target_id, np.full(n_trials, -1)]).ravel(),
    }
    return trials, movements, session_end


def _kinematics(timestamps, movements):
    """Minimum-jerk hand position and velocity, and the normalised speed."""
    current = np.searchsorted(movements["onset"], timestamps, side="right") - 1
    started = current >= 0
    current = np.maximum(current, 0)
    duration = movements["duration"][current]
    tau = np.clip((timestamps - movements["onset"][current]) / duration, 0.0, 1.0)
    tau[~started] = 0.0
    in_motion = started & (tau < 1.0)

    position_fraction = tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)
    speed_fraction = np.where(in_motion, 30.0 * tau**2 * (1.0 - tau) ** 2, 0.0)
    displacement = movements["goal"][current] - movements["origin"][current]
    origin = np.where(started[:, None], movements["origin"][current], 0.0)
    hand_pos = origin + displacement * position_fraction[:, None]
    hand_vel = displacement * (speed_fraction / duration)[:, None]
    reach_target = np.where(in_motion, movements["reach_target"][current], -1)
    peak_speed = np.where(
        in_motion, _MIN_JERK_PEAK * np.hypot(*displacement.T) / duration, 0.0
    )
    return hand_pos, hand_vel, speed_fraction / _MIN_JERK_PEAK, reach_target, peak_speed


def _feature_activity(
    timestamps, trials, peak_speed, moving, reach_target, n_directions, reach_distance_mm
):
    """Names, parents and time courses (n_samples, n_features) of the features."""
    direction_names = [
        f"reach_{360.0 * k / n_directions:g}deg" for k in range(n_directions)
    ]
    names = ("moving", *direction_names, "fast", "delay", "go")
    parents = {"moving": None}
    parents.update({name: "moving" for name in direction_names})
    parents.update({"fast": "moving", "delay": None, "go": None})

    activity = np.zeros((len(timestamps), len(names)))
    activity[:, 0] = moving
    for k in range(n_directions):
        activity[:, 1 + k] = np.where(reach_target == k, moving, 0.0)

    fastest, median = _REACH_DURATION_S[0], np.mean(_REACH_DURATION_S)
    v_max = _MIN_JERK_PEAK * reach_distance_mm / fastest
    v_mid = _MIN_JERK_PEAK * reach_distance_mm / median
    gain = np.clip((peak_speed - v_mid) / (v_max - v_mid), 0.0, 1.0)
    activity[:, n_directions + 1] = np.where(reach_target >= 0, moving * gain, 0.0)

    trial = np.searchsorted(trials["start_time"].to_numpy(), timestamps, side="right") - 1
    in_session = trial >= 0
    trial = np.maximum(trial, 0)
    target_on = trials["target_on_time"].to_numpy()[trial]
    go_cue = trials["go_cue_time"].to_numpy()[trial]
    move_onset = trials["move_onset_time"].to_numpy()[trial]

    def rise(t):
        return 1.0 - np.exp(-np.maximum(t - target_on - _DELAY_LATENCY_S, 0.0) / _DELAY_RISE_S)

    since_onset = timestamps - move_onset
    delay = np.where(
        since_onset < 0,
        rise(timestamps),
        rise(move_onset) * np.exp(-np.maximum(since_onset, 0.0) / _DELAY_DECAY_S),
    )
    delay[since_onset >= _DELAY_DECAY_SPAN * _DELAY_DECAY_S] = 0.0
    activity[:, n_directions + 2] = np.where(in_session, delay, 0.0)

    from_peak = (timestamps - go_cue - _GO_LATENCY_S) / _GO_WIDTH_S
    go = np.where(np.abs(from_peak) < _GO_SPAN, np.exp(-0.5 * from_peak**2), 0.0)
    activity[:, n_directions + 3] = np.where(in_session, go, 0.0)
    return names, parents, activity


def _loadings(feature_names, is_m1, baseline, max_rate_hz, rng):
    """Sparse non-negative loadings (n_features, n_units), capped at max_rate_hz."""
    n_units = len(is_m1)
    loadings = np.zeros((len(feature_names), n_units))
    for f, name in enumerate(feature_names):
        fraction, (low, high), m1_preference = _LOADING_PLAN[name.split("_")[0]]
        weights = np.where(is_m1, m1_preference, 1.0)
        n_loaded = max(1, int(round(fraction * n_units)))
        chosen = rng.choice(n_units, size=n_loaded, replace=False, p=weights / weights.sum())
        loadings[f, chosen] = rng.uniform(low, high, n_loaded)
    total = loadings.sum(axis=0)
    room = max_rate_hz - baseline
    scale = np.where(total > room, room / np.where(total > 0, total, 1.0), 1.0)
    return loadings * scale


def _background_trains(baseline, duration, rng):
    """Homogeneous Poisson spikes of each unit at ``baseline`` Hz over ``[0, duration)``.

    Returns one list per unit holding its spike times (unsorted), to which
    the spikes of other processes are appended before :func:`_merged_trains`.
    """
    return [[rng.uniform(0.0, duration, count)] for count in rng.poisson(baseline * duration)]


def _merged_trains(trains):
    """Each unit's parts of :func:`_background_trains` as one sorted spike train."""
    return [np.sort(np.concatenate(parts)) for parts in trains]


def _poisson_spikes(baseline, loadings, activity, time_step_s, rng):
    """Spike times of the Poisson process of rate baseline + activity @ loadings."""
    n_samples, n_features = activity.shape
    n_units = len(baseline)
    duration = n_samples * time_step_s
    trains = _background_trains(baseline, duration, rng)
    for f in range(n_features):
        loaded = np.flatnonzero(loadings[f])
        if loaded.size == 0:
            continue
        cumulative = np.concatenate(([0.0], np.cumsum(activity[:, f] * time_step_s)))
        counts = rng.poisson(loadings[f, loaded] * cumulative[-1])
        # inverse CDF of the piecewise-constant activity
        target = rng.uniform(0.0, cumulative[-1], counts.sum())
        step = np.searchsorted(cumulative, target, side="right") - 1
        step = np.clip(step, 0, n_samples - 1)
        mass = cumulative[step + 1] - cumulative[step]
        offset = np.divide(
            target - cumulative[step], mass, out=np.zeros_like(target), where=mass > 0
        )
        times = (step + np.minimum(offset, 1.0)) * time_step_s
        for unit, unit_times in zip(loaded, np.split(times, np.cumsum(counts)[:-1])):
            trains[unit].append(unit_times)
    return _merged_trains(trains[:n_units])
