"""The simulated session with planted sequence and rotational motifs."""

import numpy as np
import pytest

from sklearn_nldisco.datasets import MotifGroundTruth, Recording, make_motif_session


@pytest.fixture(scope="module")
def session():
    return make_motif_session(n_units=30, duration_s=150.0, random_state=0)


def _aligned_counts(spike_times, onsets, edges):
    """Mean count per bin of ``edges`` (relative to onset) over the onsets."""
    relative = (spike_times[None, :] - onsets[:, None]).ravel()
    return np.histogram(relative, bins=edges)[0] / len(onsets)


def test_shapes_and_layout(session):
    recording, truth = session
    assert isinstance(recording, Recording) and isinstance(truth, MotifGroundTruth)
    assert recording.n_units == 30 and recording.trials is None
    assert truth.motif_names == ("sequence_0", "sequence_1", "rotation")
    for times in recording.spike_times:
        assert np.all(np.diff(times) >= 0)
        assert times.min() >= 0.0 and times.max() < 150.0
    units = np.concatenate([truth.motifs[name]["units"] for name in truth.motif_names])
    assert len(np.unique(units)) == len(units) == 2 * 8 + 8
    for name in truth.motif_names:
        motif = truth.motifs[name]
        onsets = motif["onset_times_s"]
        assert len(onsets) > 30
        # occurrences of one motif never overlap, and all end inside the session
        assert np.all(np.diff(onsets) >= motif["duration_s"])
        assert onsets[0] >= 0 and onsets[-1] + motif["duration_s"] <= 150.0
    lags = truth.motifs["sequence_0"]["lags_s"]
    assert lags[0] == 0.0
    assert np.all((np.diff(lags) >= 0.02) & (np.diff(lags) <= 0.05))


def test_deterministic():
    first = make_motif_session(n_units=24, duration_s=40.0, random_state=3)
    second = make_motif_session(n_units=24, duration_s=40.0, random_state=3)
    other = make_motif_session(n_units=24, duration_s=40.0, random_state=4)
    for a, b in zip(first[0].spike_times, second[0].spike_times):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[1].baseline_rates_hz, second[1].baseline_rates_hz)
    for name in first[1].motif_names:
        for key in ("units", "lags_s", "onset_times_s"):
            np.testing.assert_array_equal(first[1].motifs[name][key],
                                          second[1].motifs[name][key])
    assert not np.array_equal(first[0].spike_times[0], other[0].spike_times[0])


@pytest.mark.parametrize("name", ["sequence_0", "sequence_1"])
def test_sequence_spikes_follow_onsets_at_the_lags(session, name):
    recording, truth = session
    motif = truth.motifs[name]
    onsets = motif["onset_times_s"]
    edges = np.arange(0.0, 0.4 + 1e-9, 0.005)
    for unit, lag in zip(motif["units"], motif["lags_s"]):
        psth = _aligned_counts(recording.spike_times[unit], onsets, edges)
        peak = edges[np.argmax(psth)]
        # the 10 ms burst fills the bins from lag to lag + 10 ms
        assert lag - 0.005 <= peak <= lag + 0.01
        in_burst = _aligned_counts(recording.spike_times[unit], onsets,
                                   np.array([lag, lag + truth.burst_duration_s]))[0]
        extra = in_burst - truth.baseline_rates_hz[unit] * truth.burst_duration_s
        # the mean of Poisson counts over the onsets, within 4 standard errors
        assert abs(extra - truth.burst_spikes) < 4 * np.sqrt(truth.burst_spikes / len(onsets))


def test_sequence_cross_correlation_peaks_at_the_lag_differences(session):
    recording, truth = session
    motif = truth.motifs["sequence_0"]
    first = recording.spike_times[motif["units"][0]]
    edges = np.arange(0.0, 0.4 + 1e-9, 0.005)
    centres = edges[:-1] + 0.0025
    for unit, lag in zip(motif["units"][1:], motif["lags_s"][1:]):
        differences = (recording.spike_times[unit][None, :] - first[:, None]).ravel()
        histogram = np.histogram(differences, bins=edges)[0]
        # both bursts are 10 ms uniform: the differences are triangular about the lag
        assert abs(centres[np.argmax(histogram)] - lag) <= 0.0075


