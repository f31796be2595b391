"""Model selection over time, never over units: SpikeEpochs, the binner's unit check, scorers.

Scikit-learn splits ``X`` along its first axis. Given a list of spike
trains that axis is units; given a :class:`SpikeEpochs` it is epochs
(trials or time blocks), each binned whole, with all units.
"""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import NMF, PCA, FactorAnalysis
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _num_samples, check_consistent_length

from sklearn_nldisco import MatryoshkaSAE, SelectivityScorer
from sklearn_nldisco.datasets import Recording, make_reaching_session
from sklearn_nldisco.evaluation import (
    CoSmoothing,
    co_smoothing_scorer,
    explained_variance_scorer,
)
from sklearn_nldisco.models import explained_variance
from sklearn_nldisco.preprocessing import SpikeBinner, SpikeEpochs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST_SAE = dict(n_latents=8, k=2, max_iter=2, batch_size=64, random_state=0, device="cpu")
N_UNITS, N_TRIALS, TRIAL_S, GAP_S = 10, 24, 1.0, 0.5


def planted_session(seed=0, n_units=N_UNITS, n_trials=N_TRIALS):
    """Trials of 1 s with 0.5 s gaps; units 0-4 fire in 'left' trials, 5-9 in 'right'."""
    rng = np.random.default_rng(seed)
    starts = np.arange(n_trials) * (TRIAL_S + GAP_S)
    target = np.where(np.arange(n_trials) % 2 == 0, "left", "right")
    trains = []
    for unit in range(n_units):
        preferred = "left" if unit < n_units // 2 else "right"
        times = [rng.uniform(0, starts[-1] + TRIAL_S, rng.poisson(5 * n_trials))]
        for start, side in zip(starts, target):
            if side == preferred:
                times.append(start + rng.uniform(0, TRIAL_S, rng.poisson(40)))
        trains.append(np.sort(np.concatenate(times)))
    trials = pd.DataFrame({"start_time": starts, "stop_time": starts + TRIAL_S,
                           "target": target},
                          index=pd.Index(np.arange(100, 100 + n_trials), name="trial_id"))
    return trains, trials


@pytest.fixture(scope="module")
def session():
    return planted_session()


@pytest.fixture(scope="module")
def epochs(session):
    trains, trials = session
    recording = Recording(spike_times=trains, units=pd.DataFrame(
        index=pd.Index([f"u{i}" for i in range(N_UNITS)], name="unit_id")), trials=trials,
        session_id="planted")
    return SpikeEpochs.from_recording(recording)


# --------------------------------------------------------------------------
# SpikeEpochs as an array of epochs


def test_epochs_are_the_samples_and_indexing_keeps_every_unit(epochs):
    assert len(epochs) == N_TRIALS and epochs.shape == (N_TRIALS,)
    assert _num_samples(epochs) == N_TRIALS
    check_consistent_length(epochs, np.zeros(N_TRIALS))
    mask = np.arange(N_TRIALS) % 3 == 0
    for key, positions in [(2, [2]), (-1, [N_TRIALS - 1]), (slice(3, 9, 2), [3, 5, 7]),
                           (np.array([5, 1]), [5, 1]), ([0, -2], [0, N_TRIALS - 2]),
                           (mask, np.flatnonzero(mask)), (np.array([], dtype=int), [])]:
        subset = epochs[key]
        assert isinstance(subset, SpikeEpochs)
        np.testing.assert_array_equal(subset.intervals, epochs.intervals[positions])
        np.testing.assert_array_equal(subset.epoch_ids, epochs.epoch_ids[positions])
        assert subset.metadata["target"].tolist() == epochs.metadata["target"].iloc[
            positions].tolist()
        # all units, their whole trains, shared
        assert subset.n_units == N_UNITS
        assert all(a is b for a, b in zip(subset.spike_times, epochs.spike_times))
    # what scikit-learn's splitters call
    picked = _safe_indexing(epochs, np.array([4, 7]))
    assert picked.epoch_ids.tolist() == [104, 107]
    assert _safe_indexing(epochs, mask).n_epochs == mask.sum()


