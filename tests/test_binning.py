"""SpikeBinner: spike trains to counts on a grid of half-open bins."""

import pickle
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter1d
from sklearn import config_context
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks

from sklearn_nldisco.datasets._recording import Recording
from sklearn_nldisco.preprocessing import SpikeBinner
from sklearn_nldisco.preprocessing._binning import edge_offsets

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RASTERS = DATA / "datahigh_ex2_rawspiketrains.mat"


def reference_counts(spike_trains, bin_edges):
    """Counts by a different route: binary search for the last left edge at
    or before each spike, then the right edge. Returns counts and the
    number of spikes in no bin."""
    left, right = bin_edges[:, 0], bin_edges[:, 1]
    counts = np.zeros((len(bin_edges), len(spike_trains)))
    outside = 0
    for unit, times in enumerate(spike_trains):
        times = np.asarray(times, dtype=float)
        candidate = np.searchsorted(left, times, side="right") - 1
        inside = (candidate >= 0) & (times < right[np.maximum(candidate, 0)])
        np.add.at(counts[:, unit], candidate[inside], 1)
        outside += int((~inside).sum())
    return counts, outside


# --------------------------------------------------------------------------
# The grid


def test_counts_and_fitted_attributes():
    spikes = [np.array([0.01, 0.1, 0.13, 0.31]), np.array([0.25, 0.05])]
    binner = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=0.3)
    counts = binner.fit_transform(spikes)
    np.testing.assert_array_equal(counts, [[1, 1], [2, 0], [0, 1]])
    assert counts.dtype == np.float64 and counts.flags.c_contiguous
    np.testing.assert_array_equal(binner.bin_edges_, [[0.0, 0.1], [0.1, 0.2], [0.2, 0.3]])
    np.testing.assert_allclose(binner.bin_centers_, [0.05, 0.15, 0.25])
    np.testing.assert_array_equal(binner.interval_ids_, [0, 0, 0])
    np.testing.assert_array_equal(binner.intervals_, [[0.0, 0.3]])
    assert binner.bin_size_ == 0.1
    assert binner.n_features_in_ == 2
    assert not hasattr(binner, "feature_names_in_")
    assert binner.n_spikes_dropped_ == 1  # 0.31 is past t_stop
    assert binner.get_feature_names_out().tolist() == ["unit0", "unit1"]


def test_edges_come_from_integer_indices_not_sums():
    binner = SpikeBinner(bin_size=0.02, t_start=0.0, t_stop=10.0).fit([[1.0]])
    left = binner.bin_edges_[:, 0]
    assert len(left) == 500
    # every edge is the float nearest to i * 0.02, as i / 50 computes it
    np.testing.assert_array_equal(left, np.arange(500) / 50)
    np.testing.assert_array_equal(binner.bin_edges_[:-1, 1], left[1:])
    # which neither repeated addition nor the float product would give
    assert not np.array_equal(left, np.cumsum(np.r_[0.0, np.full(499, 0.02)]))
    assert left[35] == 0.7 != 35 * 0.02


def test_edge_offsets_fall_back_to_the_product_for_long_decimals():
    third = 1 / 3
    np.testing.assert_array_equal(edge_offsets(np.arange(10), third), np.arange(10) * third)