def test_rotational_units_have_the_planted_phases(session):
    recording, truth = session
    motif = truth.motifs["rotation"]
    onsets = motif["onset_times_s"]
    edges = np.arange(0.0, motif["duration_s"] + 1e-9, 0.01)
    centres = edges[:-1] + 0.005
    omega = 2 * np.pi * truth.rotation_frequency_hz
    estimated = []
    for unit in motif["units"]:
        psth = _aligned_counts(recording.spike_times[unit], onsets, edges)
        # the first Fourier coefficient at the rotation frequency: its angle is the phase
        estimated.append(np.angle(np.sum((psth - psth.mean()) * np.exp(1j * omega * centres))))
        # modulated from about 0 to the peak on top of the background
        rate = psth / 0.01 - truth.baseline_rates_hz[unit]
        assert rate.max() > 0.7 * truth.rotation_peak_rate_hz
        assert rate.min() < 0.3 * truth.rotation_peak_rate_hz
    error = np.angle(np.exp(1j * (np.array(estimated) - motif["phases"])))
    assert np.all(np.abs(error) < 0.35)
    # neighbours on the circle are shifted by one step of phase
    step = np.angle(np.exp(1j * np.diff(estimated)))
    np.testing.assert_allclose(step, 2 * np.pi / len(motif["units"]), atol=0.4)
    np.testing.assert_allclose(motif["lags_s"], motif["phases"] / omega)


def test_rotational_units_fire_at_background_rate_between_episodes(session):
    recording, truth = session
    motif = truth.motifs["rotation"]
    edges = np.arange(0.0, 150.0 + 1e-9, 0.05)
    outside = truth.onset_indicator("rotation", edges) == 0
    for shift in range(1, int(np.ceil(motif["duration_s"] / 0.05)) + 1):
        outside[shift:] &= truth.onset_indicator("rotation", edges)[:-shift] == 0
    for unit in motif["units"]:
        counts = np.histogram(recording.spike_times[unit], bins=edges)[0]
        rate = counts[outside].mean() / 0.05
        assert rate == pytest.approx(truth.baseline_rates_hz[unit], rel=0.25)


def test_kernel_shapes_and_values(session):
    recording, truth = session
    sequence = truth.motifs["sequence_0"]
    kernel = truth.kernel("sequence_0", bin_size_s=0.02)
    assert kernel.shape == (int(np.ceil(sequence["duration_s"] / 0.02)), truth.n_units)
    others = np.setdiff1d(np.arange(truth.n_units), sequence["units"])
    assert np.all(kernel[:, others] == 0)
    np.testing.assert_allclose(kernel[:, sequence["units"]].sum(axis=0), truth.burst_spikes)
    # at 5 ms bins each unit's burst fills the bins from its lag on, in order
    fine = truth.kernel("sequence_0", bin_size_s=0.005)
    first_bin = np.argmax(fine[:, sequence["units"]] > 0, axis=0)
    np.testing.assert_array_equal(first_bin, np.floor(sequence["lags_s"] / 0.005 + 1e-9))
    assert np.all(np.diff(first_bin) > 0)

    rotation = truth.kernel("rotation", bin_size_s=0.05)
    assert rotation.shape == (10, truth.n_units)
    # two whole cycles: every unit adds peak * duration / 2 spikes per episode
    np.testing.assert_allclose(rotation[:, truth.motifs["rotation"]["units"]].sum(axis=0),
                               truth.rotation_peak_rate_hz * 0.5 / 2)
    assert np.all(rotation >= 0)


@pytest.mark.parametrize("name", ["sequence_1", "rotation"])
def test_kernel_matches_the_onset_aligned_spikes(session, name):
    recording, truth = session
    motif = truth.motifs[name]
    bin_size = 0.02
    kernel = truth.kernel(name, bin_size)
    edges = np.arange(len(kernel) + 1) * bin_size
    empirical = np.column_stack([
        _aligned_counts(recording.spike_times[unit], motif["onset_times_s"], edges)
        - truth.baseline_rates_hz[unit] * bin_size
        for unit in motif["units"]])
    truth_part = kernel[:, motif["units"]].ravel()
    assert np.corrcoef(truth_part, empirical.ravel())[0, 1] > 0.9


def test_onset_indicator(session):
    _, truth = session
    onsets = truth.motifs["sequence_0"]["onset_times_s"]
    edges = np.arange(0.0, 150.0 + 1e-9, 0.02)
    indicator = truth.onset_indicator("sequence_0", edges)
    assert indicator.shape == (len(edges) - 1,) and indicator.dtype == np.int64
    assert indicator.sum() == len(onsets) and indicator.max() == 1
    np.testing.assert_array_equal(np.flatnonzero(indicator),
                                  np.floor(onsets / 0.02 + 1e-12).astype(int))
    # (n_bins, 2) edges with a gap: onsets in the gap are not counted
    pairs = np.array([[0.0, 50.0], [100.0, 150.0]])
    inside = np.sum((onsets < 50.0) | (onsets >= 100.0))
    assert truth.onset_indicator("sequence_0", pairs).sum() == inside


