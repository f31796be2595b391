"""Behaviour and trial metadata on the bins (preprocessing/_behaviour.py)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.io
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_nldisco.datasets import MC_MAZE_EVENTS
from sklearn_nldisco.datasets._recording import BehaviourSeries, Recording
from sklearn_nldisco.preprocessing._behaviour import (
    bin_metadata,
    kinematics,
    resample_to_bins,
    trial_labels,
)

M1_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "m1_stevenson_2011.mat"
)


def contiguous_edges(start, width, n_bins):
    """Touching bins ``[start + i * width, start + (i + 1) * width)``."""
    return np.column_stack(
        [start + np.arange(n_bins) * width, start + np.arange(1, n_bins + 1) * width]
    )


def naive_bin_means(timestamps, values, edges):
    """Mean of the finite samples in each [left, right), one bin at a time."""
    out = np.full((len(edges), values.shape[1]), np.nan)
    for i, (left, right) in enumerate(edges):
        in_bin = (timestamps >= left) & (timestamps < right)
        for channel in range(values.shape[1]):
            samples = values[in_bin, channel]
            samples = samples[np.isfinite(samples)]
            if len(samples):
                out[i, channel] = samples.mean()
    return out


# --------------------------------------------------------------------------
# resample_to_bins


def test_resample_averages_the_samples_in_each_bin():
    # 8 samples per 1 s bin at dyadic times, so every boundary is exact
    timestamps = np.arange(64) / 8
    values = np.column_stack([np.arange(64.0), np.arange(64.0) ** 2])
    edges = contiguous_edges(0.0, 1.0, 8)
    binned = resample_to_bins(timestamps, values, edges)
    expected = values.reshape(8, 8, 2).mean(axis=1)
    np.testing.assert_allclose(binned, expected, rtol=1e-12)


def test_resample_is_a_mean_not_the_nearest_sample():
    timestamps = np.array([0.0, 0.1, 0.2])
    values = np.array([0.0, 0.0, 9.0])
    binned = resample_to_bins(timestamps, values, [[0.0, 0.3]])
    np.testing.assert_allclose(binned, [3.0])


def test_resample_bins_are_half_open():
    timestamps = np.array([0.0, 0.5, 1.0, 1.5])
    values = np.array([1.0, 2.0, 100.0, 200.0])
    binned = resample_to_bins(timestamps, values, [[0.0, 1.0], [1.0, 2.0]])
    # the sample at exactly 1.0 belongs to the second bin only
    np.testing.assert_allclose(binned, [1.5, 150.0])


def test_resample_empty_bins_and_gaps():
    timestamps = np.array([0.1, 0.2, 1.5, 3.1])
    values = np.array([1.0, 3.0, 1000.0, 5.0])
    # the sample at 1.5 lies between bins and is not used
    edges = [[0.0, 1.0], [2.0, 3.0], [3.0, 4.0]]
    binned = resample_to_bins(timestamps, values, edges)
    np.testing.assert_allclose(binned, [2.0, np.nan, 5.0])


def test_resample_ignores_nan_samples_per_channel():
    timestamps = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25])
    values = np.array(
        [[1.0, 1.0], [np.nan, 3.0], [5.0, np.inf], [np.nan, np.nan], [2.0, 4.0], [np.nan, 8.0]]
    )
    binned = resample_to_bins(timestamps, values, [[0.0, 1.0], [0.5, 0.75], [1.0, 1.5]])
    np.testing.assert_allclose(binned, [[3.0, 2.0], [5.0, np.nan], [2.0, 6.0]])


def test_resample_keeps_precision_with_a_large_offset():
    # a running sum of raw values would reach 2e14, where one rounding step
    # is 0.03; the bin means must still be right to well below that
    timestamps = np.arange(200_704) / 1024
    values = 1e9 + np.sin(timestamps)
    edges = contiguous_edges(0.0, 1 / 16, 3136)
    binned = resample_to_bins(timestamps, values, edges)
    expected = (values - 1e9).reshape(3136, 64).mean(axis=1)
    np.testing.assert_allclose(binned - 1e9, expected, rtol=0, atol=1e-6)


def test_resample_one_channel_gives_one_dimension_and_accepts_a_binner():
    binner = SimpleNamespace(
        bin_edges_=contiguous_edges(0.0, 1.0, 2), interval_ids_=np.array([0, 0])
    )
    binned = resample_to_bins([0.0, 0.5, 1.5], [2.0, 4.0, 7.0], binner)
    assert binned.shape == (2,)
    np.testing.assert_allclose(binned, [3.0, 7.0])


@settings(max_examples=60, deadline=None)
@given(
    sample_times=st.lists(st.integers(0, 400), min_size=0, max_size=60),
    bin_starts=st.lists(st.integers(0, 400), min_size=1, max_size=20),
    width=st.integers(1, 50),
    nan_every=st.integers(2, 7),
)
def test_resample_matches_a_bin_by_bin_mean(sample_times, bin_starts, width, nan_every):
    timestamps = np.sort(np.array(sample_times, dtype=float)) / 16
    values = np.column_stack([np.cos(timestamps), timestamps])
    values[::nan_every, 0] = np.nan
    left = np.sort(np.array(bin_starts, dtype=float)) / 16
    edges = np.column_stack([left, left + width / 16])
    np.testing.assert_allclose(
        resample_to_bins(timestamps, values, edges),
        naive_bin_means(timestamps, values, edges),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "timestamps, values, edges, match",
    [
        ([0.0, 2.0, 1.0], [1.0, 2.0, 3.0], [[0.0, 3.0]], "timestamps must be sorted"),
        ([0.0, np.nan], [1.0, 2.0], [[0.0, 3.0]], "timestamps must be finite"),
        ([[0.0, 1.0]], [1.0, 2.0], [[0.0, 3.0]], "timestamps must be 1-D"),
        ([0.0, 1.0], [1.0, 2.0, 3.0], [[0.0, 3.0]], r"values must have one row per timestamp"),
        ([0.0, 1.0], [1.0, 2.0], [0.0, 1.0, 2.0], r"bins must have shape \(n_bins, 2\)"),
        ([0.0, 1.0], [1.0, 2.0], [[0.0, 1.0, 2.0]], r"bins must have shape \(n_bins, 2\)"),
        ([0.0, 1.0], [1.0, 2.0], [[1.0, 1.0]], "right > left"),
        ([0.0, 1.0], [1.0, 2.0], [[1.0, 2.0], [0.0, 1.0]], "bins must be sorted"),
        ([0.0, 1.0], [1.0, 2.0], [[0.0, np.nan]], "bins must hold finite edges"),
    ],
)
def test_resample_rejects_bad_input(timestamps, values, edges, match):
    with pytest.raises(ValueError, match=match):
        resample_to_bins(timestamps, values, edges)


# --------------------------------------------------------------------------
# kinematics


def test_straight_line_has_constant_speed_and_direction():
    edges = contiguous_edges(0.0, 0.05, 40)
    centres = edges.mean(axis=1)
    position = np.column_stack([2.0 - 3.0 * centres, 1.0 - 4.0 * centres])
    result = kinematics(edges, position=position, smooth_sigma_bins=1.5)
    # linear motion: every difference, one-sided ones included, is exact
    np.testing.assert_allclose(result["speed"], 5.0, rtol=1e-9)
    expected_direction = np.degrees(np.arctan2(-4.0, -3.0))
    np.testing.assert_allclose(result["direction_deg"], expected_direction, rtol=1e-9)
    np.testing.assert_allclose(result[["acc_x", "acc_y", "acceleration"]], 0.0, atol=1e-8)
    assert list(result.columns) == [
        "vel_x", "vel_y", "speed", "direction_deg", "acc_x", "acc_y", "acceleration"
    ]
    assert result.index.equals(pd.RangeIndex(40))


def test_circular_motion_has_known_speed_direction_and_acceleration():
    radius, angular_speed = 2.0, 2 * np.pi  # one turn per second
    edges = contiguous_edges(0.0, 0.01, 200)
    centres = edges.mean(axis=1)
    phase = angular_speed * centres
    velocity = radius * angular_speed * np.column_stack([-np.sin(phase), np.cos(phase)])
    result = kinematics(edges, velocity=velocity, smooth_sigma_bins=0)
    np.testing.assert_allclose(result["speed"], radius * angular_speed, rtol=1e-12)
    expected_direction = (np.degrees(phase) + 90 + 180) % 360 - 180
    np.testing.assert_allclose(result["direction_deg"], expected_direction, atol=1e-9)
    # uniform circular motion: the speed does not change, the velocity turns
    interior = slice(1, -1)
    np.testing.assert_allclose(result["acceleration"][interior], 0.0, atol=1e-9)
    centripetal = np.hypot(result["acc_x"], result["acc_y"])[interior]
    np.testing.assert_allclose(centripetal, radius * angular_speed**2, rtol=1e-3)


def test_circular_motion_from_position_matches_the_velocity():
    radius, angular_speed = 1.0, 2 * np.pi
    edges = contiguous_edges(0.0, 0.005, 200)
    phase = angular_speed * edges.mean(axis=1)
    position = radius * np.column_stack([np.cos(phase), np.sin(phase)])
    result = kinematics(edges, position=position, smooth_sigma_bins=1.0)
    interior = slice(5, -5)
    np.testing.assert_allclose(result["speed"][interior], radius * angular_speed, rtol=2e-3)
    expected_direction = (np.degrees(phase) + 90 + 180) % 360 - 180
    difference = (result["direction_deg"] - expected_direction + 180) % 360 - 180
    np.testing.assert_allclose(difference[interior], 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "velocity, expected",
    [
        ((1.0, 0.0), 0.0),
        ((0.0, 1.0), 90.0),
        ((0.0, -1.0), -90.0),
        ((-1.0, 0.0), -180.0),
        ((-1.0, -0.0), -180.0),
        ((-1.0, -1e-12), -180.0 + np.degrees(1e-12)),
        ((1.0, 1.0), 45.0),
        ((0.0, 0.0), np.nan),
    ],
)
def test_direction_is_in_minus_180_to_180(velocity, expected):
    edges = contiguous_edges(0.0, 1.0, 3)
    result = kinematics(edges, velocity=np.tile(velocity, (3, 1)), smooth_sigma_bins=0)
    np.testing.assert_allclose(result["direction_deg"], expected, atol=1e-12)
    assert not (result["direction_deg"] >= 180).any()


def test_acceleration_is_signed_rate_of_change_of_speed():
    edges = contiguous_edges(0.0, 0.5, 10)
    centres = edges.mean(axis=1)
    speeding_up = kinematics(edges, velocity=np.column_stack([0 * centres, 1 + 2 * centres]),
                             smooth_sigma_bins=0)
    slowing_down = kinematics(edges, velocity=np.column_stack([0 * centres, 30 - 2 * centres]),
                              smooth_sigma_bins=0)
    np.testing.assert_allclose(speeding_up["acceleration"], 2.0)
    np.testing.assert_allclose(slowing_down["acceleration"], -2.0)
    np.testing.assert_allclose(slowing_down["acc_y"], -2.0)
    np.testing.assert_allclose(slowing_down["acc_x"], 0.0)


def two_trials_with_a_step():
    """Two 10-bin intervals with a gap; at rest in the first, moving in the second."""
    edges = np.concatenate([contiguous_edges(0.0, 0.1, 10), contiguous_edges(5.0, 0.1, 10)])
    velocity = np.zeros((20, 2))
    velocity[10:, 0] = 10.0
    return edges, velocity


def test_smoothing_does_not_cross_a_trial_gap():
    edges, velocity = two_trials_with_a_step()
    result = kinematics(edges, velocity=velocity, interval_ids=np.repeat([0, 1], 10),
                        smooth_sigma_bins=3.0)
    np.testing.assert_array_equal(result["speed"][:10], 0.0)
    np.testing.assert_allclose(result["speed"][10:], 10.0, rtol=1e-12)
    np.testing.assert_allclose(result["acceleration"], 0.0, atol=1e-9)


def test_a_gap_in_time_splits_intervals_without_interval_ids():
    edges, velocity = two_trials_with_a_step()
    result = kinematics(edges, velocity=velocity, smooth_sigma_bins=3.0)
    np.testing.assert_array_equal(result["speed"][:10], 0.0)


def test_touching_bins_of_two_intervals_are_not_smoothed_together():
    edges = contiguous_edges(0.0, 0.1, 20)
    _, velocity = two_trials_with_a_step()
    separate = kinematics(edges, velocity=velocity, interval_ids=np.repeat([3, 4], 10),
                          smooth_sigma_bins=3.0)
    np.testing.assert_array_equal(separate["speed"][:10], 0.0)
    # the same bins as one interval do mix, which is what the ids prevent
    together = kinematics(edges, velocity=velocity, smooth_sigma_bins=3.0)
    assert together["speed"][9] > 1.0


def test_derivative_from_position_stays_within_an_interval():
    edges = np.concatenate([contiguous_edges(0.0, 0.1, 5), contiguous_edges(0.5, 0.1, 5)])
    position = np.zeros((10, 2))
    position[5:, 0] = 100.0  # a jump exactly at the interval boundary
    result = kinematics(edges, position=position, interval_ids=np.repeat([0, 1], 5),
                        smooth_sigma_bins=0)
    np.testing.assert_array_equal(result["speed"], 0.0)


def test_missing_bins_stay_missing_and_do_not_spread():
    edges = contiguous_edges(0.0, 0.1, 12)
    velocity = np.tile([3.0, 4.0], (12, 1))
    velocity[5] = np.nan
    result = kinematics(edges, velocity=velocity, smooth_sigma_bins=2.0)
    assert np.isnan(result["speed"][5])
    finite = np.delete(np.arange(12), 5)
    np.testing.assert_allclose(result["speed"][finite], 5.0, rtol=1e-12)


def test_a_single_bin_interval_has_no_derivative():
    edges = np.array([[0.0, 0.1], [1.0, 1.1], [1.1, 1.2]])
    position = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    result = kinematics(edges, position=position, smooth_sigma_bins=0)
    assert np.isnan(result["speed"][0])
    np.testing.assert_allclose(result["speed"][1:], 10.0)


def test_kinematics_accepts_a_fitted_binner():
    binner = SimpleNamespace(bin_edges_=contiguous_edges(0.0, 0.1, 20),
                             interval_ids_=np.repeat([0, 1], 10))
    _, velocity = two_trials_with_a_step()
    result = kinematics(binner, velocity=velocity, smooth_sigma_bins=3.0)
    np.testing.assert_array_equal(result["speed"][:10], 0.0)


@pytest.mark.parametrize(
    "arguments, match",
    [
        (dict(), "needs position or velocity"),
        (dict(velocity=np.zeros((3, 2))), r"velocity must have one row per bin"),
        (dict(position=np.zeros((5, 2, 1))), r"position must have one row per bin"),
        (dict(velocity=np.zeros((4, 2)), smooth_sigma_bins=-1), "smooth_sigma_bins"),
        (dict(velocity=np.zeros((4, 2)), smooth_sigma_bins="1"), "smooth_sigma_bins"),
        (dict(velocity=np.zeros((4, 2)), interval_ids=[0, 0, 1]), r"interval_ids must have shape"),
        (dict(velocity=np.zeros((4, 2)), interval_ids=[0, 1, 0, 0]), "contiguous"),
        (dict(velocity=np.zeros((4, 2)), interval_ids=[0.0, 0.0, 1.0, 1.0]), "integers"),
    ],
)
def test_kinematics_rejects_bad_input(arguments, match):
    with pytest.raises(ValueError, match=match):
        kinematics(contiguous_edges(0.0, 0.1, 4), **arguments)


def test_interval_ids_cannot_be_given_twice():
    binner = SimpleNamespace(bin_edges_=contiguous_edges(0.0, 0.1, 4),
                             interval_ids_=np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="interval_ids is taken from bins"):
        kinematics(binner, velocity=np.zeros((4, 2)), interval_ids=np.zeros(4, dtype=int))


# --------------------------------------------------------------------------
# trial_labels


def one_trial(**event_times):
    return pd.DataFrame(
        {"start_time": [0.0], "stop_time": [4.0], **{k: [v] for k, v in event_times.items()}},
        index=pd.Index([7]),
    )


EVENTS = [
    ("start_time", "before_target"),
    ("target_on_time", "delay"),
    ("go_cue_time", "reaction"),
    ("move_onset_time", "movement"),
]


def test_phase_boundaries_follow_the_bin_centre_rule():
    edges = contiguous_edges(0.0, 0.25, 16)  # centres at 0.125 + 0.25 i
    trials = one_trial(
        target_on_time=1.0,  # exactly on the left edge of bin 4
        go_cue_time=1.6,  # first half of bin 6 [1.5, 1.75), centre 1.625
        move_onset_time=2.2,  # second half of bin 8 [2.0, 2.25), centre 2.125
    )
    phase = trial_labels(edges, trials, events=EVENTS)["phase"].tolist()
    assert phase == (
        ["before_target"] * 4 + ["delay"] * 2 + ["reaction"] * 3 + ["movement"] * 7
    )


@pytest.mark.parametrize(
    "event_time, first_bin_of_phase",
    [
        (1.0, 4),  # on the left edge of bin 4
        (1.125, 4),  # exactly on bin 4's centre
        (1.125 + 1e-9, 5),  # just past the centre
        (1.25, 5),  # on bin 4's right edge, which is bin 5's left edge
        (1.25 - 1e-9, 5),
    ],
)
def test_phase_boundary_at_edges_and_centres(event_time, first_bin_of_phase):
    edges = contiguous_edges(0.0, 0.25, 16)
    trials = one_trial(go_cue_time=event_time)
    phase = trial_labels(edges, trials, events=[("start_time", "wait"), ("go_cue_time", "go")])
    phase = phase["phase"].tolist()
    assert phase.index("go") == first_bin_of_phase
    assert set(phase[:first_bin_of_phase]) == {"wait"}
    assert set(phase[first_bin_of_phase:]) == {"go"}


def test_event_column_marks_the_bin_holding_the_event():
    edges = contiguous_edges(0.0, 0.25, 16)
    trials = one_trial(target_on_time=1.0, go_cue_time=1.24, move_onset_time=2.25)
    event = trial_labels(edges, trials, events=EVENTS)["event"]
    marked = event.dropna()
    assert marked.to_dict() == {0: "start", 4: "go_cue", 9: "move_onset"}
    # target_on (1.0) and go_cue (1.24) share bin 4; the later one is shown
    assert list(event.cat.categories) == ["start", "target_on", "go_cue", "move_onset"]


def test_no_shift_of_phase_boundaries_across_many_trials():
    # 100 trials of 40 bins of 50 ms each, 10 s apart; the event offsets vary
    # per trial, so a label shifted by the trial's position would show.
    n_trials, bins_per_trial, width = 100, 40, 0.05
    starts = np.arange(n_trials) * 10.0
    edges = np.concatenate([contiguous_edges(s, width, bins_per_trial) for s in starts])
    interval_ids = np.repeat(np.arange(n_trials), bins_per_trial)
    go_cue_bin = 10 + np.arange(n_trials) % 7  # the go cue is on this bin's left edge
    onset_bin = 20 + np.arange(n_trials) % 5  # the onset is inside this bin, early
    trials = pd.DataFrame(
        {
            "start_time": starts,
            "stop_time": starts + bins_per_trial * width,
            "target_on_time": starts + 0.2,
            "go_cue_time": starts + go_cue_bin * width,
            "move_onset_time": starts + onset_bin * width + 0.01,
            "maze_id": np.arange(n_trials) * 3,
        },
        index=pd.Index(np.arange(n_trials) + 1000),
    )
    binner = SimpleNamespace(bin_edges_=edges, interval_ids_=interval_ids)
    labels = trial_labels(binner, trials, events=EVENTS)

    trial_50 = labels.iloc[50 * bins_per_trial:51 * bins_per_trial]
    expected = (
        ["before_target"] * 4
        + ["delay"] * (go_cue_bin[50] - 4)
        + ["reaction"] * (onset_bin[50] - go_cue_bin[50])
        + ["movement"] * (bins_per_trial - onset_bin[50])
    )
    assert trial_50["phase"].tolist() == expected
    assert (trial_50["trial_id"] == 1050).all()
    assert (trial_50["maze_id"] == 150).all()
    assert trial_50["event"].tolist()[onset_bin[50]] == "move_onset"

    phase = labels["phase"].to_numpy().reshape(n_trials, bins_per_trial)
    first_reaction = (phase == "reaction").argmax(axis=1)
    first_movement = (phase == "movement").argmax(axis=1)
    np.testing.assert_array_equal(first_reaction, go_cue_bin)
    np.testing.assert_array_equal(first_movement, onset_bin)
    np.testing.assert_array_equal(
        labels["trial_id"].to_numpy().reshape(n_trials, bins_per_trial)[:, 0],
        trials.index.to_numpy(),
    )


def test_trial_rows_need_not_be_sorted():
    edges = contiguous_edges(0.0, 0.5, 12)
    trials = pd.DataFrame(
        {"start_time": [0.0, 2.0, 4.0], "stop_time": [2.0, 4.0, 6.0],
         "go_cue_time": [1.0, 3.0, 5.5]},
        index=[10, 11, 12],
    )
    events = [("start_time", "wait"), ("go_cue_time", "go")]
    in_order = trial_labels(edges, trials, events=events)
    shuffled = trial_labels(edges, trials.iloc[[2, 0, 1]], events=events)
    pd.testing.assert_frame_equal(in_order, shuffled)
    assert in_order["trial_id"].tolist() == [10] * 4 + [11] * 4 + [12] * 4


def test_nan_event_keeps_the_previous_phase():
    edges = contiguous_edges(0.0, 0.25, 16)
    trials = one_trial(target_on_time=0.5, go_cue_time=1.0, move_onset_time=np.nan)
    labels = trial_labels(edges, trials, movement_duration_s=0.5)
    assert labels["phase"].tolist() == (
        ["before_target"] * 2 + ["delay"] * 2 + ["reaction"] * 12
    )
    assert list(labels["phase"].cat.categories) == [p for _, p in MC_MAZE_EVENTS]


def test_movement_end_from_a_duration_or_a_column():
    edges = contiguous_edges(0.0, 0.25, 16)
    trials = one_trial(target_on_time=0.5, go_cue_time=1.0, move_onset_time=1.5)
    by_duration = trial_labels(edges, trials, movement_duration_s=1.0)["phase"]
    assert by_duration.tolist()[6:] == ["movement"] * 4 + ["after_movement"] * 6
    by_column = trial_labels(edges, trials.assign(move_end_time=2.5))["phase"]
    assert by_column.tolist() == by_duration.tolist()
    # without either, MC_Maze's default events have no end of movement
    no_end = trial_labels(edges, trials)["phase"]
    assert no_end.tolist()[6:] == ["movement"] * 10
    assert "after_movement" not in no_end.cat.categories


def test_simultaneous_events_skip_the_empty_phase():
    edges = contiguous_edges(0.0, 0.25, 8)
    trials = one_trial(target_on_time=0.0, go_cue_time=1.0, move_onset_time=1.5)
    phase = trial_labels(edges, trials, events=EVENTS)["phase"].tolist()
    assert phase == ["delay"] * 4 + ["reaction"] * 2 + ["movement"] * 2


def test_bins_outside_trials_are_unlabelled():
    edges = contiguous_edges(0.0, 0.5, 10)
    trials = pd.DataFrame(
        {"start_time": [1.0], "stop_time": [2.5], "maze_id": [4], "split": ["train"]}
    )
    labels = trial_labels(edges, trials, events=[("start_time", "trial")])
    assert labels["trial_id"].tolist() == [-1, -1, 0, 0, 0, -1, -1, -1, -1, -1]
    assert labels["phase"].isna().tolist() == [True, True, False, False, False] + [True] * 5
    assert labels["maze_id"].isna().sum() == 7
    assert labels["split"].tolist()[2:5] == ["train"] * 3
    assert labels["event"].tolist()[2] == "start"


def test_conditions_default_to_the_mc_maze_columns_present():
    edges = contiguous_edges(0.0, 0.5, 4)
    trials = pd.DataFrame(
        {"start_time": [0.0], "stop_time": [2.0], "maze_id": [3], "trial_type": [12],
         "success": [True], "rt": [0.3]}
    )
    labels = trial_labels(edges, trials, events=[("start_time", "trial")])
    assert list(labels.columns) == ["trial_id", "trial_type", "maze_id", "success", "phase",
                                    "event"]
    assert labels["success"].tolist() == [True] * 4
    chosen = trial_labels(edges, trials, events=[("start_time", "trial")], conditions=["rt"])
    assert list(chosen.columns) == ["trial_id", "rt", "phase", "event"]


def test_trial_id_from_a_column():
    edges = contiguous_edges(0.0, 0.5, 4)
    trials = pd.DataFrame({"start_time": [0.0], "stop_time": [1.0], "number": [55]})
    labels = trial_labels(edges, trials, events=[("start_time", "trial")],
                          trial_id_column="number")
    assert labels["trial_id"].tolist() == [55, 55, -1, -1]


@pytest.mark.parametrize(
    "trials, arguments, error, match",
    [
        ([[0.0, 1.0]], {}, TypeError, "trials must be a pandas DataFrame"),
        (pd.DataFrame({"stop_time": [1.0]}), {}, ValueError, r"missing \['start_time'\]"),
        (pd.DataFrame({"start_time": [1.0], "stop_time": [0.0]}), {}, ValueError,
         "stop_time >= start_time"),
        (pd.DataFrame({"start_time": [np.nan], "stop_time": [0.0]}), {}, ValueError,
         "must be finite"),
        (pd.DataFrame({"start_time": [0.0], "stop_time": [1.0]}), {}, ValueError,
         "events names trial columns that trials lacks: .*target_on_time"),
        (pd.DataFrame({"start_time": [0.0], "stop_time": [1.0]}),
         dict(events=[("start_time", "a"), ("move_end_time", "b")]), ValueError,
         "move_end_time"),
        (pd.DataFrame({"start_time": [0.0], "stop_time": [1.0]}),
         dict(events=["start_time"]), ValueError, r"\(column, phase\) pairs"),
        (pd.DataFrame({"start_time": [0.0], "stop_time": [1.0], "cue": ["soon"]}),
         dict(events=[("cue", "a")]), ValueError, "column 'cue' must hold times"),
        (pd.DataFrame({"start_time": [0.0], "stop_time": [1.0]}),
         dict(events=[("start_time", "a")], conditions=["maze_id"]), ValueError,
         "conditions names .*maze_id"),
        (pd.DataFrame({"start_time": [0.0], "stop_time": [1.0]}),
         dict(events=[("start_time", "a")], trial_id_column="id"), ValueError,
         "trial_id_column 'id'"),
        (pd.DataFrame({"start_time": [0.0], "stop_time": [1.0]}),
         dict(events=[("start_time", "a")], movement_duration_s=0.5), ValueError,
         "movement_duration_s needs a 'move_onset_time'"),
    ],
)
def test_trial_labels_rejects_bad_input(trials, arguments, error, match):
    with pytest.raises(error, match=match):
        trial_labels(contiguous_edges(0.0, 0.5, 4), trials, **arguments)


@settings(max_examples=40, deadline=None)
@given(
    event_sixteenths=st.lists(
        st.one_of(st.integers(0, 64), st.just(-1)), min_size=3, max_size=3
    ),
    width_sixteenths=st.integers(1, 9),
)
def test_phase_matches_a_bin_by_bin_rule(event_sixteenths, width_sixteenths):
    edges = contiguous_edges(0.0, width_sixteenths / 16, 70 // width_sixteenths)
    times = [np.nan if e < 0 else e / 16 for e in event_sixteenths]
    trials = pd.DataFrame(
        {"start_time": [0.0], "stop_time": [100.0], "a_time": [times[0]],
         "b_time": [times[1]], "c_time": [times[2]]}
    )
    events = [("start_time", "s"), ("a_time", "a"), ("b_time", "b"), ("c_time", "c")]
    phase = trial_labels(edges, trials, events=events)["phase"].tolist()
    for i, (left, right) in enumerate(edges):
        centre = (left + right) / 2
        candidates = [(0.0, 0, "s")] + [
            (t, k + 1, name) for k, (t, name) in enumerate(zip(times, "abc")) if t <= centre
        ]
        assert phase[i] == max(candidates)[2]


# --------------------------------------------------------------------------
# bin_metadata


@pytest.fixture
def small_session():
    """Two trials of 10 bins of 125 ms with a gap, and hand signals at 1024 Hz.

    Dyadic times keep every sample exactly inside or outside each bin.
    """
    timestamps = np.arange(4096) / 1024
    hand_pos = np.column_stack([20.0 * timestamps, -5.0 + 0.0 * timestamps])
    hand_vel = np.column_stack([20.0 + 0.0 * timestamps, 0.0 * timestamps])
    trials = pd.DataFrame(
        {
            "start_time": [0.5, 2.5],
            "stop_time": [1.75, 3.75],
            "target_on_time": [0.7, 2.7],
            "go_cue_time": [1.0, 3.0],
            "move_onset_time": [1.2, np.nan],
            "maze_id": [4, 9],
            "success": [True, False],
            "split": ["train", "val"],
        },
        index=pd.Index([31, 32], name="trial_id"),
    )
    recording = Recording(
        spike_times=[np.array([0.6, 2.8])],
        units=pd.DataFrame(index=[0]),
        trials=trials,
        behaviour={
            "hand_pos": BehaviourSeries(timestamps, hand_pos, unit="mm"),
            "hand_vel": BehaviourSeries(timestamps, hand_vel, unit="mm/s"),
            "eye_pos": BehaviourSeries(timestamps, np.sin(timestamps)),
        },
    )
    edges = np.concatenate([contiguous_edges(0.5, 0.125, 10), contiguous_edges(2.5, 0.125, 10)])
    binner = SimpleNamespace(bin_edges_=edges, interval_ids_=np.repeat([0, 1], 10))
    return recording, binner


def test_bin_metadata_from_a_recording(small_session):
    recording, binner = small_session
    metadata = bin_metadata(binner, recording)
    assert metadata.shape == (20, 21)
    assert metadata.index.equals(pd.RangeIndex(20))
    assert list(metadata.columns) == [
        "bin_start", "bin_stop", "interval_id", "trial_id", "maze_id", "success", "split",
        "phase", "event", "hand_pos_x", "hand_pos_y", "hand_vel_x", "hand_vel_y", "eye_pos",
        "vel_x", "vel_y", "speed", "direction_deg", "acc_x", "acc_y", "acceleration",
    ]
    np.testing.assert_allclose(metadata["bin_start"], binner.bin_edges_[:, 0])
    np.testing.assert_allclose(metadata["bin_stop"], binner.bin_edges_[:, 1])
    assert metadata["interval_id"].tolist() == [0] * 10 + [1] * 10
    assert metadata["trial_id"].tolist() == [31] * 10 + [32] * 10
    assert metadata["split"].tolist() == ["train"] * 10 + ["val"] * 10
    # centres at 0.5625 + 0.125 i: target on (0.7) starts bin 2, go cue (1.0)
    # bin 4, movement onset (1.2, after the centre of bin 5) bin 6; the second
    # trial never moves (NaN onset) and stays in "reaction"
    assert metadata["phase"].tolist() == (
        ["before_target"] * 2 + ["delay"] * 2 + ["reaction"] * 2 + ["movement"] * 4
        + ["before_target"] * 2 + ["delay"] * 2 + ["reaction"] * 6
    )
    # mean of 20 t over the 128 samples 0.5 + k / 1024, k = 0 .. 127
    np.testing.assert_allclose(metadata["hand_pos_x"][0], 20 * (0.5 + 127 / 2048), rtol=1e-12)
    np.testing.assert_allclose(metadata["hand_pos_y"], -5.0)
    np.testing.assert_allclose(metadata["speed"], 20.0, rtol=1e-12)
    np.testing.assert_allclose(metadata["direction_deg"], 0.0, atol=1e-12)
    np.testing.assert_allclose(metadata["acceleration"], 0.0, atol=1e-9)


def test_bin_metadata_derives_velocity_from_position(small_session):
    recording, binner = small_session
    behaviour = {"hand_pos": recording.behaviour["hand_pos"]}
    metadata = bin_metadata(binner, recording, behaviour)
    assert "hand_vel_x" not in metadata.columns
    np.testing.assert_allclose(metadata["vel_x"], 20.0, rtol=1e-9)
    np.testing.assert_allclose(metadata["speed"], 20.0, rtol=1e-9)


def test_bin_metadata_with_pairs_and_an_edges_array(small_session):
    recording, binner = small_session
    series = recording.behaviour["hand_pos"]
    metadata = bin_metadata(
        binner.bin_edges_, behaviour={"cursor": (series.timestamps, series.data)},
        kinematics_from=("cursor", "cursor_vel"),
    )
    assert list(metadata.columns)[:5] == ["bin_start", "bin_stop", "interval_id",
                                          "cursor_x", "cursor_y"]
    # the gap between the two stretches of bins splits them into two intervals
    assert metadata["interval_id"].tolist() == [0] * 10 + [1] * 10
    assert "trial_id" not in metadata.columns
    np.testing.assert_allclose(metadata["speed"], 20.0, rtol=1e-9)


def test_bin_metadata_without_trials_or_behaviour():
    metadata = bin_metadata(contiguous_edges(0.0, 0.5, 3))
    assert list(metadata.columns) == ["bin_start", "bin_stop", "interval_id"]
    assert len(metadata) == 3


def test_bin_metadata_skips_kinematics_when_asked(small_session):
    recording, binner = small_session
    metadata = bin_metadata(binner, recording, kinematics_from=None)
    assert "speed" not in metadata.columns
    assert "hand_vel_x" in metadata.columns


@pytest.mark.parametrize(
    "behaviour, error, match",
    [
        ([np.zeros(3)], TypeError, "behaviour must be a mapping"),
        ({"hand_pos": np.zeros(3)}, TypeError, r"behaviour\['hand_pos'\]"),
        ({"maze_id": (np.arange(3.0), np.zeros(3))}, ValueError, "two columns named"),
    ],
)
def test_bin_metadata_rejects_bad_behaviour(small_session, behaviour, error, match):
    recording, binner = small_session
    with pytest.raises(error, match=match):
        bin_metadata(binner, recording.trials, behaviour)


# --------------------------------------------------------------------------
# A real recording


@pytest.mark.skipif(not M1_DATA.exists(), reason=f"real recordings not present at {M1_DATA}")
def test_real_hand_kinematics_agree_with_the_recorded_velocity():
    data = scipy.io.loadmat(M1_DATA)
    times = data["time"][0]
    hand_pos = data["handPos"][:2].T
    hand_vel = data["handVel"][:2].T
    # bins centred on the sample times, touching at the midpoints
    midpoints = (times[1:] + times[:-1]) / 2
    left = np.concatenate([[times[0] - (midpoints[0] - times[0])], midpoints])
    right = np.concatenate([midpoints, [times[-1] + (times[-1] - midpoints[-1])]])
    edges = np.column_stack([left, right])

    # one sample per bin: averaging returns it unchanged
    np.testing.assert_allclose(resample_to_bins(times, hand_pos, edges), hand_pos,
                               rtol=1e-12, atol=1e-14)

    result = kinematics(edges, position=hand_pos, interval_ids=np.zeros(len(times), dtype=int),
                        smooth_sigma_bins=0)
    derived = result[["vel_x", "vel_y"]].to_numpy()
    for axis in range(2):
        assert np.corrcoef(derived[:, axis], hand_vel[:, axis])[0, 1] > 0.99
    moving = np.hypot(*hand_vel.T) > np.quantile(np.hypot(*hand_vel.T), 0.5)
    recorded_direction = np.degrees(np.arctan2(hand_vel[:, 1], hand_vel[:, 0]))
    difference = (result["direction_deg"] - recorded_direction + 180) % 360 - 180
    assert np.median(np.abs(difference[moving])) < 10.0


def test_direction_is_undefined_at_rest():
    """Rounding-noise velocity at rest gets no direction; min_speed is a threshold."""
    from sklearn_nldisco.preprocessing import kinematics

    edges = np.column_stack([np.arange(6) * 0.1, np.arange(1, 7) * 0.1])
    velocity = np.array([[1e-18, -1e-18], [0.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.5, 0.0], [-4.0, 0.0]])
    frame = kinematics(edges, velocity=velocity, smooth_sigma_bins=0)
    assert np.isnan(frame["direction_deg"].iloc[:2]).all()
    np.testing.assert_allclose(frame["direction_deg"].iloc[2:], [0.0, 90.0, 0.0, -180.0])
    frame = kinematics(edges, velocity=velocity, smooth_sigma_bins=0, min_speed=1.0)
    assert np.isnan(frame["direction_deg"].iloc[4])
    assert frame["direction_deg"].iloc[3] == 90.0
    with pytest.raises(ValueError, match="min_speed"):
        kinematics(edges, velocity=velocity, min_speed=-1.0)


def test_integer_and_boolean_trial_columns_stay_discrete_outside_trials():
    from sklearn_nldisco.interpretation import SelectivityScorer

    edges = np.column_stack([np.arange(12) * 0.5, np.arange(1, 13) * 0.5])
    trials = pd.DataFrame({
        "start_time": [0.0, 2.0, 4.0], "stop_time": [1.5, 3.5, 5.0],
        "trial_type": [3, 10, 3], "success": [True, False, True],
        "maze_name": ["a", "b", "a"], "delay": [0.25, 0.5, 0.75],
    })
    labels = trial_labels(edges, trials, events=[("start_time", "trial")],
                          conditions=["trial_type", "success", "maze_name", "delay"])
    assert labels["trial_type"].dtype == "Int64"
    assert labels["success"].dtype == "boolean"
    outside = (labels["trial_id"] == -1).to_numpy()
    assert outside.any() and labels.loc[outside, "trial_type"].isna().all()
    assert labels.loc[~outside, "trial_type"].tolist() == [3, 3, 3, 10, 10, 10, 3, 3]
    assert labels["delay"].dtype == np.float64  # real numbers are left alone
    # the scorer sees two target conditions, not quantile bins of a float
    Z = np.arange(len(labels), dtype=float)[:, None] % 2
    results = SelectivityScorer(variables=["trial_type", "success"], n_permutations=9,
                                random_state=0).score_latents(Z, labels)
    assert results.loc[results["variable"] == "trial_type", "condition"].tolist() == [3, 10]
    assert results.loc[results["variable"] == "success", "condition"].tolist() == [False, True]
