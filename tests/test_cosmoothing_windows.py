"""Co-smoothing of window models: trials (interval_ids), OffsetFeatures, window transcoders."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from sklearn import config_context
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_nldisco import MatryoshkaTranscoder
from sklearn_nldisco.evaluation import (
    CoSmoothing,
    GaussianSmoother,
    OffsetFeatures,
    co_smoothing,
)
from sklearn_nldisco.preprocessing import SpikeBinner, TimeWindows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RASTERS = DATA / "datahigh_ex2_rawspiketrains.mat"


def _requests(step):
    return step.set_fit_request(interval_ids=True).set_transform_request(interval_ids=True)


@pytest.fixture
def routing():
    with config_context(enable_metadata_routing=True):
        yield


def trials_of_counts(n_trials=12, n_bins=60, n_units=16, seed=0):
    """Poisson counts driven by one slow latent per trial; each trial's rows consecutive."""
    rng = np.random.default_rng(seed)
    time = np.arange(n_bins)
    latent = np.vstack([np.sin(2 * np.pi * time / n_bins + rng.uniform(0, 2 * np.pi))[:, None]
                        for _ in range(n_trials)])
    loadings = rng.uniform(0.5, 1.0, size=(1, n_units))
    X = rng.poisson(np.exp(latent @ loadings - 0.5)).astype(np.float64)
    return X, np.repeat(np.arange(n_trials), n_bins)


# ------------------------------------------------------------------ OffsetFeatures
def test_offset_features_match_a_loop_and_stay_in_their_interval():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(17, 3))
    ids = np.repeat([4, 1, 9], [5, 8, 4])
    offsets = [-2, 0, 3]
    out = OffsetFeatures(offsets).fit_transform(X, interval_ids=ids)
    expected = np.empty_like(out)
    for row in range(len(X)):
        members = np.flatnonzero(ids == ids[row])
        for block, offset in enumerate(offsets):
            source = min(max(row + offset, members[0]), members[-1])
            expected[row, 3 * block: 3 * block + 3] = X[source]
    np.testing.assert_array_equal(out, expected)
    mean = OffsetFeatures(offsets, combine="mean", interval_ids=ids).fit_transform(X)
    np.testing.assert_allclose(mean, out.reshape(len(X), 3, 3).mean(axis=1))


