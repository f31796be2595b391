"""Streaming fits: ``partial_fit`` over chunks of the data.

Each call is one pass over its chunk; the scaling statistics (frozen after
the first call), the optimiser state, the schedule, the dead-latent counters
and the running BatchTopK threshold carry over, pickling included.
"""

import io

import joblib
import numpy as np
import pytest

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.preprocessing import SpikeBinner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = dict(n_latents=24, k=3, max_iter=4, batch_size=50, device="cpu")


def _data(seed=0, n_rows=400, n_features=12, n_targets=5):
    rng = np.random.RandomState(seed)
    X = rng.poisson(2.0, size=(n_rows, n_features)).astype(np.float64)
    Y = X[:, :n_targets] @ rng.uniform(0.2, 1.0, size=(n_targets, n_targets))
    return X, Y


def _pickled(model):
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


def test_partial_fit_matches_fit_quality():
    """E passes of partial_fit over 5 contiguous chunks vs fit with E epochs."""
    recording, _ = make_reaching_session(n_units=60, n_trials=200, random_state=0)
    binner = SpikeBinner(bin_size=0.05, intervals=recording.trials, smooth_sigma=0.05)
    X = np.asarray(binner.fit_transform(recording))
    n_train = int(0.8 * X.shape[0])
    X_train, X_test = X[:n_train], X[n_train:]
    n_passes = 10
    params = dict(n_latents=64, k=4, batch_size=256, max_iter=n_passes,
                  device="cpu", random_state=0)

    fitted = MatryoshkaSAE(early_stopping=False, **params).fit(X_train)
    streamed = MatryoshkaSAE(**params)
    chunks = np.array_split(X_train, 5)
    for _ in range(n_passes):
        for chunk in chunks:
            streamed.partial_fit(chunk)

    assert streamed.n_iter_ == 5 * n_passes
    assert streamed.stop_reason_ == "partial_fit"
    fit_score, partial_score = fitted.score(X_test), streamed.score(X_test)
    assert partial_score >= fit_score - 0.01, (fit_score, partial_score)


def test_state_carries_over():
    X, _ = _data()
    chunks = np.array_split(X, 4)
    model = MatryoshkaSAE(random_state=0, **FAST).partial_fit(chunks[0])
    first = {name: getattr(model, name).copy()
             for name in ("components_", "input_mean_", "input_scale_")}
    steps = model.n_steps_
    adam_step = model._partial_state.trainer["adam_step/decoder_weight"]
    np.testing.assert_allclose(model.input_mean_, chunks[0].mean(axis=0))

    model.partial_fit(chunks[1])
    assert not np.array_equal(model.components_, first["components_"])
    # scaling statistics are frozen after the first call
    np.testing.assert_array_equal(model.input_mean_, first["input_mean_"])
    np.testing.assert_array_equal(model.input_scale_, first["input_scale_"])
    assert model.n_steps_ == 2 * steps == 4
    assert model._partial_state.trainer["adam_step/decoder_weight"] == adam_step + steps
    assert model.n_iter_ == 2
    for name, values in model.history_.items():
        assert len(values) == 2, name
    assert model.history_["train_loss"].shape == (2, len(model.level_sizes_))
    assert model.threshold_ > 0
    assert model.dead_latents_.dtype.kind == "i"
    counters = model._partial_state.trainer["samples_since_fired"]
    assert counters.shape == (FAST["n_latents"],)


def test_pickling_between_calls_resumes_exactly():
    X, _ = _data()
    chunks = np.array_split(X, 4)
    model = MatryoshkaSAE(random_state=0, **FAST)
    for chunk in chunks[:2]:
        model.partial_fit(chunk)
    restored = _pickled(model)
    for chunk in chunks[2:]:
        model.partial_fit(chunk)
        restored.partial_fit(chunk)
    for name in ("components_", "encoder_weight_", "encoder_bias_", "decoder_bias_"):
        np.testing.assert_array_equal(getattr(model, name), getattr(restored, name))
    assert model.threshold_ == restored.threshold_
    np.testing.assert_array_equal(model.transform(X), restored.transform(X))


def test_partial_fit_is_reproducible_and_fit_starts_over():
    X, _ = _data()
    chunks = np.array_split(X, 3)
    runs = []
    for _ in range(2):
        model = MatryoshkaSAE(random_state=0, **FAST)
        for chunk in chunks:
            model.partial_fit(chunk)
        runs.append(model)
    np.testing.assert_array_equal(runs[0].components_, runs[1].components_)

    refitted = runs[0].fit(X)
    fresh = MatryoshkaSAE(random_state=0, **FAST).fit(X)
    np.testing.assert_array_equal(refitted.components_, fresh.components_)
    assert not hasattr(refitted, "_partial_state")
    assert refitted.n_iter_ == fresh.n_iter_


def test_partial_fit_model_codes_and_scores():
    X, _ = _data()
    model = MatryoshkaSAE(random_state=0, **FAST)
    for chunk in np.array_split(X, 4):
        model.partial_fit(chunk)
    codes = model.transform(X)
    assert codes.shape == (X.shape[0], FAST["n_latents"])
    assert (codes >= 0).all()
    assert np.isfinite(model.score(X))
    assert model.reconstruct(X).shape == X.shape
    assert model.latent_frequency_.shape == (FAST["n_latents"],)

    topk = MatryoshkaSAE(random_state=0, sparsity="topk", **FAST)
    topk.partial_fit(X[:200]).partial_fit(X[200:])
    assert topk.threshold_ == 0.0
    assert (np.count_nonzero(topk.transform(X), axis=1) <= FAST["k"]).all()


def test_partial_fit_after_fit_continues():
    X, _ = _data()
    model = MatryoshkaSAE(random_state=0, **FAST).fit(X)
    components = model.components_.copy()
    mean = model.input_mean_.copy()
    model.partial_fit(X[:100])
    assert not np.array_equal(components, model.components_)
    np.testing.assert_array_equal(mean, model.input_mean_)
    assert model.n_iter_ == 1


def test_transcoder_partial_fit():
    X, Y = _data()
    model = MatryoshkaTranscoder(random_state=0, **FAST)
    for rows in np.array_split(np.arange(X.shape[0]), 4):
        model.partial_fit(X[rows], Y[rows])
    assert model.predict(X).shape == Y.shape
    assert np.isfinite(model.score(X, Y))
    restored = _pickled(model)
    model.partial_fit(X[:100], Y[:100])
    restored.partial_fit(X[:100], Y[:100])
    np.testing.assert_array_equal(model.components_, restored.components_)
    with pytest.raises(ValueError, match="targets"):
        model.partial_fit(X[:100], Y[:100, :3])

    single = MatryoshkaTranscoder(random_state=0, **FAST)
    single.partial_fit(X[:200], Y[:200, 0]).partial_fit(X[200:], Y[200:, 0])
    assert single.predict(X).shape == (X.shape[0],)


def test_partial_fit_errors():
    X, _ = _data()
    model = MatryoshkaSAE(random_state=0, **FAST).partial_fit(X[:100])
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:100, :-1])
    with pytest.raises(ValueError, match="empty"):
        model.partial_fit(X[:0])
    with pytest.raises(ValueError, match="2-D"):
        model.partial_fit(X[0])
    with pytest.raises(ValueError):
        MatryoshkaSAE(k=0, **{k: v for k, v in FAST.items() if k != "k"}).partial_fit(X)
    with pytest.raises(ValueError, match="negative"):
        MatryoshkaSAE(loss="poisson", random_state=0, **FAST).partial_fit(X - 5)
