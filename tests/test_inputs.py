"""Inputs users already have: Kilosort/Phy folders and pynapple objects."""

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from sklearn_nldisco.datasets import load_phy
from sklearn_nldisco.preprocessing import SpikeBinner

SAMPLE_RATE = 30000
BIN_SAMPLES = 600  # 20 ms at 30 kHz
N_BINS = 50


def spikes_per_cluster(rng, cluster_ids):
    """Sample indices per cluster, with spikes on bin edges and just before them."""
    samples = {}
    for cluster in cluster_ids:
        n = int(rng.integers(5, 40))
        drawn = rng.integers(0, N_BINS * BIN_SAMPLES, size=n)
        edges = BIN_SAMPLES * rng.integers(0, N_BINS, size=3)
        samples[cluster] = np.r_[drawn, edges, edges[edges > 0] - 1].astype(np.uint64)
    return samples


def write_phy_folder(
    folder, samples, *, labels=None, ks_labels=None, info=None, params=None, column=True,
    clusters_file="spike_clusters.npy",
):
    """A Phy folder: spikes shuffled in time (sorting is the loader's job)."""
    folder.mkdir(parents=True, exist_ok=True)
    times = np.concatenate(list(samples.values()))
    clusters = np.concatenate(
        [np.full(len(value), key, dtype=np.uint32) for key, value in samples.items()]
    )
    order = np.random.default_rng(1).permutation(len(times))
    times, clusters = times[order], clusters[order]
    # Kilosort 2 and 3 save spike times as a column vector
    np.save(folder / "spike_times.npy", times[:, None] if column else times)
    np.save(folder / clusters_file, clusters)
    if params is None:
        params = (
            "dat_path = 'continuous.dat'\nn_channels_dat = 385\ndtype = 'int16'\n"
            f"offset = 0\nsample_rate = {float(SAMPLE_RATE)!r}\nhp_filtered = False\n"
        )
    if params:
        (folder / "params.py").write_text(params)
    if labels is not None:
        rows = "".join(f"{key}\t{value}\n" for key, value in labels.items())
        (folder / "cluster_group.tsv").write_text("cluster_id\tgroup\n" + rows)
    if ks_labels is not None:
        rows = "".join(f"{key}\t{value}\n" for key, value in ks_labels.items())
        (folder / "cluster_KSLabel.tsv").write_text("cluster_id\tKSLabel\n" + rows)
    if info is not None:
        info.to_csv(folder / "cluster_info.tsv", sep="\t", index=False)
    return folder


@pytest.fixture
def phy(tmp_path):
    samples = spikes_per_cluster(np.random.default_rng(0), [0, 3, 5, 9])
    info = pd.DataFrame(
        {
            "cluster_id": [0, 3, 5, 9, 12],  # 12 was merged away: no spikes
            "ch": [4, 17, 17, 30, 2],
            "depth": [40.0, 340.0, 340.0, 600.0, 20.0],
            "group": ["good", "mua", "noise", "", "good"],
        }
    )
    folder = write_phy_folder(
        tmp_path / "sorting",
        samples,
        labels={0: "good", 3: "mua", 5: "noise", 12: "good"},  # 9: never labelled
        ks_labels={0: "good", 3: "good", 5: "mua", 9: "mua", 12: "good"},
        info=info,
    )
    return folder, samples


def expected_counts(samples, cluster_ids):
    """Counts by integer division of sample indices, no floating point."""
    counts = np.zeros((N_BINS, len(cluster_ids)))
    for unit, cluster in enumerate(cluster_ids):
        counts[:, unit] = np.bincount(
            samples[cluster].astype(np.int64) // BIN_SAMPLES, minlength=N_BINS
        )
    return counts


# Kilosort/Phy folders


def test_phy_every_spike_lands_in_its_unit_and_bin(phy):
    folder, samples = phy
    recording = load_phy(folder, labels=None)
    assert recording.unit_ids.tolist() == [0, 3, 5, 9]
    assert recording.units.index.name == "unit_id"
    for cluster, times in zip(recording.unit_ids, recording.spike_times):
        assert times.dtype == np.float64
        assert np.all(np.diff(times) >= 0)
        np.testing.assert_array_equal(times, np.sort(samples[cluster]) / SAMPLE_RATE)

    binner = SpikeBinner(0.02, t_start=0.0, t_stop=N_BINS * 0.02)
    counts = binner.fit_transform(recording)
    np.testing.assert_array_equal(counts, expected_counts(samples, [0, 3, 5, 9]))
    assert binner.n_spikes_dropped_ == 0
    assert binner.get_feature_names_out().tolist() == ["0", "3", "5", "9"]