@pytest.mark.parametrize("key, message", [
    (N_TRIALS, "out of range"),
    (np.ones(3, dtype=bool), "boolean mask over"),
    (np.array([0.5]), "integer array"),
    ((0, 1), "one axis"),
])
def test_bad_epoch_indices_raise(epochs, key, message):
    with pytest.raises(IndexError, match=message):
        epochs[key]


def test_epochs_repr_is_short(epochs):
    text = repr(epochs)
    assert text == ("SpikeEpochs(n_epochs=24, n_units=10, span_s=(0.0, 35.5), "
                    "metadata=[trial_id, start_time, stop_time, target])")
    assert repr(epochs[[1, 2]]).startswith("SpikeEpochs(n_epochs=2, n_units=10, span_s=(1.5, 4.0)")


def test_from_recording_trials(epochs, session):
    trains, trials = session
    np.testing.assert_array_equal(epochs.intervals, trials[["start_time", "stop_time"]])
    assert epochs.epoch_ids.tolist() == trials.index.tolist()
    assert epochs.metadata["trial_id"].tolist() == trials.index.tolist()
    assert epochs.unit_names.tolist() == [f"u{i}" for i in range(N_UNITS)]
    recording = Recording(spike_times=trains, units=pd.DataFrame(index=range(N_UNITS)))
    with pytest.raises(ValueError, match="has no trials; pass intervals=None with block_dur"):
        SpikeEpochs.from_recording(recording)


def test_blocks_cover_every_spike(session):
    trains, _ = session
    recording = Recording(spike_times=trains, units=pd.DataFrame(index=range(N_UNITS)))
    blocks = SpikeEpochs.from_recording(recording, None, block_duration=2.0)
    assert blocks.metadata is None and blocks.epoch_ids.tolist() == list(range(len(blocks)))
    np.testing.assert_allclose(np.diff(blocks.intervals, axis=1), 2.0)
    np.testing.assert_array_equal(blocks.intervals[1:, 0], blocks.intervals[:-1, 1])
    binner = SpikeBinner(bin_size=0.5)
    counts = binner.fit_transform(blocks)
    assert binner.n_spikes_dropped_ == 0
    assert counts.sum() == sum(len(times) for times in trains)


@pytest.mark.parametrize("kwargs, message", [
    (dict(intervals=[[0.0, 2.0], [1.0, 3.0]]), "overlap"),
    (dict(intervals=[[0.0, 2.0]], block_duration=1.0), "block_duration only with intervals=None"),
    (dict(), "needs block_duration"),
    (dict(block_duration=-1.0), "positive number of seconds"),
    (dict(intervals=[[0.0, 1.0]], metadata=pd.DataFrame({"a": [1, 2]})), "2 rows for 1 epochs"),
    (dict(intervals=[[0.0, 1.0], [1, 2]], epoch_ids=[3, 3]), "repeated ids"),
    (dict(intervals=[[0.0, 1.0]], unit_names=["a"]), "1 names for 2 units"),
])
def test_bad_epochs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpikeEpochs([np.array([0.5]), np.array([1.5])], **kwargs)


# --------------------------------------------------------------------------
# SpikeBinner on epochs


def test_binner_bins_the_epochs_it_is_given(epochs, session):
    trains, trials = session
    binner = SpikeBinner(bin_size=0.25)
    counts = binner.fit_transform(epochs)
    reference = SpikeBinner(bin_size=0.25, intervals=trials).fit_transform(trains)
    np.testing.assert_array_equal(counts, reference)
    assert binner.feature_names_in_.tolist() == [f"u{i}" for i in range(N_UNITS)]
    # a test fold: its own epochs, in time order, whatever order they came in
    test = epochs[[9, 2, 5]]
    fold = binner.transform(test)
    assert fold.shape == (12, N_UNITS)
    rows = np.isin(reference_ids := SpikeBinner(bin_size=0.25, intervals=trials).fit(
        trains).interval_ids_, [2, 5, 9])
    np.testing.assert_array_equal(fold, reference[rows])
    np.testing.assert_array_equal(binner.interval_ids_, np.repeat([1, 2, 0], 4))
    assert binner.bin_edges_[0, 0] == trials["start_time"].iloc[2]
    np.testing.assert_array_equal(binner.intervals_, test.intervals)
    assert reference_ids.size == reference.shape[0]


