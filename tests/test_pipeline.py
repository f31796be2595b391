"""MatryoshkaSAE and MatryoshkaTranscoder inside the scikit-learn ecosystem.

Pipelines, grid search, pandas and sparse output, level-wise decoding,
training diagnostics (history, dead latents) and interrupted fits.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.models import _training
from sklearn_nldisco.models import explained_variance

FAST = dict(max_iter=4, batch_size=64, random_state=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _counts(seed=0, n_rows=200, n_features=10):
    rng = np.random.RandomState(seed)
    return rng.poisson(2.0, size=(n_rows, n_features)).astype(np.float64)


def _planted(seed=0, n_rows=400, n_atoms=16, n_features=30, noise=0.05):
    """``X = Z @ D + noise`` with sparse non-negative ``Z`` (about 3 atoms a row)."""
    rng = np.random.RandomState(seed)
    Z = rng.exponential(1.0, size=(n_rows, n_atoms))
    Z *= rng.uniform(size=(n_rows, n_atoms)) < 3.0 / n_atoms
    D = rng.normal(size=(n_atoms, n_features))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    return Z @ D + noise * rng.normal(size=(n_rows, n_features))


# ------------------------------------------------------------------ pipelines
@pytest.mark.parametrize(
    "preprocess",
    [StandardScaler(), FunctionTransformer(np.log1p, inverse_func=np.expm1)],
    ids=["standard_scaler", "log1p"],
)
def test_sae_in_pipeline(preprocess):
    X = _counts()
    pipe = Pipeline(
        [("pre", preprocess), ("sae", MatryoshkaSAE(n_latents=16, k=2, **FAST))]
    )
    pipe.fit(X)
    codes = pipe.transform(X)
    assert codes.shape == (X.shape[0], 16)
    assert np.all(np.isfinite(codes)) and np.all(codes >= 0)
    score = pipe.score(X)
    assert isinstance(score, float)
    assert np.isfinite(score)
    assert score == pipe[-1].score(pipe[0].transform(X))
    back = pipe.inverse_transform(codes)
    assert back.shape == X.shape
    assert np.all(np.isfinite(back))


def test_transcoder_in_pipeline():
    X = _counts(n_features=12)
    Y = X[:, :5] @ np.random.RandomState(1).uniform(0.2, 1.0, size=(5, 5))
    pipe = Pipeline(
        [("pre", StandardScaler()),
         ("tc", MatryoshkaTranscoder(n_latents=16, k=2, **FAST))]
    )
    pipe.fit(X, Y)
    assert pipe.predict(X).shape == Y.shape
    assert np.isfinite(pipe.score(X, Y))


# ---------------------------------------------------------------- grid search
def _check_search(search, grid_values):
    assert search.best_params_ in grid_values
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == len(grid_values)
    assert np.all(np.isfinite(scores))
    assert np.all(np.isfinite(search.best_estimator_.transform(_counts(seed=3))))


def test_grid_search_over_k_and_n_latents():
    X = _counts()
    search = GridSearchCV(
        MatryoshkaSAE(max_iter=3, batch_size=64, random_state=0),
        {"k": [2, 4], "n_latents": [16, 32]},
        cv=2,
        error_score="raise",
    ).fit(X)
    grid = [{"k": k, "n_latents": n} for k in (2, 4) for n in (16, 32)]
    _check_search(search, grid)
    assert search.best_estimator_.n_latents == search.best_params_["n_latents"]


def test_grid_search_over_level_sizes():
    X = _counts()
    grid = [
        {"n_latents": [16], "level_sizes": [(4, 16), (4, 8, 16)]},
        {"n_latents": [32], "level_sizes": [(8, 32), (32,)]},
    ]
    search = GridSearchCV(
        MatryoshkaSAE(k=2, max_iter=3, batch_size=64, random_state=0),
        grid,
        cv=2,
        error_score="raise",
    ).fit(X)
    values = [
        {"n_latents": 16, "level_sizes": (4, 16)},
        {"n_latents": 16, "level_sizes": (4, 8, 16)},
        {"n_latents": 32, "level_sizes": (8, 32)},
        {"n_latents": 32, "level_sizes": (32,)},
    ]
    _check_search(search, values)
    assert tuple(search.best_estimator_.level_sizes_) == search.best_params_["level_sizes"]


# ------------------------------------------------------- pandas and sparse output
def test_set_output_pandas():
    X = _counts()
    model = MatryoshkaSAE(n_latents=16, k=2, **FAST).fit(X)
    names = model.get_feature_names_out()
    assert list(names) == [f"matryoshkasae{i}" for i in range(16)]
    dense = model.transform(X)
    model.set_output(transform="pandas")
    frame = model.transform(X)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(names)
    assert np.array_equal(frame.to_numpy(), dense)


def test_set_output_pandas_keeps_index_and_feature_names():
    X = _counts()
    columns = [f"unit{i}" for i in range(X.shape[1])]
    frame_in = pd.DataFrame(X, columns=columns, index=np.arange(1000, 1000 + len(X)))
    pipe = Pipeline(
        [("scale", StandardScaler()), ("sae", MatryoshkaSAE(n_latents=16, k=2, **FAST))]
    ).set_output(transform="pandas")
    frame = pipe.fit(frame_in).transform(frame_in)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(pipe.get_feature_names_out())
    assert frame.columns[0] == "matryoshkasae0"
    assert frame.index.equals(frame_in.index)
    assert list(pipe[-1].feature_names_in_) == columns


def test_transcoder_feature_names():
    X = _counts()
    model = MatryoshkaTranscoder(n_latents=16, k=2, **FAST).fit(X, X[:, :3])
    assert list(model.get_feature_names_out()) == [
        f"matryoshkatranscoder{i}" for i in range(16)
    ]


@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_rows", [200, 1100], ids=["one_chunk", "several_chunks"])
def test_sparse_output_matches_dense(sparsity, dtype, n_rows):
    X = _counts(n_rows=n_rows).astype(dtype)
    model = MatryoshkaSAE(
        n_latents=16, k=2, sparsity=sparsity, sparse_output=True, **FAST
    ).fit(X)
    codes = model.transform(X)
    assert sp.issparse(codes)
    assert codes.format == "csr"
    assert codes.shape == (X.shape[0], 16)
    assert codes.dtype == dtype
    dense = model.set_params(sparse_output=False).transform(X)
    assert isinstance(dense, np.ndarray) and dense.dtype == dtype
    assert np.array_equal(codes.toarray(), dense)
    assert codes.nnz == np.count_nonzero(dense)
    np.testing.assert_allclose(
        model.inverse_transform(codes), model.inverse_transform(dense),
        rtol=1e-6, atol=1e-6,
    )


# ---------------------------------------------------------------- levels
@pytest.fixture(scope="module")
def planted_sae():
    X = _planted()
    model = MatryoshkaSAE(
        n_latents=32, k=3, level_sizes=(8, 16, 32), max_iter=10, batch_size=64,
        random_state=0,
    ).fit(X)
    return model, X


def test_inverse_transform_per_level(planted_sae):
    model, X = planted_sae
    codes = model.transform(X)
    explained = []
    for level in range(len(model.level_sizes_)):
        reconstruction = model.inverse_transform(codes, level=level)
        assert reconstruction.shape == X.shape
        assert np.all(np.isfinite(reconstruction))
        explained.append(explained_variance(X, reconstruction))
    assert explained[-1] >= explained[0]
    assert explained[-1] > 0.3
    # level=None and level=-1 are the last level; reconstruct agrees
    full = model.inverse_transform(codes)
    assert np.array_equal(full, model.inverse_transform(codes, level=-1))
    assert np.array_equal(full, model.inverse_transform(codes, level=2))
    assert np.allclose(model.reconstruct(X, level=0),
                       model.inverse_transform(codes, level=0), rtol=1e-5, atol=1e-6)
    assert np.isclose(model.score(X), explained[-1], rtol=1e-6)


def test_first_level_ignores_later_latents(planted_sae):
    model, X = planted_sae
    codes = model.transform(X)
    truncated = codes.copy()
    truncated[:, model.level_sizes_[0]:] = 0.0
    assert np.array_equal(
        model.inverse_transform(codes, level=0),
        model.inverse_transform(truncated, level=0),
    )


# --------------------------------------------------------- training diagnostics
@pytest.mark.parametrize("early_stopping", [True, False])
def test_history_is_consistent(early_stopping):
    X = _counts()
    model = MatryoshkaSAE(
        n_latents=16, k=2, max_iter=5, batch_size=50, early_stopping=early_stopping,
        random_state=0,
    ).fit(X)
    n_levels = len(model.level_sizes_)
    n_iter = model.n_iter_
    assert 1 <= n_iter <= 5
    assert 1 <= model.best_iter_ <= n_iter
    history = model.history_
    expected = {
        "train_loss", "val_loss", "val_explained_variance", "l0", "dead_fraction",
        "aux_loss", "learning_rate", "epoch_time",
    }
    assert expected <= set(history)
    for name in ("train_loss", "val_loss", "val_explained_variance"):
        assert history[name].shape == (n_iter, n_levels), name
    for name in ("l0", "dead_fraction", "aux_loss", "learning_rate", "epoch_time"):
        assert history[name].shape == (n_iter,), name
    assert np.all(np.isfinite(history["train_loss"]))
    assert np.all(history["learning_rate"] > 0)
    assert np.all((history["dead_fraction"] >= 0) & (history["dead_fraction"] <= 1))
    if early_stopping:
        assert np.all(np.isfinite(history["val_loss"]))
        assert np.all(history["val_explained_variance"] <= 1)
    else:
        assert model.stop_reason_ == "max_iter"
        assert n_iter == 5
        # 200 rows: the batch of 50 is capped at 200 / 10 = 20 rows, so that
        # an epoch takes at least 10 steps
        assert model.n_steps_ == 10 * n_iter


def test_batch_is_capped_so_small_fits_take_ten_steps_an_epoch():
    X = np.random.default_rng(0).poisson(2.0, size=(1200, 12)).astype(float)
    small = MatryoshkaSAE(n_latents=16, k=2, max_iter=2, early_stopping=False,
                          random_state=0).fit(X)
    # batch_size=1024 over 1,200 rows would be one step an epoch
    assert small.n_steps_ == 2 * 10
    large = MatryoshkaSAE(n_latents=16, k=2, max_iter=1, batch_size=100, early_stopping=False,
                          random_state=0).fit(X)
    # a batch already small enough is kept: 1,200 / 100 = 12 steps
    assert large.n_steps_ == 12


@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
def test_dead_latents_and_frequency_agree(sparsity):
    X = _counts(n_rows=100)
    model = MatryoshkaSAE(
        n_latents=32, k=1, sparsity=sparsity, max_iter=1, batch_size=64, random_state=0
    ).fit(X)
    frequency = model.latent_frequency_
    assert frequency.shape == (32,)
    assert np.all((frequency >= 0) & (frequency <= 1))
    assert np.array_equal(model.dead_latents_, np.flatnonzero(frequency == 0))
    codes = model.transform(X)
    np.testing.assert_allclose(frequency, np.count_nonzero(codes, axis=0) / len(X))
    np.testing.assert_allclose(frequency.sum(), np.count_nonzero(codes) / len(X))
    # one short epoch with k=1 leaves part of a 32-latent dictionary unused
    assert len(model.dead_latents_) > 0
    assert np.all(codes[:, model.dead_latents_] == 0)


# ------------------------------------------------------------ interrupted fits
def _interrupt_on_call(monkeypatch, call_number):
    original = _training.MatryoshkaTrainer.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call_number:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_training.MatryoshkaTrainer, "step", step)
    return calls


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
def test_keyboard_interrupt_keeps_completed_epochs(Estimator, monkeypatch):
    X = _counts()
    args = (X,) if Estimator is MatryoshkaSAE else (X, X[:, :4])
    # 200 rows and batches of 20: ten steps an epoch, so call 37 is in epoch 4
    model = Estimator(
        n_latents=16, k=2, batch_size=20, max_iter=10, early_stopping=False,
        random_state=0,
    )
    calls = _interrupt_on_call(monkeypatch, 37)
    with pytest.warns(UserWarning, match=r"interrupted during epoch 4"):
        model.fit(*args)
    assert calls["n"] == 37
    assert model.n_iter_ == 3
    assert model.best_iter_ == 3
    assert model.n_steps_ == 36  # the steps taken before the interrupted one
    assert model.stop_reason_ == "interrupted"
    assert model.history_["train_loss"].shape == (3, len(model.level_sizes_))
    codes = model.transform(X)
    assert codes.shape == (200, 16)
    assert np.all(np.isfinite(codes))
    assert np.isfinite(model.score(*args))


def test_keyboard_interrupt_with_early_stopping_keeps_best_epoch(monkeypatch):
    X = _counts()
    # 180 training rows (20 held out) and batches of 18: ten steps an epoch
    model = MatryoshkaSAE(n_latents=16, k=2, batch_size=18, max_iter=10, random_state=0)
    _interrupt_on_call(monkeypatch, 37)
    with pytest.warns(UserWarning, match="interrupted"):
        model.fit(X)
    assert model.stop_reason_ == "interrupted"
    assert model.n_iter_ == 3
    assert 1 <= model.best_iter_ <= 3
    assert model.history_["val_loss"].shape[0] == 3
    assert np.all(np.isfinite(model.transform(X)))


@pytest.mark.parametrize("call_number", [1, 2])
def test_keyboard_interrupt_in_first_epoch_is_raised(monkeypatch, call_number):
    X = _counts()
    model = MatryoshkaSAE(
        n_latents=16, k=2, batch_size=100, max_iter=10, early_stopping=False,
        random_state=0,
    )
    _interrupt_on_call(monkeypatch, call_number)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X)
    assert not hasattr(model, "components_")


# ----------------------------------------------------------------- transcoder
@pytest.fixture(scope="module")
def transcoder_data():
    rng = np.random.RandomState(0)
    X = _planted(seed=1, n_rows=400, n_features=12)
    A = rng.normal(size=(5, 6))
    Y = X[:, :5] @ A
    return X, Y


def test_transcoder_fit_predict_shapes_and_score(transcoder_data):
    X, Y = transcoder_data
    model = MatryoshkaTranscoder(
        n_latents=32, k=4, max_iter=10, batch_size=64, random_state=0
    ).fit(X, Y)
    assert model.n_features_in_ == X.shape[1]
    assert model.components_.shape == (32, Y.shape[1])
    assert model.encoder_weight_.shape == (X.shape[1], 32)
    prediction = model.predict(X)
    assert prediction.shape == Y.shape
    assert np.all(np.isfinite(prediction))
    codes = model.transform(X)
    assert codes.shape == (X.shape[0], 32)
    score = model.score(X, Y)
    assert np.isfinite(score)
    assert score > 0
    for level in range(len(model.level_sizes_)):
        assert model.predict(X, level=level).shape == Y.shape
    # predict decodes float32 codes, transform returns float64 ones
    np.testing.assert_allclose(
        model.inverse_transform(codes), prediction, rtol=1e-5, atol=1e-6
    )


def test_transcoder_1d_target(transcoder_data):
    X, Y = transcoder_data
    y = Y[:, 0]
    model = MatryoshkaTranscoder(
        n_latents=16, k=2, max_iter=10, batch_size=64, random_state=0
    ).fit(X, y)
    prediction = model.predict(X)
    assert prediction.shape == y.shape
    assert prediction.ndim == 1
    assert model.predict(X, level=0).shape == y.shape
    assert model.components_.shape == (16, 1)
    score = model.score(X, y)
    assert np.isfinite(score)
    assert score > 0