def test_expected_counts(session):
    recording, truth = session
    edges = np.arange(0.0, 150.0 + 1e-9, 0.05)
    expected = truth.expected_counts(edges)
    assert expected.shape == (len(edges) - 1, truth.n_units)
    per_occurrence = {name: truth.kernel(name, 0.05).sum(axis=0) for name in truth.motif_names}
    total = truth.baseline_rates_hz * 150.0 + sum(
        len(truth.motifs[name]["onset_times_s"]) * per_occurrence[name]
        for name in truth.motif_names)
    np.testing.assert_allclose(expected.sum(axis=0), total)
    observed = np.array([len(times) for times in recording.spike_times])
    assert np.all(np.abs(observed - total) < 5 * np.sqrt(total))
    # a bin of the onset-aligned kernel, read back from the expected counts
    onsets = truth.motifs["sequence_0"]["onset_times_s"]
    # the onset after the longest wait, so no other occurrence reaches its bins
    onset = onsets[1 + np.argmax(np.diff(onsets))]
    kernel = truth.kernel("sequence_0", 0.02)
    grid = onset + np.arange(len(kernel) + 1) * 0.02
    only_motif = truth.expected_counts(grid) - 0.02 * truth.baseline_rates_hz
    units = truth.motifs["sequence_0"]["units"]
    np.testing.assert_allclose(only_motif[:, units], kernel[:, units], atol=1e-9)
    # an onset 7 ms into its bin: the kernel of that offset
    shifted = truth.kernel("sequence_0", 0.02, onset_offset_s=0.007)
    grid = onset - 0.007 + np.arange(len(shifted) + 1) * 0.02
    only_motif = truth.expected_counts(grid) - 0.02 * truth.baseline_rates_hz
    np.testing.assert_allclose(only_motif[:, units], shifted[:, units], atol=1e-9)
    np.testing.assert_allclose(shifted.sum(axis=0), kernel.sum(axis=0))
    assert not np.allclose(shifted[: len(kernel)], kernel)


def test_without_rotation_or_sequences():
    recording, truth = make_motif_session(n_units=16, duration_s=30.0, n_rotation_units=0,
                                          random_state=0)
    assert truth.motif_names == ("sequence_0", "sequence_1")
    recording, truth = make_motif_session(n_units=10, duration_s=30.0, n_sequences=0,
                                          random_state=0)
    assert truth.motif_names == ("rotation",)
    assert len(truth.motifs["rotation"]["units"]) == 8


@pytest.mark.parametrize("kwargs, match", [
    ({"n_units": 10}, "n_units=10 is too few"),
    ({"n_units": 0}, "n_units must be an integer >= 1"),
    ({"n_sequences": -1}, "n_sequences"),
    ({"sequence_length": 1}, "sequence_length"),
    ({"n_rotation_units": 2}, "n_rotation_units"),
    ({"duration_s": 0.0}, "duration_s must be a positive"),
    ({"duration_s": 0.2}, "shorter than a motif"),
    ({"burst_spikes": -1.0}, "burst_spikes"),
    ({"burst_duration_s": 0.03}, "burst_duration_s must be at most"),
    ({"lag_step_range_s": (0.05, 0.02)}, "lag_step_range_s"),
    ({"lag_step_range_s": 0.03}, "lag_step_range_s"),
    ({"background_rate_range_hz": (0.0, 5.0)}, "background_rate_range_hz"),
    ({"rotation_frequency_hz": float("nan")}, "rotation_frequency_hz"),
    ({"mean_gap_s": "2"}, "mean_gap_s"),
])
def test_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_motif_session(**{"n_units": 30, "duration_s": 30.0, **kwargs})


def test_ground_truth_argument_errors(session):
    _, truth = session
    with pytest.raises(ValueError, match="No motif named 'sequence_9'"):
        truth.kernel("sequence_9", 0.02)
    with pytest.raises(ValueError, match="bin_size_s must be a positive"):
        truth.kernel("rotation", 0.0)
    with pytest.raises(ValueError, match="onset_offset_s must be in"):
        truth.kernel("rotation", 0.02, onset_offset_s=0.02)
    with pytest.raises(ValueError, match="bin_edges"):
        truth.onset_indicator("rotation", [1.0, 0.5])


def test_no_single_bin_pattern_holds_a_motif(session):
    """A latent of a single-bin model is one pattern across units scaled in time,
    a rank-one lags x units kernel; the planted motifs are far from rank one."""
    _, truth = session
    for name in truth.motif_names:
        kernel = truth.kernel(name, 0.02)[:, truth.motifs[name]["units"]]
        singular = np.linalg.svd(kernel, compute_uv=False)
        energy = singular**2 / np.sum(singular**2)
        if truth.motifs[name]["kind"] == "sequence":
            assert energy[0] < 0.4
        else:
            # a mean plus a rotation in a plane: rank three, two equal rotating parts
            assert energy[0] < 0.75 and energy[3:].sum() < 1e-9
            assert singular[2] == pytest.approx(singular[1], rel=0.05)