def test_transform_metadata_labels_the_bins(epochs):
    binner = SpikeBinner(bin_size=0.25).fit(epochs)
    test = epochs[[9, 2]]
    metadata = binner.transform_metadata(test)
    counts = binner.transform(test)
    assert len(metadata) == len(counts)
    assert metadata["epoch_id"].tolist() == [102] * 4 + [109] * 4
    assert metadata["trial_id"].tolist() == metadata["epoch_id"].tolist()
    assert metadata["target"].tolist() == ["left"] * 4 + ["right"] * 4
    np.testing.assert_array_equal(metadata["time_in_epoch"], [0.0, 0.25, 0.5, 0.75] * 2)
    np.testing.assert_array_equal(metadata[["bin_start", "bin_stop"]], binner.bin_edges_)
    np.testing.assert_array_equal(metadata["interval_id"], binner.interval_ids_)
    clashing = SpikeEpochs(epochs.spike_times, epochs.intervals,
                           metadata=pd.DataFrame({"bin_start": np.arange(N_TRIALS)}))
    with pytest.raises(ValueError, match=re.escape("column(s) ['bin_start']")):
        binner.transform_metadata(clashing)
    with pytest.raises(TypeError, match="expects a SpikeEpochs"):
        binner.transform_metadata(epochs.spike_times)


def test_epochs_and_a_fixed_grid_do_not_mix(epochs, session):
    trains, trials = session
    with pytest.raises(ValueError, match="brings its own intervals, but intervals was given"):
        SpikeBinner(intervals=trials).fit(epochs)
    with pytest.raises(ValueError, match="t_start, t_stop were given"):
        SpikeBinner(t_start=0.0, t_stop=3.0).fit(epochs)
    with pytest.raises(ValueError, match="fitted on SpikeEpochs; expected SpikeEpochs"):
        SpikeBinner(bin_size=0.25).fit(epochs).transform(trains)
    with pytest.raises(ValueError, match="fitted on spike trains, with a grid fixed at fit"):
        SpikeBinner(bin_size=0.25).fit(trains).transform(epochs)
    with pytest.raises(ValueError, match="no interval holds a full bin"):
        SpikeBinner(bin_size=2.0).fit(epochs)


def test_epochs_of_other_units_raise(epochs):
    binner = SpikeBinner(bin_size=0.25).fit(epochs)
    renamed = SpikeEpochs(epochs.spike_times, epochs.intervals,
                          unit_names=[f"v{i}" for i in range(N_UNITS)])
    with pytest.raises(ValueError, match="splits neurons, not time"):
        binner.transform(renamed)


# --------------------------------------------------------------------------
# Grid search: folds are whole epochs with every unit


class _LoggingBinner(SpikeBinner):
    """A SpikeBinner that logs, at every call, the epochs and units it was given."""

    calls = []

    def fit(self, X, y=None):
        self.calls.append(("fit", X.epoch_ids.tolist(), X.n_units))
        return super().fit(X, y)

    def transform(self, X):
        self.calls.append(("transform", X.epoch_ids.tolist(), X.n_units))
        return super().transform(X)

    def fit_transform(self, X, y=None):
        # a Pipeline fits its first steps through fit_transform
        self.calls.append(("fit", X.epoch_ids.tolist(), X.n_units))
        return super().fit_transform(X, y)


@pytest.mark.parametrize("cv, groups", [
    (KFold(3), None),
    (KFold(4, shuffle=True, random_state=0), None),
    (GroupKFold(2), "target"),
])
def test_grid_search_folds_are_whole_epochs_with_every_unit(epochs, cv, groups):
    _LoggingBinner.calls = []
    pipe = Pipeline([("binner", _LoggingBinner()), ("pca", PCA())])
    search = GridSearchCV(
        pipe, {"binner__bin_size": [0.25, 0.5], "pca__n_components": [1, 2]}, cv=cv,
        scoring=explained_variance_scorer, error_score="raise", refit=False,
    ).fit(epochs, groups=None if groups is None else epochs.metadata[groups])
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    calls = _LoggingBinner.calls
    every = set(epochs.epoch_ids.tolist())
    fits = [ids for call, ids, _ in calls if call == "fit"]
    scored = [ids for call, ids, _ in calls if call == "transform"]
    n_splits = cv.get_n_splits()
    assert len(fits) == len(scored) == 4 * n_splits
    # every call saw all units and whole epochs; each split's test epochs are
    # the complement of its training epochs
    assert {n_units for _, _, n_units in calls} == {N_UNITS}
    for train, test in zip(fits, scored):
        assert set(train) | set(test) == every and not set(train) & set(test)
    if groups is not None:
        target = epochs.metadata.set_index("trial_id")["target"]
        assert all(target[test].nunique() == 1 for test in scored)