@pytest.mark.parametrize("bin_ms", [1, 5, 20, 50, 100])
@pytest.mark.parametrize("offset", [0.0, 12.345, 1000.5, 1.7e9])
def test_sample_times_fall_in_the_bin_of_their_sample(bin_ms, offset):
    # spike at sample k of a 1 kHz clock: k / 1000 s after the interval start
    k = np.arange(20_000)
    times = k / 1000 + offset
    binner = SpikeBinner(bin_size=bin_ms / 1000, t_start=offset, t_stop=offset + 20.0)
    counts = binner.fit_transform([times])[:, 0]
    expected = np.bincount(k // bin_ms, minlength=20_000 // bin_ms)
    np.testing.assert_array_equal(counts, expected)
    assert binner.n_spikes_dropped_ == 0


def test_spike_on_an_edge_belongs_to_the_bin_it_opens():
    binner = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0).fit([[0.5]])
    edges = binner.bin_edges_[:, 0]
    on_edge = binner.transform([edges])[:, 0]
    np.testing.assert_array_equal(on_edge, np.ones(10))
    just_before = binner.transform([np.nextafter(edges[1:], -np.inf)])[:, 0]
    np.testing.assert_array_equal(just_before, np.r_[np.ones(9), 0])
    # the right edge of the last bin is outside the grid
    assert binner.transform([[binner.bin_edges_[-1, 1]]]).sum() == 0
    assert binner.n_spikes_dropped_ == 1


def test_trailing_partial_bin_is_dropped_and_counted():
    spikes = [np.array([0.05, 0.15, 0.2, 0.24])]
    binner = SpikeBinner(bin_size=0.1, intervals=[[0.0, 0.25]])
    counts = binner.fit_transform(spikes)
    np.testing.assert_array_equal(counts[:, 0], [1, 1])
    assert binner.n_spikes_dropped_ == 2


def test_whole_number_of_bins_despite_rounding():
    # (0.3 - 0) / 0.1 is 2.9999999999999996 in floating point
    assert (0.3 - 0.0) / 0.1 < 3
    binner = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=0.3).fit([[0.1]])
    assert len(binner.bin_edges_) == 3
    assert binner.bin_edges_[-1, 1] == 0.3


def test_grid_from_data_covers_every_spike():
    spikes = [np.array([3.7, 1.23, 2.0]), np.array([5.5]), np.array([])]
    binner = SpikeBinner(bin_size=0.25)
    counts = binner.fit_transform(spikes)
    assert binner.bin_edges_[0, 0] == 1.23
    assert binner.bin_edges_[-1, 0] <= 5.5 < binner.bin_edges_[-1, 1]
    assert binner.n_spikes_dropped_ == 0
    np.testing.assert_array_equal(counts.sum(axis=0), [3, 1, 0])
    assert counts[-1, 1] == 1
    np.testing.assert_array_equal(binner.intervals_, [[1.23, binner.bin_edges_[-1, 1]]])


def test_only_one_end_from_data():
    spikes = [np.array([1.0, 2.0, 3.05])]
    from_start = SpikeBinner(bin_size=0.5, t_start=0.0).fit(spikes)
    assert from_start.bin_edges_[0, 0] == 0.0 and len(from_start.bin_edges_) == 7
    to_stop = SpikeBinner(bin_size=0.5, t_stop=2.6).fit(spikes)
    np.testing.assert_array_equal(to_stop.bin_edges_[[0, -1]], [[1.0, 1.5], [2.0, 2.5]])


def test_intervals_in_any_order_bin_in_time_order():
    trials = pd.DataFrame(
        {"start_time": [2.0, 0.0, 1.0], "stop_time": [2.3, 0.2, 2.0], "trial_type": [1, 2, 1]},
        index=pd.Index([10, 11, 12], name="trial_id"),
    )
    spikes = [np.array([0.05, 1.99, 2.0, 2.25, 5.0]), np.array([0.15, 1.0])]
    binner = SpikeBinner(bin_size=0.1, intervals=trials)
    counts = binner.fit_transform(spikes)
    assert np.all(np.diff(binner.bin_edges_[:, 0]) > 0)
    np.testing.assert_array_equal(binner.interval_ids_, [1] * 2 + [2] * 10 + [0] * 3)
    np.testing.assert_array_equal(binner.intervals_, trials[["start_time", "stop_time"]])
    # touching intervals 1 and 2: 2.0 opens the last trial, 1.99 ends trial 12
    np.testing.assert_array_equal(counts[:, 0], [1, 0] + [0] * 9 + [1] + [1, 0, 1])
    np.testing.assert_array_equal(counts[:, 1], [0, 1] + [1] + [0] * 9 + [0, 0, 0])
    assert binner.n_spikes_dropped_ == 1  # the spike at 5.0
    same = SpikeBinner(bin_size=0.1, intervals=trials[["start_time", "stop_time"]].to_numpy())
    np.testing.assert_array_equal(same.fit_transform(spikes), counts)