def test_phy_labels_and_metadata_kept(phy):
    folder, _ = phy
    units = load_phy(folder, labels=None).units
    assert units["label"].tolist() == ["good", "mua", "noise", "unsorted"]
    assert units["KSLabel"].tolist() == ["good", "good", "mua", "mua"]
    assert units["ch"].tolist() == [4, 17, 17, 30]
    assert units["depth"].tolist() == [40.0, 340.0, 340.0, 600.0]
    # the info table's group is the curation label again, not a second source
    assert "group" not in units.columns


@pytest.mark.parametrize(
    "labels, expected",
    [
        (("good",), [0]),
        (("good", "mua"), [0, 3]),
        ("noise", [5]),
        (["unsorted", "good"], [0, 9]),
    ],
)
def test_phy_label_filter(phy, labels, expected):
    folder, samples = phy
    recording = load_phy(folder, labels=labels)
    assert recording.unit_ids.tolist() == expected
    assert recording.units["label"].isin([labels] if isinstance(labels, str) else labels).all()
    for cluster, times in zip(recording.unit_ids, recording.spike_times):
        assert len(times) == len(samples[cluster])


def test_phy_default_keeps_good_units(phy):
    folder, _ = phy
    assert load_phy(folder).unit_ids.tolist() == [0]


def test_phy_sorter_labels_without_curation(tmp_path):
    samples = spikes_per_cluster(np.random.default_rng(2), [1, 2, 4])
    folder = write_phy_folder(tmp_path, samples, ks_labels={1: "mua", 2: "good", 4: "good"})
    recording = load_phy(folder)
    assert recording.unit_ids.tolist() == [2, 4]
    assert recording.units["label"].tolist() == ["good", "good"]


def test_phy_without_label_files_every_cluster_is_unsorted(tmp_path):
    samples = spikes_per_cluster(np.random.default_rng(3), [1, 2])
    folder = write_phy_folder(tmp_path, samples)
    assert load_phy(folder, labels=None).units["label"].tolist() == ["unsorted", "unsorted"]
    with pytest.raises(ValueError, match=r"labels=\['good'\] matches no cluster.*'unsorted': 2"):
        load_phy(folder)


def test_phy_templates_when_clusters_are_missing(tmp_path):
    samples = spikes_per_cluster(np.random.default_rng(4), [0, 1, 7])
    folder = write_phy_folder(tmp_path, samples, clusters_file="spike_templates.npy")
    with pytest.warns(UserWarning, match="no spike_clusters.npy; reading spike_templates.npy"):
        recording = load_phy(folder, labels=None)
    assert recording.unit_ids.tolist() == [0, 1, 7]
    assert "templates" in recording.description
    counts = SpikeBinner(0.02, t_start=0.0, t_stop=N_BINS * 0.02).fit_transform(recording)
    np.testing.assert_array_equal(counts, expected_counts(samples, [0, 1, 7]))


def test_phy_one_dimensional_spike_times_and_given_sample_rate(tmp_path):
    samples = spikes_per_cluster(np.random.default_rng(5), [0, 1])
    folder = write_phy_folder(tmp_path, samples, column=False, params="")
    with pytest.raises(ValueError, match="sample rate of .* is unknown: it has no params.py"):
        load_phy(folder, labels=None)
    recording = load_phy(folder, sample_rate=SAMPLE_RATE / 2, labels=None)
    np.testing.assert_array_equal(
        recording.spike_times[1], np.sort(samples[1]) / (SAMPLE_RATE / 2)
    )


def test_phy_params_are_parsed_not_executed(tmp_path):
    samples = spikes_per_cluster(np.random.default_rng(6), [0])
    params = (
        "import os\nraise RuntimeError('params.py was executed')\n"
        "dat_path = os.path.join('a', 'b.dat')\nsample_rate = 25000.\n"
    )
    folder = write_phy_folder(tmp_path, samples, params=params)
    recording = load_phy(folder, labels=None)
    np.testing.assert_array_equal(recording.spike_times[0], np.sort(samples[0]) / 25000.0)


def test_phy_params_without_sample_rate(tmp_path):
    samples = spikes_per_cluster(np.random.default_rng(7), [0])
    folder = write_phy_folder(tmp_path, samples, params="sample_rate = 3e4 * 1\n")
    with pytest.raises(ValueError, match="params.py sets no sample_rate as a plain number"):
        load_phy(folder, labels=None)