def test_grid_search_over_bin_size_and_k_scored_by_ev_and_selectivity(epochs):
    pipe = make_pipeline(SpikeBinner(), MatryoshkaSAE(**FAST_SAE))
    scoring = {
        "explained_variance": explained_variance_scorer,
        "selectivity": SelectivityScorer(variables=["target"], null="trial",
                                         trial_column="epoch_id", n_permutations=100,
                                         max_permutations=100, random_state=0),
    }
    search = GridSearchCV(pipe, {"spikebinner__bin_size": [0.25, 0.5],
                                 "matryoshkasae__k": [1, 2]},
                          cv=KFold(2), scoring=scoring, refit="explained_variance",
                          error_score="raise")
    search.fit(epochs)
    for name in scoring:
        assert np.all(np.isfinite(search.cv_results_[f"mean_test_{name}"]))
    best = search.best_estimator_
    # Pipeline.score and the scorer agree for the SAE (its score is the EV)
    assert explained_variance_scorer(best, epochs[:6]) == pytest.approx(best.score(epochs[:6]))


# --------------------------------------------------------------------------
# The unit split is refused


def test_cross_validation_over_spike_trains_raises_a_clear_error(session):
    trains, _ = session
    pipe = make_pipeline(SpikeBinner(bin_size=0.25), MatryoshkaSAE(**FAST_SAE))
    # 2 folds of 5 units: the same number of units, so only the unit check sees it
    with pytest.raises(ValueError, match="splits neurons, not time") as caught:
        cross_validate(pipe, trains, cv=KFold(2), error_score="raise")
    assert "none of its 5 units with spikes" in str(caught.value)
    assert "SpikeEpochs" in str(caught.value)
    # 3 folds: different numbers of units
    with pytest.raises(ValueError, match="fitted with 6 units.*splits neurons, not time"):
        GridSearchCV(pipe, {"matryoshkasae__k": [1, 2]}, cv=KFold(3),
                     error_score="raise").fit(trains)


def test_the_unit_check_leaves_same_units_alone(session):
    trains, _ = session
    binner = SpikeBinner(bin_size=0.25).fit(trains)
    counts = binner.transform(trains)
    # the same units with spikes in another order, or one unit changed
    shuffled = [np.random.default_rng(0).permutation(times) for times in trains]
    np.testing.assert_array_equal(binner.transform(shuffled), counts)
    changed = [trains[0][1:], *trains[1:]]
    assert binner.transform(changed).sum() == counts.sum() - 1
    # every unit changed raises; named units are compared by name instead
    with pytest.raises(ValueError, match="splits neurons"):
        binner.transform([times[1:] for times in trains])
    frame = pd.DataFrame({"unit": np.repeat(np.arange(N_UNITS), [len(t) for t in trains]),
                          "time": np.concatenate(trains)})
    named = SpikeBinner(bin_size=0.25).fit(frame)
    jittered = frame.assign(time=frame["time"] + 1e-4)
    assert named.transform(jittered).shape == counts.shape
    with pytest.raises(ValueError, match="not seen in fit.*splits neurons"):
        named.transform(frame.assign(unit=frame["unit"] + 100))


# --------------------------------------------------------------------------
# Scorers