def test_offset_features_centre_time_windows():
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    ids = np.repeat([0, 1], 10)
    n_bins = 5
    centred = make_pipeline(TimeWindows(n_bins), OffsetFeatures([n_bins // 2]))
    windows = centred.fit_transform(X, timewindows__interval_ids=ids,
                                    offsetfeatures__interval_ids=ids)
    # an interior row's window holds the bins t - 2 .. t + 2, oldest first
    for row in (2, 5, 7, 12, 17):
        np.testing.assert_array_equal(windows[row], X[row - 2: row + 3].ravel())
    # at a trial's start the window's edge rule repeats its first bin; near its
    # end the trial's last window stands in
    np.testing.assert_array_equal(windows[10], X[[10, 10, 10, 11, 12]].ravel())
    np.testing.assert_array_equal(windows[9], X[[5, 6, 7, 8, 9]].ravel())
    np.testing.assert_array_equal(windows[8], X[[5, 6, 7, 8, 9]].ravel())


OFFSET_EXPECTED_FAILURES = {
    "check_methods_sample_order_invariance": "rows are consecutive time bins: a row takes "
                                             "its neighbours' features by design",
    "check_methods_subset_invariance": "a row takes its neighbours' features, so a subset "
                                       "of rows gives other features by design",
}


def _offset_expected_failures(estimator):
    # offset 0 alone is the identity, which passes them
    return OFFSET_EXPECTED_FAILURES if np.any(np.asarray(estimator.offsets) != 0) else {}


@parametrize_with_checks([OffsetFeatures(), OffsetFeatures([-1, 2], combine="mean")],
                         expected_failed_checks=_offset_expected_failures)
def test_offset_features_sklearn_compatible(estimator, check):
    check(estimator)


def test_offset_features_names_and_errors():
    X = np.ones((4, 2))
    features = OffsetFeatures([0, 1]).fit(X)
    assert features.get_feature_names_out(["a", "b"]).tolist() == ["a@+0", "b@+0", "a@+1",
                                                                    "b@+1"]
    mean = OffsetFeatures([0, 1], combine="mean").fit(X)
    assert mean.get_feature_names_out(["a", "b"]).tolist() == ["a", "b"]
    for offsets in ([], [0.5], [[0, 1]], "ab"):
        with pytest.raises(ValueError, match="offsets"):
            OffsetFeatures(offsets).fit(X)
    with pytest.raises(ValueError, match="interval_ids must be 1-D"):
        OffsetFeatures([0]).fit(X, interval_ids=[0, 0, 1])
    with pytest.raises(ValueError, match="combine"):
        OffsetFeatures([0], combine="median").fit(X)


# ------------------------------------------------------------------ GaussianSmoother
def test_gaussian_smoother_smooths_each_trial_on_its_own():
    rng = np.random.default_rng(2)
    X = rng.poisson(1.0, size=(30, 4)).astype(np.float64)
    ids = np.repeat([0, 1, 2], [8, 12, 10])
    smoothed = GaussianSmoother(2.0).fit_transform(X, interval_ids=ids)
    for trial in range(3):
        rows = ids == trial
        np.testing.assert_allclose(smoothed[rows], GaussianSmoother(2.0).fit_transform(X[rows]))
    np.testing.assert_array_equal(GaussianSmoother(2.0, interval_ids=ids).fit_transform(X),
                                  smoothed)
    # a trial's smoothing does not change when its neighbour does
    changed = X.copy()
    changed[ids == 1] += 5.0
    again = GaussianSmoother(2.0).fit_transform(changed, interval_ids=ids)
    np.testing.assert_array_equal(again[ids != 1], smoothed[ids != 1])
    assert not np.allclose(GaussianSmoother(2.0).fit_transform(changed)[ids == 0],
                           smoothed[ids == 0])


# ------------------------------------------------------------------ CoSmoothing with trials
def test_smoothing_baseline_never_reads_another_trial():
    X, ids = trials_of_counts()
    train, test = slice(0, 480), slice(480, None)
    model = CoSmoothing(GaussianSmoother(3.0), held_out=0.25).fit(X[train],
                                                                  interval_ids=ids[train])
    rates = model.predict(X[test], interval_ids=ids[test])
    changed = X[test].copy()
    other = ids[test] == ids[test][-1]
    changed[other] = changed[other][::-1]
    np.testing.assert_array_equal(model.predict(changed, interval_ids=ids[test])[~other],
                                  rates[~other])
    # without the trials the smoothing reaches across the join
    pooled = model.predict(changed)
    assert not np.allclose(pooled[~other], rates[~other])
    assert model.score(X[test], interval_ids=ids[test]) > 0
    assert model.score_units(X[test], interval_ids=ids[test]).shape == (4,)


def test_pipeline_needs_routing_for_trials():
    X, ids = trials_of_counts()
    model = CoSmoothing(make_pipeline(GaussianSmoother(1.0), PCA(n_components=2)))
    with pytest.raises(ValueError, match="enable_metadata_routing"):
        model.fit(X, interval_ids=ids)
    with pytest.raises(ValueError, match="interval_ids must be 1-D"):
        CoSmoothing(GaussianSmoother(1.0)).fit(X, interval_ids=ids[:-1])
    with pytest.raises(ValueError, match="given together"):
        co_smoothing(GaussianSmoother(1.0), X[:480], X[480:], interval_ids_train=ids[:480])


def test_window_model_gets_the_trials_through_routing(routing):
    X, ids = trials_of_counts()
    train, test = slice(0, 480), slice(480, None)
    window_model = make_pipeline(_requests(TimeWindows(4)), PCA(n_components=3))
    model = CoSmoothing(window_model, held_out=[0, 5, 9]).fit(X[train], interval_ids=ids[train])
    # fitted on windows that stop at each trial's start
    windows = TimeWindows(4, interval_ids=ids[train]).fit_transform(
        X[train][:, model.held_in_units_])
    np.testing.assert_allclose(np.abs(model.estimator_[-1].components_),
                               np.abs(PCA(n_components=3).fit(windows).components_), atol=1e-8)
    # a test trial's rates do not depend on the trial before it
    rates = model.predict(X[test], interval_ids=ids[test])
    changed = X[test].copy()
    first = ids[test] == ids[test][0]
    changed[first] = changed[first][::-1]
    np.testing.assert_array_equal(model.predict(changed, interval_ids=ids[test])[~first],
                                  rates[~first])
    # the same score from the meta-estimator and the function
    result = co_smoothing(window_model, X[train], X[test], held_out=[0, 5, 9],
                          interval_ids_train=ids[train], interval_ids_test=ids[test])
    assert result.bits_per_spike == pytest.approx(model.score(X[test], interval_ids=ids[test]))


def test_covering_and_centred_readouts_run_within_trials(routing):
    X, ids = trials_of_counts()
    n_bins = 5
    cover = make_pipeline(_requests(TimeWindows(n_bins)), PCA(n_components=3),
                          _requests(OffsetFeatures(range(n_bins), combine="mean")))
    centred = make_pipeline(_requests(TimeWindows(n_bins)),
                            _requests(OffsetFeatures([n_bins // 2])), PCA(n_components=3))
    for window_model in (cover, centred):
        result = co_smoothing(window_model, X[:480], X[480:], held_out=0.25,
                              interval_ids_train=ids[:480], interval_ids_test=ids[480:])
        # one shared latent drives every unit: the held-in units predict the others
        assert result.bits_per_spike > 0.05


# ------------------------------------------------------------------ window transcoders
@pytest.mark.slow
def test_window_transcoder_in_a_pipeline(routing):
    X, ids = trials_of_counts()
    source, target = X[:, :12], X[:, 12:]
    transcoder = make_pipeline(
        _requests(TimeWindows(3)),
        MatryoshkaTranscoder(n_latents=16, k=4, max_iter=30, device="cpu", random_state=0),
    )
    transcoder.fit(source[:480], target[:480], interval_ids=ids[:480])
    assert transcoder[-1].n_features_in_ == 36
    predicted = transcoder.predict(source[480:], interval_ids=ids[480:])
    codes = transcoder.transform(source[480:], interval_ids=ids[480:])
    assert predicted.shape == (240, 4) and codes.shape == (240, 16)
    # a trial's predictions read only its own windows
    changed = source[480:].copy()
    first = ids[480:] == ids[480]
    changed[first] = 0.0
    np.testing.assert_array_equal(
        transcoder.predict(changed, interval_ids=ids[480:])[~first], predicted[~first])
    # the trials reach the windows: without them the first bins of a trial change
    assert not np.allclose(transcoder.predict(changed)[~first], predicted[~first])


def test_window_transcoder_score_without_routing():
    # without metadata routing the trials go to the constructor, one array at a time
    X, ids = trials_of_counts()
    source, target = X[:, :12], X[:, 12:]
    transcoder = make_pipeline(
        TimeWindows(3, interval_ids=ids[:480]),
        MatryoshkaTranscoder(n_latents=16, k=4, max_iter=30, device="cpu", random_state=0),
    ).fit(source[:480], target[:480])
    transcoder.set_params(timewindows__interval_ids=ids[480:])
    predicted = transcoder.predict(source[480:])
    residual = ((target[480:] - predicted) ** 2).sum(axis=0)
    total = ((target[480:] - target[480:].mean(axis=0)) ** 2).sum(axis=0)
    # the transcoder's score: explained variance pooled over targets
    assert transcoder.score(source[480:], target[480:]) == pytest.approx(
        1 - residual.sum() / total.sum())
    assert transcoder.transform(source[480:]).shape == (240, 16)


def test_window_transcoder_co_smoothing(routing):
    X, ids = trials_of_counts(n_trials=16)
    split = 12 * 60
    transcoder = make_pipeline(
        _requests(GaussianSmoother(2.0)), _requests(TimeWindows(3)),
        MatryoshkaTranscoder(n_latents=16, k=4, max_iter=50, device="cpu", random_state=0),
    )
    result = co_smoothing(transcoder, X[:split], X[split:], held_out=0.25,
                          interval_ids_train=ids[:split], interval_ids_test=ids[split:])
    assert result.bits_per_spike > 0.05
    assert result.model.estimator_[-1].n_features_in_ == 3 * 12


# ------------------------------------------------------------------ real spike trains
@pytest.fixture(scope="module")
def pmd_counts():
    if not RASTERS.exists():
        pytest.skip(f"real recordings not present at {RASTERS}")
    trials = scipy.io.loadmat(RASTERS, squeeze_me=True, struct_as_record=False)["D"]
    rasters = [np.asarray(trial.data) for trial in trials][::4]
    durations = np.array([raster.shape[1] / 1000 for raster in rasters])
    offsets = np.r_[0.0, np.cumsum(durations + 0.3)[:-1]]
    spikes = [np.concatenate([np.flatnonzero(raster[unit]) / 1000 + offset
                              for raster, offset in zip(rasters, offsets)])
              for unit in range(rasters[0].shape[0])]
    binner = SpikeBinner(bin_size=0.02, intervals=np.column_stack([offsets, offsets + durations]))
    return binner.fit_transform(spikes), binner.interval_ids_


def test_pmd_smoothing_baseline_within_trials(pmd_counts):
    counts, ids = pmd_counts
    # every other trial tests (the trials alternate no condition: the first half is reach1)
    test = ids % 2 == 1
    result = co_smoothing(GaussianSmoother(2.0), counts[~test], counts[test],
                          interval_ids_train=ids[~test], interval_ids_test=ids[test])
    assert result.held_out_units.size == 15
    assert result.bits_per_spike > 0.05