def test_interval_shorter_than_a_bin_has_no_bins():
    binner = SpikeBinner(bin_size=0.5, intervals=[[0.0, 1.0], [2.0, 2.2], [3.0, 3.5]])
    counts = binner.fit_transform([np.array([0.1, 2.1, 3.1])])
    np.testing.assert_array_equal(binner.interval_ids_, [0, 0, 2])
    np.testing.assert_array_equal(counts[:, 0], [1, 0, 1])
    assert binner.n_spikes_dropped_ == 1


def test_transform_bins_new_spikes_on_the_fitted_grid():
    binner = SpikeBinner(bin_size=1.0).fit([np.array([0.0, 3.5])])
    assert len(binner.bin_edges_) == 4
    assert not hasattr(binner, "n_spikes_dropped_")
    counts = binner.transform([np.array([-1.0, 0.5, 2.5, 2.7, 4.0, 10.0])])
    np.testing.assert_array_equal(counts[:, 0], [1, 0, 2, 0])
    assert binner.n_spikes_dropped_ == 3


@pytest.mark.parametrize("n_units", [3, 40])
def test_threads_blocks_and_dtypes_agree(n_units):
    # 40 units fill the output through transposed blocks, 3 column by column
    rng = np.random.default_rng(0)
    spikes = [rng.uniform(-1, 61, size=rng.integers(0, 400)) for _ in range(n_units)]
    intervals = np.array([[0.0, 10.0], [10.0, 25.5], [30.0, 59.97]])
    reference = None
    for n_jobs in (1, 2):
        for dtype in (np.float64, np.float32, np.int32, np.uint16):
            binner = SpikeBinner(bin_size=0.05, intervals=intervals, dtype=dtype, n_jobs=n_jobs)
            counts = binner.fit_transform(spikes)
            assert counts.dtype == dtype and counts.flags.c_contiguous
            if reference is None:
                reference, outside = reference_counts(spikes, binner.bin_edges_)
                assert binner.n_spikes_dropped_ == outside
            np.testing.assert_array_equal(counts, reference)


def test_unsorted_spikes_give_the_same_counts():
    rng = np.random.default_rng(1)
    spikes = [np.sort(rng.uniform(0, 30, 500)) for _ in range(4)]
    binner = SpikeBinner(bin_size=0.1, intervals=[[0, 10], [12, 20], [25, 29.95]])
    sorted_counts = binner.fit_transform(spikes)
    shuffled = [rng.permutation(times) for times in spikes]
    np.testing.assert_array_equal(binner.transform(shuffled), sorted_counts)


def test_many_close_intervals_find_their_bins():
    # 2,000 intervals, some touching, some a hair apart: the segment lookup
    rng = np.random.default_rng(2)
    cuts = np.cumsum(rng.choice([0.0, 1e-7, 0.3], size=2000)) + np.arange(2000) * 0.5
    intervals = np.column_stack([cuts, cuts + 0.5])
    spikes = [rng.uniform(-1, cuts[-1] + 2, 20_000), intervals[:, 0], intervals[:, 1]]
    binner = SpikeBinner(bin_size=0.1, intervals=intervals)
    counts = binner.fit_transform(spikes)
    expected, outside = reference_counts(spikes, binner.bin_edges_)
    np.testing.assert_array_equal(counts, expected)
    assert binner.n_spikes_dropped_ == outside
    np.testing.assert_array_equal(counts[:, 1], np.tile([1, 0, 0, 0, 0], 2000))