# NMF's tolerance is not reached in a few hundred steps on these tiny folds
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("model, param, values", [
    (MatryoshkaSAE(**FAST_SAE), "k", [1, 2]),
    (PCA(), "n_components", [1, 3]),
    (NMF(init="nndsvda", tol=1e-3, max_iter=1000), "n_components", [1, 3]),
    (FactorAnalysis(), "n_components", [1, 3]),
], ids=["msae", "pca", "nmf", "fa"])
def test_explained_variance_scorer_in_grid_search(epochs, model, param, values):
    name = type(model).__name__.lower()
    pipe = make_pipeline(SpikeBinner(bin_size=0.25), model)
    search = GridSearchCV(pipe, {f"{name}__{param}": values}, cv=KFold(3),
                          scoring=explained_variance_scorer, error_score="raise").fit(epochs)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and np.all(scores < 1)
    # by hand: the EV of the last step's input, on the test epochs only
    best, test = search.best_estimator_, epochs[18:]
    counts = best[0].transform(test)
    fitted = best[-1]
    if hasattr(fitted, "inverse_transform"):
        rebuilt = fitted.inverse_transform(fitted.transform(counts))
    else:
        rebuilt = fitted.transform(counts) @ fitted.components_ + fitted.mean_
    assert explained_variance_scorer(best, test) == pytest.approx(
        explained_variance(counts, rebuilt))
    # the same scorer on arrays, without a Pipeline
    assert explained_variance_scorer(fitted, counts) == pytest.approx(
        explained_variance(counts, rebuilt))


def test_explained_variance_scorer_rejects_a_model_without_reconstruction(epochs):
    from sklearn.cluster import KMeans

    pipe = make_pipeline(SpikeBinner(bin_size=0.25), KMeans(2, n_init=1, random_state=0))
    pipe.fit(epochs)
    with pytest.raises(TypeError, match="cannot reconstruct with KMeans"):
        explained_variance_scorer(pipe, epochs)


def test_co_smoothing_scorer_in_grid_search(epochs):
    pipe = make_pipeline(SpikeBinner(bin_size=0.25),
                         CoSmoothing(PCA(), held_out=[0, 5], random_state=0))
    search = GridSearchCV(pipe, {"cosmoothing__estimator__n_components": [1, 2]},
                          cv=KFold(2), scoring=co_smoothing_scorer, error_score="raise")
    search.fit(epochs)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    # units 0 and 5 are predictable from their groups' shared trial modulation
    assert scores.max() > 0
    best = search.best_estimator_
    assert co_smoothing_scorer(best, epochs[:5]) == best.score(epochs[:5])
    with pytest.raises(TypeError, match="Pipeline ending in one.*ending in PCA"):
        co_smoothing_scorer(make_pipeline(SpikeBinner(), PCA()), epochs)


def test_selectivity_scorer_reads_the_test_folds_metadata(epochs):
    scorer = SelectivityScorer(variables=["target"], null="trial", trial_column="epoch_id",
                               n_permutations=200, max_permutations=200, random_state=0)
    pipe = make_pipeline(SpikeBinner(bin_size=0.25),
                         NMF(n_components=2, init="nndsvda", max_iter=500))
    train, test = epochs[:12], epochs[12:]
    pipe.fit(train)
    score = scorer(pipe, test)
    # both components follow one group of units, so one target each
    assert score == 1.0
    by_hand = scorer.score_latents(pipe.transform(test), pipe[0].transform_metadata(test))
    assert scorer.score_from_results(by_hand, 2) == score
    assert set(by_hand.loc[scorer.selective(by_hand), "condition"]) == {"left", "right"}
    # shuffled targets: nothing is selective
    rng = np.random.default_rng(1)
    shuffled = SpikeEpochs(test.spike_times, test.intervals, unit_names=test.unit_names,
                           metadata=test.metadata.assign(
                               target=rng.permutation(test.metadata["target"].to_numpy())))
    shuffled_score = scorer(pipe, shuffled)
    assert shuffled_score < score
    with pytest.raises(TypeError, match="first step is a SpikeBinner"):
        scorer(pipe[-1], test)


# --------------------------------------------------------------------------
# Recording's repr


def test_recording_repr_is_one_short_line():
    recording, _ = make_reaching_session(n_units=60, n_trials=40, random_state=0)
    text = repr(recording)
    assert len(text) < 200 and "\n" not in text
    n_spikes = sum(len(times) for times in recording.spike_times)
    assert text.startswith(f"Recording(session_id='simulated-reaching', n_units=60, "
                           f"n_spikes={n_spikes}, n_trials=40, behaviour=['hand_pos', ")
    assert "span_s=(" in text
    assert str(Recording([np.array([])], pd.DataFrame(index=[0]))) == (
        "Recording(session_id='', n_units=1, n_spikes=0, n_trials=None, behaviour=[], "
        "span_s=None)")
