"""Per-level ``k``: each Matryoshka level with its own budget and selection."""

import pickle

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from sklearn_nldisco.models import MatryoshkaSAE, MatryoshkaTranscoder, check_level_k

FAST = dict(n_latents=32, max_iter=4, batch_size=64, device="cpu", n_threads=1,
            random_state=0)


def _data(n_rows=640, n_features=16, seed=0):
    rng = np.random.RandomState(seed)
    sources = rng.exponential(1.0, size=(n_rows, 6)) * (rng.uniform(size=(n_rows, 6)) < 0.25)
    X = rng.poisson(0.2 + sources @ rng.uniform(0.0, 1.5, size=(6, n_features)))
    return X.astype(np.float64)


@pytest.fixture(scope="module")
def fitted():
    X = _data()
    return MatryoshkaSAE(k={8: 2, 32: 5}, **FAST).fit(X), X


@pytest.mark.parametrize("k, level_sizes, match", [
    ({8: 2, 16: 4}, None, "level_sizes"),            # last key is not n_latents
    ({8: 2, 32: 4}, (16, 32), "equal level_sizes"),  # keys differ from level_sizes
    ({8: 4, 32: 2}, None, "non-decreasing"),
    ({8: 9, 32: 9}, None, r"budget 9"),              # more than its level holds
    ({8: 0, 32: 2}, None, r"budget 0"),
    ({8: 2.5, 32: 4}, None, "integer"),
    ({}, None, "empty"),
])
def test_invalid_level_k_is_a_value_error(k, level_sizes, match):
    model = MatryoshkaSAE(k=k, level_sizes=level_sizes, **FAST)
    with pytest.raises(ValueError, match=match):
        model.fit(_data(n_rows=80))


def test_level_k_needs_batchtopk_and_fit():
    X = _data(n_rows=80)
    with pytest.raises(ValueError, match="sparsity='batchtopk'"):
        MatryoshkaSAE(k={8: 2, 32: 4}, sparsity="topk", **FAST).fit(X)
    with pytest.raises(ValueError, match="pursuit"):
        MatryoshkaSAE(k={8: 2, 32: 4}, code_refit="pursuit", **FAST).fit(X)
    with pytest.raises(ValueError, match="partial_fit needs an int k"):
        MatryoshkaSAE(k={8: 2, 32: 4}, **FAST).partial_fit(X)


def test_check_level_k_orders_keys_and_sets_levels():
    assert check_level_k({32: 4, 8: 2}, None, 32) == ((8, 32), (2, 4))
    assert check_level_k({8: 2, 32: 4}, [8, 32], 32) == ((8, 32), (2, 4))


def test_keys_set_level_sizes_and_one_threshold_per_level(fitted):
    model, _ = fitted
    assert model.level_sizes_.tolist() == [8, 32]
    assert model.threshold_.shape == (2,)
    assert np.all(np.isfinite(model.threshold_))


def test_each_level_uses_its_own_budget_at_inference(fitted):
    """Level i reconstructs from latents [0, m_i) above its own threshold:
    a mean of k_i active latents per row on the calibration rows (the
    training rows), and none beyond the level."""
    model, X = fitted
    for level, (size, budget) in enumerate([(8, 2), (32, 5)]):
        codes = model.transform(X, level=level)
        active = codes > 0
        assert not active[:, size:].any()
        # the threshold is calibrated on the training rows; X holds them and
        # the held-out rows, so the mean is near k_i, not exactly it
        assert abs(active.sum(axis=1).mean() - budget) < 0.35 * budget
        # the reconstruction of the level is the decoding of exactly these codes
        expected = model.inverse_transform(codes, level=level)
        np.testing.assert_allclose(model.reconstruct(X, level=level), expected,
                                   rtol=1e-4, atol=1e-4)


def test_level_budget_is_exact_on_calibration_rows():
    """On the rows the thresholds were calibrated on, each level's mean L0
    is exactly its budget (no validation split: every row calibrates)."""
    X = _data()
    model = MatryoshkaSAE(k={8: 2, 32: 5}, early_stopping=False, **FAST).fit(X)
    for level, budget in enumerate([2, 5]):
        codes = model.transform(X.astype(np.float32), level=level)
        assert np.count_nonzero(codes) == budget * X.shape[0]


def test_transform_is_the_union_of_the_levels_selections(fitted):
    model, X = fitted
    codes = model.transform(X)
    union = np.zeros(codes.shape, dtype=bool)
    for level in range(2):
        union |= model.transform(X, level=level) > 0
    np.testing.assert_array_equal(codes > 0, union)


def test_score_is_the_last_levels_reconstruction(fitted):
    model, X = fitted
    from sklearn_nldisco.models import explained_variance

    assert model.score(X) == pytest.approx(
        explained_variance(X, model.reconstruct(X, level=-1)))


def test_pickle_round_trip(fitted):
    model, X = fitted
    loaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.reconstruct(X, level=0), model.reconstruct(X, level=0))
    assert loaded.get_params()["k"] == {8: 2, 32: 5}


def test_transcoder_takes_a_per_level_k():
    X = _data()
    Y = X[:, :5] * 2.0
    model = MatryoshkaTranscoder(k={16: 2, 32: 3}, **FAST).fit(X, Y)
    assert model.threshold_.shape == (2,)
    first = model.predict(X, level=0)
    assert first.shape == Y.shape and np.all(np.isfinite(first))


def test_int_k_keeps_a_scalar_threshold():
    model = MatryoshkaSAE(k=3, **FAST).fit(_data(n_rows=200))
    assert np.ndim(model.threshold_) == 0


def test_grid_search_over_per_level_k():
    X = _data(n_rows=400)
    search = GridSearchCV(
        MatryoshkaSAE(**dict(FAST, max_iter=2)),
        {"k": [{8: 2, 32: 2}, {8: 2, 32: 6}, 4]}, cv=2,
    ).fit(X)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_["k"] in ({8: 2, 32: 2}, {8: 2, 32: 6}, 4)


@pytest.mark.parametrize("k", [3, {8: 2, 32: 5}], ids=["shared", "per-level"])
@pytest.mark.parametrize("sparse_output", [False, True])
def test_transform_of_a_level_is_what_its_reconstruction_decodes(k, sparse_output):
    """``transform(X, level=i)``: zero beyond the level's latents, and
    ``inverse_transform`` of it at that level is ``reconstruct(X, level=i)``;
    with a shared ``k`` it is the prefix of the full codes."""
    X = _data()
    model = MatryoshkaSAE(k=k, sparse_output=sparse_output, **FAST).fit(X)
    full = model.transform(X)
    full = full.toarray() if sparse_output else full
    for level, size in enumerate(model.level_sizes_):
        codes = model.transform(X, level=level)
        assert type(codes) is type(model.transform(X))
        dense = codes.toarray() if sparse_output else codes
        assert dense.shape == full.shape
        assert not dense[:, size:].any()
        if np.ndim(model.threshold_) == 0:
            np.testing.assert_array_equal(dense[:, :size], full[:, :size])
        np.testing.assert_allclose(model.inverse_transform(codes, level=level),
                                   model.reconstruct(X, level=level), rtol=1e-4, atol=1e-4)

    def dense_codes(level):
        codes = model.transform(X, level=level)
        return codes.toarray() if sparse_output else codes

    np.testing.assert_array_equal(dense_codes(-1), dense_codes(len(model.level_sizes_) - 1))
    with pytest.raises(ValueError, match="not a valid level"):
        model.transform(X, level=5)