def test_intervals_both_close_together_and_far_apart():
    # close starts and a long span: too many lookup slots, binary search instead
    intervals = np.array([[0.0, 0.1], [0.1, 0.25], [1e6, 1e6 + 0.3]])
    rng = np.random.default_rng(4)
    spikes = [np.r_[rng.uniform(-0.1, 0.4, 500), rng.uniform(1e6 - 0.1, 1e6 + 0.4, 500),
                    intervals.ravel()]]
    binner = SpikeBinner(bin_size=0.1, intervals=intervals)
    counts = binner.fit_transform(spikes)
    np.testing.assert_array_equal(binner.interval_ids_, [0, 1, 2, 2, 2])
    expected, outside = reference_counts(spikes, binner.bin_edges_)
    np.testing.assert_array_equal(counts, expected)
    assert binner.n_spikes_dropped_ == outside


# --------------------------------------------------------------------------
# Counts are conserved (property)


@st.composite
def grids_and_spikes(draw):
    bin_size = draw(st.one_of(
        st.sampled_from([0.001, 0.005, 0.02, 0.05, 0.1, 0.3, 1 / 3, 0.0375]),
        st.floats(min_value=0.01, max_value=2.0),
    ))
    cuts = sorted(draw(st.lists(st.floats(min_value=-5, max_value=20), min_size=2,
                                max_size=8, unique=True)))
    pairs = [(a, b) for a, b in zip(cuts[::2], cuts[1::2])]
    touching = draw(st.booleans())
    if touching and len(cuts) >= 3:  # two intervals sharing an end
        pairs = [(cuts[0], cuts[1]), (cuts[1], cuts[2])]
    order = draw(st.permutations(range(len(pairs))))
    intervals = np.array([pairs[i] for i in order])
    n_units = draw(st.integers(1, 3))
    spikes = [draw(st.lists(st.floats(min_value=-6, max_value=21), max_size=60))
              for _ in range(n_units)]
    on_edges = draw(st.lists(st.integers(0, 10_000), max_size=20))
    return bin_size, intervals, spikes, on_edges


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids_and_spikes())
def test_spike_counts_are_conserved(case):
    bin_size, intervals, spikes, on_edges = case
    binner = SpikeBinner(bin_size=bin_size, intervals=intervals)
    # the first edge after the start is start + bin_size, rounded once: an
    # interval holds a full bin when that edge is not past its stop (the
    # rounded difference stop - start can differ from it in the last bit)
    if all(start + bin_size > stop for start, stop in intervals):
        with pytest.raises(ValueError, match="no interval holds a full bin"):
            binner.fit(spikes)
        return
    binner.fit(spikes)
    edges = binner.bin_edges_
    # spikes exactly on edges and one float step before them
    chosen = edges.ravel()[np.asarray(on_edges, dtype=int) % edges.size]
    spikes = [*spikes, np.r_[chosen, np.nextafter(chosen, -np.inf)]]
    binner.fit(spikes)
    counts = binner.transform(spikes)
    expected, outside = reference_counts(spikes, edges)
    np.testing.assert_array_equal(counts, expected)
    n_spikes = sum(len(times) for times in spikes)
    assert counts.sum() == n_spikes - outside
    assert binner.n_spikes_dropped_ == outside
    # each interval: bins start at its start, touch, and end less than a bin
    # before its stop (up to rounding)
    for interval_id, (start, stop) in enumerate(intervals):
        own = edges[binner.interval_ids_ == interval_id]
        n_full = (stop - start) / bin_size
        assert n_full - 1 - 1e-9 <= len(own) <= n_full + 1e-9
        end = own[-1, 1] if len(own) else start
        assert end <= stop and stop - end <= bin_size * (1 + 1e-9)
        if len(own):
            assert own[0, 0] == start
            np.testing.assert_array_equal(own[1:, 0], own[:-1, 1])
            np.testing.assert_allclose(own[:, 1] - own[:, 0], bin_size, rtol=1e-6)


# --------------------------------------------------------------------------
# Real spike trains