@pytest.mark.parametrize("sample_rate", [0, -30000.0, float("nan"), "30k", True])
def test_phy_invalid_sample_rate(phy, sample_rate):
    folder, _ = phy
    with pytest.raises(ValueError, match=r"sample_rate=.*expected a positive number of Hz"):
        load_phy(folder, sample_rate=sample_rate)


def test_phy_missing_files(tmp_path, phy):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_phy(tmp_path / "absent")
    folder, _ = phy
    (folder / "spike_clusters.npy").unlink()
    with pytest.raises(FileNotFoundError, match="neither spike_clusters.npy nor spike_templates"):
        load_phy(folder)
    (folder / "spike_times.npy").unlink()
    with pytest.raises(FileNotFoundError, match="spike_times.npy does not exist"):
        load_phy(folder)


def test_phy_inconsistent_arrays(phy):
    folder, _ = phy
    clusters = np.load(folder / "spike_clusters.npy")
    np.save(folder / "spike_clusters.npy", clusters[:-1])
    with pytest.raises(
        ValueError, match=rf"{len(clusters)} spikes in spike_times.npy but {len(clusters) - 1} in "
        "spike_clusters.npy"
    ):
        load_phy(folder)
    np.save(folder / "spike_clusters.npy", np.c_[clusters, clusters])
    with pytest.raises(ValueError, match=r"spike_clusters.npy has shape \(\d+, 2\)"):
        load_phy(folder)
    np.save(folder / "spike_clusters.npy", clusters.astype(np.float64))
    with pytest.raises(ValueError, match="has dtype float64; expected integer cluster ids"):
        load_phy(folder)


def test_phy_negative_spike_times(phy):
    folder, _ = phy
    times = np.load(folder / "spike_times.npy").astype(np.int64)
    times[5] = -3
    np.save(folder / "spike_times.npy", times)
    with pytest.raises(ValueError, match=r"negative sample index \(-3 at spike 5\)"):
        load_phy(folder)


def test_phy_label_table_without_its_columns(phy):
    folder, _ = phy
    (folder / "cluster_group.tsv").write_text("cluster_id\tlabel\n0\tgood\n")
    with pytest.raises(ValueError, match=r"cluster_group.tsv has columns \['cluster_id', 'label'\]"):
        load_phy(folder)
    (folder / "cluster_group.tsv").write_text("cluster_id\tgroup\n0\tgood\n0\tmua\n")
    with pytest.raises(ValueError, match=r"lists cluster\(s\) \[0\] more than once"):
        load_phy(folder)


@pytest.mark.parametrize("labels", [(), [1], 3])
def test_phy_invalid_labels_argument(phy, labels):
    folder, _ = phy
    with pytest.raises(ValueError, match="labels=.* is not a label or a non-empty sequence"):
        load_phy(folder, labels=labels)


# pynapple objects


