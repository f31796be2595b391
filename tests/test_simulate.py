"""The simulated reaching session and its ground truth."""

import numpy as np
import pandas as pd
import pytest

from sklearn_nldisco.datasets._simulate import ReachingGroundTruth, make_reaching_session

N_UNITS, N_TRIALS = 40, 48


@pytest.fixture(scope="module")
def session():
    return make_reaching_session(n_units=N_UNITS, n_trials=N_TRIALS, random_state=0)


def _in_windows(times, trials, start, stop, *, shift_s=0.0):
    """Whether each time lies in a window [trials[start], trials[stop]) (+ shift_s)."""
    starts = trials[start].to_numpy() + shift_s
    stops = trials[stop].to_numpy()
    index = np.searchsorted(starts, times, side="right") - 1
    return (index >= 0) & (times < stops[np.maximum(index, 0)])


def _rate_in_windows(spike_times, trials, start, stop):
    count = _in_windows(spike_times, trials, start, stop).sum()
    return count / np.sum(trials[stop].to_numpy() - trials[start].to_numpy())


def test_same_seed_gives_identical_sessions(session):
    recording, truth = session
    again, truth_again = make_reaching_session(n_units=N_UNITS, n_trials=N_TRIALS, random_state=0)
    assert all(np.array_equal(a, b) for a, b in zip(recording.spike_times, again.spike_times))
    pd.testing.assert_frame_equal(recording.trials, again.trials)
    pd.testing.assert_frame_equal(recording.units, again.units)
    for name, series in recording.behaviour.items():
        assert np.array_equal(series.data, again.behaviour[name].data)
    assert np.array_equal(truth.feature_loadings, truth_again.feature_loadings)
    assert np.array_equal(truth.feature_activity, truth_again.feature_activity)

    other, _ = make_reaching_session(n_units=N_UNITS, n_trials=N_TRIALS, random_state=1)
    assert not np.array_equal(other.spike_times[0], recording.spike_times[0])