@pytest.fixture(scope="module")
def datahigh_trials():
    if not RASTERS.exists():
        pytest.skip(f"real recordings not present at {RASTERS}")
    trials = scipy.io.loadmat(RASTERS, squeeze_me=True, struct_as_record=False)["D"]
    return [np.asarray(trial.data) for trial in trials]


@pytest.mark.parametrize("bin_ms", [1, 20, 50])
def test_real_spike_trains_match_raster_sums(datahigh_trials, bin_ms):
    # trials laid end to end, 0.3 s apart, after an arbitrary origin
    rasters = datahigh_trials
    assert len(rasters) == 112 and rasters[0].shape[0] == 61
    durations = np.array([raster.shape[1] / 1000 for raster in rasters])
    offsets = 1234.567 + np.r_[0.0, np.cumsum(durations + 0.3)[:-1]]
    spikes = [
        np.concatenate([np.flatnonzero(raster[unit]) / 1000 + offset
                        for raster, offset in zip(rasters, offsets)])
        for unit in range(61)
    ]
    intervals = np.column_stack([offsets, offsets + durations])
    binner = SpikeBinner(bin_size=bin_ms / 1000, intervals=intervals)
    counts = binner.fit_transform(spikes)
    dropped = 0
    for trial, raster in enumerate(rasters):
        n_bins = raster.shape[1] // bin_ms
        blocks = raster[:, : n_bins * bin_ms].reshape(61, n_bins, bin_ms).sum(axis=2)
        np.testing.assert_array_equal(counts[binner.interval_ids_ == trial], blocks.T)
        dropped += int(raster[:, n_bins * bin_ms:].sum())
    assert binner.n_spikes_dropped_ == dropped


# --------------------------------------------------------------------------
# Inputs


def spike_table(spikes, labels):
    return pd.DataFrame({
        "neuron": np.concatenate([[label] * len(times) for label, times in zip(labels, spikes)]),
        "t": np.concatenate(spikes),
    })


SPIKES = [np.array([0.05, 0.42, 0.43]), np.array([0.9]), np.array([0.1, 0.11, 0.77, 0.3])]


def test_long_form_dataframe_orders_units_by_label():
    frame = spike_table(SPIKES, ["c", "a", "b"]).sample(frac=1.0, random_state=0)
    binner = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0, unit_column="neuron",
                         time_column="t")
    counts = binner.fit_transform(frame)
    expected = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0).fit_transform(SPIKES)
    np.testing.assert_array_equal(counts, expected[:, [1, 2, 0]])
    assert binner.get_feature_names_out().tolist() == ["a", "b", "c"]
    # a unit silent in new data is simply absent from its table
    fewer = spike_table(SPIKES[1:], ["a", "b"])
    np.testing.assert_array_equal(binner.transform(fewer), expected[:, [1, 2, 0]] * [1, 1, 0])


def test_long_form_with_integer_labels_and_default_columns():
    frame = spike_table(SPIKES, [7, 3, 12]).rename(columns={"neuron": "unit", "t": "time"})
    binner = SpikeBinner(bin_size=0.5, t_start=0.0, t_stop=1.0).fit(frame)
    assert binner.feature_names_in_.tolist() == ["3", "7", "12"]
    np.testing.assert_array_equal(binner.transform(frame).sum(axis=0), [1, 3, 4])


def test_nwb_units_table():
    from pynwb.misc import Units

    units = Units()
    for unit_id, times in zip([5, 9, 2], SPIKES):
        units.add_unit(spike_times=times, id=unit_id)
    binner = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0)
    counts = binner.fit_transform(units)
    expected = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0).fit_transform(SPIKES)
    np.testing.assert_array_equal(counts, expected)
    assert binner.get_feature_names_out().tolist() == ["5", "9", "2"]


