"""Agreement across seeds: Hungarian matching of decoder dictionaries."""

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.interpretation._consistency import (
    fit_seeds,
    match_latents,
    seed_agreement,
    stable_latents,
)


def _dictionary(n_latents=12, n_features=40, seed=0):
    return np.random.RandomState(seed).standard_normal((n_latents, n_features))


class _Fitted:
    """Stands for a fitted model: only the attributes the functions read."""

    def __init__(self, components, level_sizes=None):
        self.components_ = components
        if level_sizes is not None:
            self.level_sizes_ = np.asarray(level_sizes)


def test_identical_runs_agree_perfectly():
    dictionary = _dictionary()
    index_a, index_b, cosine = match_latents(dictionary, dictionary)
    np.testing.assert_array_equal(index_a, np.arange(12))
    np.testing.assert_array_equal(index_b, np.arange(12))
    np.testing.assert_allclose(cosine, 1.0)

    table = seed_agreement([dictionary, dictionary.copy()], level_sizes=(3, 6, 12))
    assert table["level"].tolist() == [0, 1, 2]
    assert table["n_latents"].tolist() == [3, 6, 12]
    np.testing.assert_allclose(table["mean_cosine"], 1.0)
    np.testing.assert_allclose(table["fraction_above_0.7"], 1.0)
    np.testing.assert_allclose(table["fraction_above_0.9"], 1.0)


def test_match_latents_takes_fitted_models_like_arrays():
    a, b = _dictionary(), _dictionary(seed=1)
    from_arrays = match_latents(a, b)
    from_models = match_latents(_Fitted(a), _Fitted(b))
    for array_result, model_result in zip(from_arrays, from_models):
        np.testing.assert_array_equal(array_result, model_result)


def test_hungarian_matching_recovers_a_permutation():
    rng = np.random.RandomState(1)
    dictionary = _dictionary(n_latents=20, n_features=30)
    permutation = rng.permutation(20)
    # rescaled rows: matching is on direction only
    scaled = dictionary[permutation] * rng.uniform(0.5, 3.0, size=(20, 1))
    index_a, index_b, cosine = match_latents(dictionary, scaled)
    np.testing.assert_array_equal(permutation[index_b], index_a)
    np.testing.assert_allclose(cosine, 1.0)


def test_matching_beats_greedy_assignment():
    # greedy pairs a0 with b0 (0.9) and leaves a1 with b1 (-0.6);
    # the optimal assignment crosses them (0.8 + 0.44)
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.9, np.sqrt(1 - 0.81)], [0.8, -0.6]])
    similarity = a @ b.T
    _, index_b, cosine = match_latents(a, b)
    assert index_b.tolist() == [1, 0]
    best = max(similarity[0, 0] + similarity[1, 1], similarity[0, 1] + similarity[1, 0])
    assert cosine.sum() == pytest.approx(best)


def test_sign_matters_unless_absolute():
    dictionary = _dictionary()
    flipped = dictionary * np.where(np.arange(12) % 2 == 0, 1.0, -1.0)[:, None]
    _, index_b, signed = match_latents(dictionary, flipped)
    assert np.all(signed[::2] == pytest.approx(1.0))
    assert np.all(signed[1::2] < 0.9)
    _, index_b, unsigned = match_latents(dictionary, flipped, absolute=True)
    np.testing.assert_array_equal(index_b, np.arange(12))
    np.testing.assert_allclose(unsigned, 1.0)


def test_unrelated_dictionaries_in_high_dimension_barely_match():
    a = _dictionary(n_latents=16, n_features=500, seed=0)
    b = _dictionary(n_latents=16, n_features=500, seed=1)
    _, _, cosine = match_latents(a, b)
    assert cosine.mean() < 0.2
    table = seed_agreement([a, b], thresholds=(0.5,))
    assert table["fraction_above_0.5"].item() == 0.0
    assert not stable_latents([a, b], threshold=0.5)["stable"].any()