def test_trials_follow_the_task(session):
    recording, _ = session
    trials = recording.trials
    assert trials.index.name == "trial_id" and len(trials) == N_TRIALS
    event_columns = [
        "start_time", "target_on_time", "go_cue_time", "move_onset_time", "move_end_time",
        "stop_time",
    ]
    events = trials[event_columns].to_numpy()
    assert np.all(np.diff(events, axis=1) > 0)
    # the next trial starts after the return movement and a rest
    assert np.all(trials["start_time"].to_numpy()[1:] - trials["stop_time"].to_numpy()[:-1] > 0.5)
    assert np.all((trials["go_cue_time"] - trials["target_on_time"]).between(0.3, 0.9))
    # targets come in shuffled blocks of all eight directions
    assert trials["target_id"].value_counts().tolist() == [N_TRIALS // 8] * 8
    assert np.array_equal(trials["direction_deg"], 45.0 * trials["target_id"])
    assert np.array_equal(trials["trial_type"], trials["target_id"])
    assert trials["split"].value_counts().to_dict() == {"train": 34, "val": 7, "test": 7}
    assert trials["success"].all()


def test_hand_moves_smoothly_to_the_target(session):
    recording, truth = session
    position, velocity = recording.behaviour["hand_pos"], recording.behaviour["hand_vel"]
    assert position.unit == "mm" and velocity.unit == "mm/s"
    assert np.array_equal(position.timestamps, truth.timestamps)
    assert np.allclose(np.diff(position.timestamps), 0.001)
    trials = recording.trials
    sample = lambda t: np.searchsorted(position.timestamps, t)  # noqa: E731
    at_onset = position.data[sample(trials["move_onset_time"].to_numpy())]
    at_end = position.data[sample(trials["move_end_time"].to_numpy()) + 1]
    angle = np.deg2rad(trials["direction_deg"].to_numpy())
    targets = 80.0 * np.column_stack([np.cos(angle), np.sin(angle)])
    assert np.allclose(at_onset, 0.0, atol=1e-3)
    assert np.allclose(at_end, targets)
    # velocity is the derivative of position
    assert np.allclose(np.gradient(position.data, 0.001, axis=0), velocity.data, atol=2.0)
    speed = np.hypot(*velocity.data.T)
    for row in trials.head(5).itertuples():
        during = slice(sample(row.move_onset_time), sample(row.move_end_time))
        assert speed[during].max() == pytest.approx(row.peak_speed_mm_s, rel=1e-3)


def test_features_form_the_documented_hierarchy(session):
    _, truth = session
    names = truth.feature_names
    assert names == (
        "moving", "reach_0deg", "reach_45deg", "reach_90deg", "reach_135deg",
        "reach_180deg", "reach_225deg", "reach_270deg", "reach_315deg", "fast", "delay", "go",
    )
    assert truth.feature_activity.shape == (len(truth.timestamps), len(names))
    assert truth.feature_activity.min() >= 0.0 and truth.feature_activity.max() <= 1.0
    assert np.all(truth.feature_activity.max(axis=0) > 0.9)
    moving = truth.feature_activity[:, truth.feature_index("moving")]
    for name, parent in truth.feature_parents.items():
        assert parent is None or truth.feature_parents[parent] is None
        if parent is not None:
            child = truth.feature_activity[:, truth.feature_index(name)]
            assert np.all(moving[child > 0] > 0), name
    assert truth.feature_parents["delay"] is None and truth.feature_parents["go"] is None
    with pytest.raises(ValueError, match="'jump'"):
        truth.feature_index("jump")


def test_direction_features_are_active_only_on_their_reaches(session):
    recording, truth = session
    trials = recording.trials
    for target in range(8):
        activity = truth.feature_activity[:, truth.feature_index(f"reach_{45 * target}deg")]
        mine = trials[trials["target_id"] == target]
        others = trials[trials["target_id"] != target]
        active = truth.timestamps[activity > 0]
        assert _in_windows(active, mine, "move_onset_time", "move_end_time").all()
        # active during every one of its reaches, never during the others
        for row in mine.itertuples():
            assert np.any((active >= row.move_onset_time) & (active < row.move_end_time))
        assert not _in_windows(active, others, "move_onset_time", "move_end_time").any()


def test_phase_features_follow_their_events(session):
    recording, truth = session
    trials = recording.trials
    delay = truth.feature_activity[:, truth.feature_index("delay")]
    go = truth.feature_activity[:, truth.feature_index("go")]
    t = truth.timestamps
    before_target = _in_windows(t, trials, "start_time", "target_on_time")
    assert np.all(delay[before_target] == 0) and np.all(go[before_target] == 0)
    peaks = t[np.flatnonzero((go[1:-1] >= go[:-2]) & (go[1:-1] > go[2:])) + 1]
    assert np.allclose(peaks, trials["go_cue_time"] + 0.1, atol=0.0015)
    in_delay = _in_windows(t, trials, "go_cue_time", "go_cue_time", shift_s=-0.05)
    assert np.all(delay[in_delay] > 0.8)


def test_loadings_are_sparse_and_rates_realistic(session):
    recording, truth = session
    loadings = truth.feature_loadings
    assert loadings.shape == (12, N_UNITS) and loadings.min() >= 0
    assert np.all((loadings > 0).sum(axis=1) >= 1)
    assert (loadings > 0).mean() < 0.2
    assert np.all((truth.baseline_rates_hz >= 2) & (truth.baseline_rates_hz <= 20))
    assert np.all(truth.baseline_rates_hz + loadings.sum(axis=0) <= 60.0 + 1e-9)
    assert set(recording.units["electrode_group"]) == {"M1", "PMd"}

    duration = truth.duration_s
    for times in recording.spike_times:
        assert times.dtype == np.float64 and np.all(np.diff(times) >= 0)
        assert times[0] >= 0 and times[-1] <= duration
    mean_rates = np.array([len(times) for times in recording.spike_times]) / duration
    assert np.all((mean_rates > 1.0) & (mean_rates < 40.0))


def test_spike_counts_match_the_expected_counts(session):
    recording, truth = session
    edges = np.linspace(0.0, truth.duration_s, 6)
    expected = truth.expected_counts(edges)
    observed = np.stack([np.histogram(times, edges)[0] for times in recording.spike_times], axis=1)
    z_scores = (observed - expected) / np.sqrt(expected)
    assert np.abs(z_scores).max() < 5
    assert np.abs(z_scores.mean()) < 0.5
    # bins on the sampling grid recover the activity itself
    grid = np.append(truth.timestamps, truth.duration_s)[:2001]
    assert np.allclose(truth.binned_activity(grid), truth.feature_activity[:2000])


def test_movement_units_fire_more_during_reaches_than_before_the_target(session):
    recording, truth = session
    trials = recording.trials
    moving_units = np.flatnonzero(truth.feature_loadings[truth.feature_index("moving")] > 15)
    assert moving_units.size >= 3
    for unit in moving_units:
        times = recording.spike_times[unit]
        reaching = _rate_in_windows(times, trials, "move_onset_time", "move_end_time")
        holding = _rate_in_windows(times, trials, "start_time", "target_on_time")
        assert reaching > holding + 5.0, unit


def test_direction_units_prefer_their_direction(session):
    recording, truth = session
    trials = recording.trials
    feature = truth.feature_index("reach_90deg")
    unit = int(np.argmax(truth.feature_loadings[feature]))
    times = recording.spike_times[unit]
    rates = {}
    for target, group in trials.groupby("target_id"):
        rates[target] = _rate_in_windows(times, group, "move_onset_time", "move_end_time")
    assert max(rates, key=rates.get) == 2


@pytest.mark.parametrize(
    "argument, value, match",
    [
        ("n_units", 0, "n_units must be a positive integer"),
        ("n_trials", 2.5, "n_trials must be a positive integer"),
        ("sampling_rate_hz", -1.0, "sampling_rate_hz must be a positive number"),
        ("baseline_rate_range_hz", (5.0, 80.0), "baseline_rate_range_hz"),
        ("split_fractions", (0.5, 0.2), "split_fractions"),
    ],
)
def test_invalid_parameters_are_named(argument, value, match):
    with pytest.raises(ValueError, match=match):
        make_reaching_session(**{"n_units": 3, "n_trials": 4, argument: value})


def test_small_and_coarse_sessions_work():
    recording, truth = make_reaching_session(
        n_units=1, n_trials=3, n_directions=4, sampling_rate_hz=100.0, random_state=5
    )
    assert isinstance(truth, ReachingGroundTruth)
    assert truth.feature_names[1:5] == ("reach_0deg", "reach_90deg", "reach_180deg", "reach_270deg")
    assert np.all((truth.feature_loadings > 0).sum(axis=1) == 1)
    assert recording.behaviour["hand_pos"].data.shape == (len(truth.timestamps), 2)
    assert truth.time_step_s == 0.01


def test_ground_truth_on_a_binner_grid_with_gaps(session):
    """(n_bins, 2) edges with gaps (a SpikeBinner's grid) give the same bins as 1-D edges."""
    from sklearn_nldisco.preprocessing import SpikeBinner

    recording, truth = session
    binner = SpikeBinner(bin_size=0.05, intervals=recording.trials.iloc[:5])
    counts = binner.fit_transform(recording)
    pairs = binner.bin_edges_
    assert np.any(pairs[1:, 0] > pairs[:-1, 1])  # there are gaps between trials
    activity = truth.binned_activity(pairs)
    expected = truth.expected_counts(pairs)
    assert activity.shape == (len(pairs), truth.n_features)
    first = pairs[binner.interval_ids_ == 0]
    one_d = np.append(first[:, 0], first[-1, 1])
    np.testing.assert_allclose(activity[: len(first)], truth.binned_activity(one_d))
    np.testing.assert_allclose(expected[: len(first)], truth.expected_counts(one_d))
    # the expected counts explain the binned counts
    assert abs(counts.sum() - expected.sum()) < 5 * np.sqrt(expected.sum())
    with pytest.raises(ValueError, match="right > left"):
        truth.binned_activity(pairs[:, ::-1])