def test_recording_and_other_sequences():
    recording = Recording(spike_times=SPIKES,
                          units=pd.DataFrame(index=pd.Index([101, 102, 103], name="unit_id")))
    binner = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0)
    expected = binner.fit_transform(SPIKES)
    np.testing.assert_array_equal(binner.fit_transform(recording), expected)
    assert binner.get_feature_names_out().tolist() == ["101", "102", "103"]
    for other in (
        [times.tolist() for times in SPIKES],
        tuple(SPIKES),
        np.array(SPIKES, dtype=object),
        pd.Series(SPIKES),
    ):
        np.testing.assert_array_equal(SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0)
                                      .fit_transform(other), expected)
    single = [times.astype(np.float32) for times in SPIKES]
    np.testing.assert_array_equal(
        binner.fit_transform(single),
        binner.fit_transform([times.astype(np.float64) for times in single]),
    )


def test_pandas_output():
    binner = SpikeBinner(bin_size=0.25, t_start=0.0, t_stop=1.0).set_output(transform="pandas")
    frame = binner.fit_transform(SPIKES)
    assert isinstance(frame, pd.DataFrame)
    assert frame.columns.tolist() == ["unit0", "unit1", "unit2"]
    assert frame.index.equals(pd.RangeIndex(4))
    np.testing.assert_array_equal(frame.to_numpy(), binner.set_output(transform="default")
                                  .transform(SPIKES))
    # a long-form input has one row per spike: the output is still one per bin
    table = spike_table(SPIKES, ["x", "y", "z"]).rename(columns={"neuron": "unit", "t": "time"})
    with config_context(transform_output="pandas"):
        frame = SpikeBinner(bin_size=0.25, t_start=0.0, t_stop=1.0).fit(table).transform(table)
    assert frame.shape == (4, 3) and frame.columns.tolist() == ["x", "y", "z"]
    assert frame.index.equals(pd.RangeIndex(4))


def test_get_feature_names_out_checks_input_features():
    binner = SpikeBinner(bin_size=0.5, t_start=0.0, t_stop=1.0).fit(SPIKES)
    assert binner.get_feature_names_out(["p", "q", "r"]).tolist() == ["p", "q", "r"]
    with pytest.raises(ValueError, match=r"input_features=\['p'\] does not match the 3"):
        binner.get_feature_names_out(["p"])
    named = SpikeBinner(bin_size=0.5, t_start=0.0, t_stop=1.0).fit(
        spike_table(SPIKES, "abc").rename(columns={"neuron": "unit", "t": "time"}))
    with pytest.raises(ValueError, match=r"\['a', 'b', 'x'\] does not match"):
        named.get_feature_names_out(["a", "b", "x"])


# --------------------------------------------------------------------------
# Smoothing


def test_smoothing_stays_within_each_interval():
    intervals = [[0.0, 1.0], [1.0, 2.0], [3.0, 4.0]]  # the first two touch
    spikes = [np.array([0.95, 0.95, 0.05]), np.array([3.02, 1.5])]
    raw = SpikeBinner(bin_size=0.1, intervals=intervals).fit_transform(spikes)
    binner = SpikeBinner(bin_size=0.1, intervals=intervals, smooth_sigma=0.2)
    smooth = binner.fit_transform(spikes)
    ids = binner.interval_ids_
    # nothing from interval 0 reaches interval 1, though they touch
    np.testing.assert_array_equal(smooth[ids == 1, 0], 0.0)
    assert np.all(smooth[ids == 0, 0] > 0)
    for interval in range(3):
        rows = ids == interval
        expected = gaussian_filter1d(raw[rows], 2.0, axis=0, mode="reflect")
        np.testing.assert_allclose(smooth[rows], expected, atol=1e-12)
        np.testing.assert_allclose(smooth[rows].sum(axis=0), raw[rows].sum(axis=0))
    assert binner.n_spikes_dropped_ == 0