def test_pynapple_is_not_imported_with_the_package():
    code = (
        "import sys, sklearn_nldisco, sklearn_nldisco.preprocessing, sklearn_nldisco.datasets;"
        "assert 'pynapple' not in sys.modules, 'pynapple imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def nap():
    pynapple = pytest.importorskip("pynapple", reason="pynapple is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynapple's own notices at import
        yield pynapple


@pytest.fixture
def trains():
    rng = np.random.default_rng(8)
    return {key: np.sort(rng.uniform(0.0, 3.0, size=n)) for key, n in ((4, 30), (11, 7), (2, 55))}


def test_pynapple_tsgroup_counts_like_arrays(nap, trains):
    group = nap.TsGroup(
        {key: nap.Ts(times) for key, times in trains.items()},
        metadata={"area": ["CA1", "CA3", "V1"]},
    )
    keys = sorted(trains)  # TsGroup orders its keys
    assert list(group.keys()) == keys
    plain = SpikeBinner(0.1).fit([trains[key] for key in keys])
    binner = SpikeBinner(0.1).fit(group)
    np.testing.assert_array_equal(binner.bin_edges_, plain.bin_edges_)
    np.testing.assert_array_equal(
        binner.transform(group), plain.transform([trains[key] for key in keys])
    )
    assert binner.get_feature_names_out().tolist() == ["2", "4", "11"]
    frame = binner.set_output(transform="pandas").transform(group)
    assert frame.columns.tolist() == ["2", "4", "11"]
    np.testing.assert_array_equal(frame["11"].sum(), len(trains[11]))


def test_pynapple_tsgroup_keys_must_match_the_fit(nap, trains):
    group = nap.TsGroup({key: nap.Ts(times) for key, times in trains.items()})
    other = nap.TsGroup({key + 1: nap.Ts(times) for key, times in trains.items()})
    binner = SpikeBinner(0.1).fit(group)
    with pytest.raises(ValueError, match=r"X has units \['3', '5', '12'\] but SpikeBinner"):
        binner.transform(other)


def test_pynapple_ts_and_tsd_are_one_unit_by_their_timestamps(nap, trains):
    times = trains[2]
    expected = SpikeBinner(0.1, t_start=0.0, t_stop=3.0).fit_transform([times])
    ts = nap.Ts(times)
    # values far outside the grid: binning them instead of the times would show
    tsd = nap.Tsd(t=times, d=np.full(len(times), 100.0))
    for X in (ts, tsd, [tsd]):
        counts = SpikeBinner(0.1, t_start=0.0, t_stop=3.0).fit_transform(X)
        np.testing.assert_array_equal(counts, expected)
    group = nap.TsGroup({0: tsd, 1: nap.Ts(trains[4])})
    counts = SpikeBinner(0.1, t_start=0.0, t_stop=3.0).fit_transform(group)
    np.testing.assert_array_equal(counts[:, 0], expected[:, 0])
    assert counts[:, 0].sum() == len(times)


def test_pynapple_tsd_list_counts_like_arrays(nap, trains):
    arrays = [trains[key] for key in sorted(trains)]
    tsds = [nap.Tsd(t=times, d=-times) for times in arrays]
    np.testing.assert_array_equal(
        SpikeBinner(0.05).fit_transform(tsds), SpikeBinner(0.05).fit_transform(arrays)
    )


def test_pynapple_interval_set_as_intervals(nap, trains):
    arrays = [trains[key] for key in sorted(trains)]
    starts, ends = [0.2, 1.0, 2.5], [0.75, 1.9, 3.0]
    # metadata columns are not intervals
    epochs = nap.IntervalSet(start=starts, end=ends, metadata={"condition": [1.0, 2.0, 3.0]})
    expected = SpikeBinner(0.1, intervals=np.c_[starts, ends])
    binner = SpikeBinner(0.1, intervals=epochs)
    counts = binner.fit_transform(arrays)
    np.testing.assert_array_equal(counts, expected.fit_transform(arrays))
    np.testing.assert_array_equal(binner.intervals_, np.c_[starts, ends])
    np.testing.assert_array_equal(binner.interval_ids_, expected.interval_ids_)
    np.testing.assert_array_equal(clone(binner).fit_transform(arrays), counts)


def test_pynapple_time_support_as_intervals(nap, trains):
    epochs = nap.IntervalSet(start=[0.0, 2.0], end=[1.0, 3.0])
    group = nap.TsGroup({key: nap.Ts(times) for key, times in trains.items()}).restrict(epochs)
    arrays = [group[key].t for key in group.keys()]
    binner = SpikeBinner(0.1, intervals=group.time_support)
    counts = binner.fit_transform(group)
    np.testing.assert_array_equal(binner.intervals_, [[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(
        counts, SpikeBinner(0.1, intervals=[[0.0, 1.0], [2.0, 3.0]]).fit_transform(arrays)
    )
    assert counts.sum() == sum(len(times) for times in arrays)


def test_pynapple_tsgroup_in_spike_epochs(nap, trains):
    from sklearn_nldisco.preprocessing import SpikeEpochs

    group = nap.TsGroup({key: nap.Ts(times) for key, times in trains.items()})
    intervals = [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
    epochs = SpikeEpochs(group, intervals)
    assert epochs.unit_names.tolist() == ["2", "4", "11"]
    plain = SpikeEpochs([trains[key] for key in sorted(trains)], intervals)
    np.testing.assert_array_equal(
        SpikeBinner(0.1).fit_transform(epochs[[0, 2]]),
        SpikeBinner(0.1).fit_transform(plain[[0, 2]]),
    )


def test_pynapple_unsupported_objects(nap, trains):
    epochs = nap.IntervalSet(start=[0.0], end=[1.0])
    with pytest.raises(ValueError, match=r"X is a pynapple IntervalSet.*SpikeBinner\(intervals=\.\.\.\)"):
        SpikeBinner(0.1).fit(epochs)
    frame = nap.TsdFrame(t=np.arange(5.0), d=np.ones((5, 2)))
    with pytest.raises(ValueError, match="X is a pynapple TsdFrame; expected a TsGroup"):
        SpikeBinner(0.1).fit(frame)
    group = nap.TsGroup({0: nap.Ts(trains[2])})
    with pytest.raises(ValueError, match=r"X\[0\] is a pynapple TsGroup; expected a Ts or Tsd"):
        SpikeBinner(0.1).fit([group])