def test_rectangular_matching_and_dead_latents():
    dictionary = _dictionary(n_latents=6, n_features=10)
    larger = np.vstack([np.zeros((1, 10)), dictionary[::-1], _dictionary(3, 10, seed=5)])
    index_a, index_b, cosine = match_latents(dictionary, larger)
    np.testing.assert_array_equal(index_b, np.arange(6, 0, -1))
    np.testing.assert_allclose(cosine, 1.0)
    # a dead (zero) latent has cosine 0 with everything, never NaN
    _, _, cosine = match_latents(larger[:1], dictionary)
    assert cosine.tolist() == [0.0]


def test_seed_agreement_matches_within_each_level_prefix():
    dictionary = _dictionary(n_latents=8)
    # the two halves swap places: the whole dictionaries agree, the first
    # level (latents 0-3) shares nothing
    swapped = np.vstack([dictionary[4:], dictionary[:4]])
    table = seed_agreement([dictionary, swapped], level_sizes=(4, 8))
    first, whole = table.loc[0], table.loc[1]
    assert first["mean_cosine"] < 0.6
    assert first["fraction_above_0.9"] == 0.0
    assert whole["mean_cosine"] == pytest.approx(1.0)


def test_seed_agreement_pairs_and_fitted_level_sizes():
    dictionary = _dictionary(n_latents=8)
    runs = [_Fitted(dictionary + 0.01 * _dictionary(8, seed=s), (2, 4, 8)) for s in range(3)]
    table = seed_agreement(runs)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == [
        "run_a", "run_b", "level", "n_latents", "mean_cosine",
        "fraction_above_0.7", "fraction_above_0.9",
    ]
    pairs = table[["run_a", "run_b"]].drop_duplicates().values.tolist()
    assert pairs == [[0, 1], [0, 2], [1, 2]]
    assert table["n_latents"].tolist() == [2, 4, 8] * 3
    referenced = seed_agreement(runs, reference=2)
    assert referenced[["run_a", "run_b"]].drop_duplicates().values.tolist() == [[2, 0], [2, 1]]


def test_stable_latents_flags_latents_found_in_every_run():
    rng = np.random.RandomState(3)
    shared = rng.standard_normal((4, 60))
    runs = []
    for seed in range(3):
        own = np.random.RandomState(10 + seed).standard_normal((2, 60))
        order = np.random.RandomState(20 + seed).permutation(6)
        runs.append(np.vstack([shared, own])[order])
    # run 2 loses one shared latent: it is stable in runs 0-1 only
    lost = np.flatnonzero(np.random.RandomState(22).permutation(6) == 0)[0]
    runs[2][lost] = rng.standard_normal(60)
    table = stable_latents(runs, threshold=0.9, level_sizes=(3, 6))
    assert len(table) == 6
    assert table["level"].tolist() == [0, 0, 0, 1, 1, 1]
    reference_order = np.random.RandomState(20).permutation(6)
    expected = np.isin(reference_order, [1, 2, 3])
    np.testing.assert_array_equal(table["stable"].to_numpy(), expected)
    np.testing.assert_allclose(table.loc[expected, "min_cosine"], 1.0)
    # the reported match is the same latent in the other run
    other_order = np.random.RandomState(21).permutation(6)
    for latent in np.flatnonzero(expected):
        matched = table.loc[latent, "match_run_1"]
        assert other_order[matched] == reference_order[latent]
    assert {"cosine_run_1", "match_run_2", "cosine_run_2"} <= set(table.columns)
    assert "match_run_0" not in table.columns