def test_smoothing_a_long_segment_in_column_chunks():
    rng = np.random.default_rng(3)
    spikes = [rng.uniform(0, 600, 3000) for _ in range(10)]
    raw = SpikeBinner(bin_size=0.001, t_start=0.0, t_stop=600.0).fit_transform(spikes)
    smooth = SpikeBinner(bin_size=0.001, t_start=0.0, t_stop=600.0, smooth_sigma=0.01,
                         dtype=np.float32).fit_transform(spikes)
    assert smooth.dtype == np.float32
    np.testing.assert_allclose(smooth, gaussian_filter1d(raw, 10.0, axis=0, mode="reflect"),
                               atol=1e-6)


# --------------------------------------------------------------------------
# Errors name the argument, the value and what was expected


@pytest.mark.parametrize(
    "params, X, message",
    [
        ({}, [np.array([0.1, np.nan])], "spike times of unit 0 contain nan; expected finite"),
        ({}, [np.array([0.1]), np.array([np.inf])], "unit 1 contain inf"),
        ({"bin_size": 0}, SPIKES, "'bin_size' parameter of SpikeBinner must be a float in the"),
        ({"bin_size": -0.1}, SPIKES, r"bin_size.*Got -0.1"),
        ({"bin_size": float("inf")}, SPIKES, r"range \(0.0, inf\). Got inf instead"),
        ({"t_start": 1.0, "t_stop": 1.0}, SPIKES, r"t_stop=1.0 <= t_start=1.0; expected t_stop"),
        ({"t_stop": 0.01}, SPIKES, r"t_stop=0.01 <= t_start=0.05 \(the earliest spike\)"),
        ({"t_start": np.nan}, SPIKES, "t_start=nan is not finite"),
        ({"t_start": 5.0}, SPIKES, "every spike is before t_start=5.0"),
        ({"t_start": 0.0}, [[]], r"X has no spikes, so t_start=0.0/t_stop=None cannot"),
        ({"intervals": [[0, 1], [0.5, 2]]}, SPIKES,
         r"intervals overlap \(by 0.5 s\): interval 0 \[0.0, 1.0\] and interval 1 \[0.5, 2.0\]"),
        ({"intervals": [[0, 1], [3, 2]]}, SPIKES,
         r"intervals\[1\]: stop=2.0 <= start=3.0; expected stop > start"),
        ({"intervals": [[0, np.nan]]}, SPIKES, r"intervals\[0\]=\[0.0, nan\) is not finite"),
        ({"intervals": [0, 1]}, SPIKES, r"intervals has shape \(2,\); expected \(n_intervals, 2\)"),
        ({"intervals": pd.DataFrame({"start": [0.0], "stop_time": [1.0]})}, SPIKES,
         r"without column\(s\) \['start_time'\]"),
        ({"intervals": [[0, 1]], "t_start": 0.0}, SPIKES, "intervals and t_start=0.0/t_stop=None"),
        ({"intervals": [[0, 0.04]]}, SPIKES, "no interval holds a full bin of bin_size=0.05"),
        ({"bin_size": 1e-9, "t_start": 1.7e9, "t_stop": 1.7e9 + 1}, SPIKES,
         "bin_size=1e-09 is too small for times as large as 1700000001.0"),
        ({"smooth_sigma": 0.1, "dtype": np.int32}, SPIKES,
         "smooth_sigma=0.1 needs a floating dtype but dtype='int32'"),
        ({"dtype": "complex128"}, SPIKES, "dtype='complex128' is not supported"),
        ({"dtype": np.uint8, "bin_size": 10.0}, [np.linspace(0, 1, 300)],
         "dtype='uint8' cannot hold a count of 300 spikes"),
        ({}, [np.zeros((2, 3))], r"X\[0\] has shape \(2, 3\); expected a 1-D array"),
        ({}, [0.5, 0.7], r"X\[0\] has shape \(\); expected a 1-D array"),
        ({}, [["a", "b"]], r"X\[0\] cannot be read as spike times"),
        ({}, ["0.1"], r"X\[0\] is a str; expected a 1-D array"),
        ({}, "0.1 0.2", "X is a str; expected a sequence of 1-D spike-time arrays"),
        ({}, {"a": [0.1]}, "X is a dict; expected a sequence"),
        ({}, 3.0, "X is a float; expected a sequence"),
        ({}, np.zeros((3, 5)), r"X is a 2-D float64 array of shape \(3, 5\); expected a sequence"),
        ({}, [], "X has no units"),
        ({}, pd.DataFrame({"unit": [1], "t": [0.1]}), "time_column='time' is not a column of X"),
    ],
)
def test_bad_input_raises_a_clear_error(params, X, message):
    with pytest.raises(ValueError, match=message):
        SpikeBinner(**params).fit_transform(X)


def test_transform_rejects_other_units():
    binner = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0).fit(SPIKES)
    with pytest.raises(ValueError, match="X has 2 units, but SpikeBinner was fitted with 3"):
        binner.transform(SPIKES[:2])
    with pytest.raises(ValueError, match="spike times of unit 2 contain nan"):
        binner.transform([*SPIKES[:2], np.array([np.nan])])
    table = spike_table(SPIKES, "abc").rename(columns={"neuron": "unit", "t": "time"})
    named = SpikeBinner(bin_size=0.1, t_start=0.0, t_stop=1.0).fit(table)
    with pytest.raises(ValueError, match=re.escape("X has units ['d'] that were not seen")):
        named.transform(spike_table(SPIKES[:1], "d").rename(columns={"neuron": "unit",
                                                                     "t": "time"}))
    recording = Recording(spike_times=SPIKES, units=pd.DataFrame(index=["a", "c", "b"]))
    with pytest.raises(ValueError, match=re.escape("X has units ['a', 'c', 'b'] but")):
        named.transform(recording)
    with pytest.raises(ValueError, match="X.spike_times has 3 units but X.units has 2 rows"):
        named.transform(SimpleNamespace(spike_times=SPIKES, units=pd.DataFrame(index=["a", "b"])))


# --------------------------------------------------------------------------
# scikit-learn conventions


@pytest.mark.parametrize("check", [
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_mixin_order,
    estimator_checks.check_estimator_tags_renamed,
    estimator_checks.check_valid_tag_types,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
], ids=lambda check: check.__name__)
def test_api_checks_that_need_no_2d_data(check):
    # the other estimator checks feed 2-D numeric X, which is not spike trains;
    # the tags say so (input_tags.two_d_array=False)
    check("SpikeBinner", SpikeBinner())


def test_clone_pickle_and_pipeline():
    binner = SpikeBinner(bin_size=0.2, intervals=[[0.0, 0.6], [0.6, 1.0]], dtype=np.float32)
    counts = binner.fit_transform(SPIKES)
    restored = pickle.loads(pickle.dumps(binner))
    np.testing.assert_array_equal(restored.transform(SPIKES), counts)
    assert clone(binner).get_params() == binner.get_params()
    assert not hasattr(clone(binner), "bin_edges_")
    pipeline = make_pipeline(SpikeBinner(bin_size=0.2, t_start=0.0, t_stop=1.0),
                             StandardScaler())
    assert pipeline.fit_transform(SPIKES).shape == (5, 3)
    assert pipeline.get_feature_names_out().tolist() == ["unit0", "unit1", "unit2"]


def test_binning_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "from sklearn_nldisco.preprocessing import SpikeBinner\n"
        "SpikeBinner(bin_size=0.1).fit_transform([np.array([0.0, 0.5])])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_interval_one_rounded_bin_short_holds_no_bin():
    """stop - start rounds to bin_size, but the first edge lies past stop."""
    start, stop = -1 / 3, -9.003716053594508e-88
    assert stop - start == 1 / 3 and start + 1 / 3 > stop
    with pytest.raises(ValueError, match="no interval holds a full bin"):
        SpikeBinner(bin_size=1 / 3, intervals=[[start, stop]]).fit([np.array([-0.2])])