def test_stable_latents_with_a_signed_baseline():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((300, 5)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    pca = PCA(n_components=3).fit(X)
    flipped = -pca.components_
    assert not stable_latents([pca, flipped])["stable"].any()
    assert stable_latents([pca, flipped], absolute=True)["stable"].all()


@pytest.mark.slow  # starts a pool of worker processes (n_jobs=2)
def test_fit_seeds_sets_one_random_state_per_clone_and_is_deterministic(one_torch_thread):
    rng = np.random.RandomState(0)
    X = rng.poisson(2.0, size=(200, 10)).astype(float)
    estimator = MatryoshkaSAE(n_latents=16, k=2, max_iter=3, batch_size=64)
    runs = fit_seeds(estimator, X, seeds=(3, 1), n_jobs=1)
    assert [run.random_state for run in runs] == [3, 1]
    assert estimator.random_state is None
    assert not hasattr(estimator, "components_")
    assert not np.allclose(runs[0].components_, runs[1].components_)
    again = fit_seeds(estimator, X, seeds=(3, 1), n_jobs=2)
    for first, second in zip(runs, again):
        np.testing.assert_array_equal(first.components_, second.components_)


@pytest.fixture(scope="module")
def planted_counts():
    """Six non-negative features on disjoint groups of 5 of 30 units."""
    rng = np.random.RandomState(0)
    features = np.zeros((6, 30))
    units = rng.permutation(30).reshape(6, 5)
    for feature, group in enumerate(units):
        features[feature, group] = rng.uniform(2.0, 4.0, size=5)
    activity = rng.exponential(1.0, size=(2000, 6)) * (rng.rand(2000, 6) < 0.15)
    counts = rng.poisson(activity @ features + 0.1).astype(float)
    return features, counts


def test_two_seeds_agree_on_planted_features(planted_counts, one_torch_thread):
    features, counts = planted_counts
    estimator = MatryoshkaSAE(
        n_latents=16, k=2, level_sizes=(4, 8, 16), max_iter=100, batch_size=128,
        early_stopping=False, aux_k=8,
    )
    runs = fit_seeds(estimator, counts, seeds=(0, 1))
    table = stable_latents(runs, threshold=0.9)
    stable = table.loc[table["stable"], "latent"].to_numpy()
    assert len(stable) >= 2
    # what both seeds agree on is planted structure, not a shared artefact
    _, _, cosine = match_latents(runs[0].components_[stable], features)
    assert np.all(cosine > 0.8)
    agreement = seed_agreement(runs)
    assert agreement["level"].tolist() == [0, 1, 2]
    assert agreement["mean_cosine"].iloc[-1] > 0.3


@pytest.mark.parametrize(
    "runs, match",
    [
        ([_dictionary(4, 10), _dictionary(4, 11)], "same number of features"),
        ([_dictionary(4, 10)], "at least two runs"),
        ([], "at least two runs"),
        ([np.zeros((0, 10)), _dictionary(4, 10)], "at least one latent"),
        ([np.ones(10), _dictionary(4, 10)], "2D array"),
        ([np.full((2, 3), np.nan), np.ones((2, 3))], "finite"),
        ([PCA(n_components=2), _dictionary(2, 10)], "fit it first"),
    ],
)
def test_seed_agreement_rejects_bad_runs(runs, match):
    with pytest.raises(ValueError, match=match):
        seed_agreement(runs)


def test_bad_arguments_name_the_argument():
    a, b = _dictionary(4, 10), _dictionary(4, 10, seed=1)
    with pytest.raises(ValueError, match="components_a and components_b"):
        match_latents(a, _dictionary(4, 9))
    with pytest.raises(ValueError, match="components_b"):
        match_latents(a, np.empty((0, 10)))
    with pytest.raises(ValueError, match="components_b is an estimator without"):
        match_latents(a, PCA(n_components=2))
    with pytest.raises(ValueError, match="level_sizes"):
        seed_agreement([a, b], level_sizes=(2, 8))
    with pytest.raises(ValueError, match="level_sizes"):
        seed_agreement([a, b], level_sizes=(3, 2))
    with pytest.raises(ValueError, match="level_sizes_"):
        seed_agreement([_Fitted(a, (2, 4)), _Fitted(b, (1, 4))])
    with pytest.raises(ValueError, match="thresholds"):
        seed_agreement([a, b], thresholds=(1.5,))
    with pytest.raises(ValueError, match="reference"):
        stable_latents([a, b], reference=2)
    with pytest.raises(TypeError, match="random_state"):
        fit_seeds(object(), a)
    with pytest.raises(ValueError, match="seeds"):
        fit_seeds(PCA(), a, seeds=())
    with pytest.raises(ValueError, match="distinct"):
        fit_seeds(PCA(), a, seeds=(1, 1))
