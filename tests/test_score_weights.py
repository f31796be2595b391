"""``score(..., sample_weight=...)`` of the Matryoshka models, and ``Pipeline.score``
under metadata routing (which hands every final step a ``sample_weight``)."""

import numpy as np
import pytest
import sklearn
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.models import explained_variance


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(400, 8)).astype(np.float64)
    y = X[:, :3] @ rng.normal(size=(3, 3)) + rng.normal(size=(400, 3))
    weights = rng.integers(0, 4, size=400).astype(np.float64)
    sae = MatryoshkaSAE(n_latents=8, k=2, max_iter=3, random_state=0).fit(X)
    transcoder = MatryoshkaTranscoder(n_latents=8, k=2, max_iter=3, random_state=0).fit(X, y)
    return X, y, weights, sae, transcoder


def test_weighted_score_is_the_weighted_variance_weighted_r2(data):
    X, y, weights, sae, transcoder = data
    assert sae.score(X, sample_weight=weights) == pytest.approx(
        r2_score(X, sae.reconstruct(X), sample_weight=weights,
                 multioutput="variance_weighted"), rel=1e-10)
    assert transcoder.score(X, y, sample_weight=weights) == pytest.approx(
        r2_score(y, transcoder.predict(X), sample_weight=weights,
                 multioutput="variance_weighted"), rel=1e-10)
    # the weights change the score: not silently ignored
    assert sae.score(X, sample_weight=weights) != pytest.approx(sae.score(X), rel=1e-6)


def test_integer_weights_equal_repeated_rows(data):
    X, y, weights, sae, transcoder = data
    repeated = np.repeat(np.arange(len(X)), weights.astype(int))
    # equal up to float32 coding of rows at other positions (rel 1e-6)
    assert sae.score(X, sample_weight=weights) == pytest.approx(sae.score(X[repeated]),
                                                                rel=1e-6)
    assert transcoder.score(X, y, sample_weight=weights) == pytest.approx(
        transcoder.score(X[repeated], y[repeated]), rel=1e-6)
    assert sae.score(X, sample_weight=np.ones(len(X))) == pytest.approx(sae.score(X),
                                                                        rel=1e-12)


def test_weighted_score_out_of_core_equals_in_memory(data, tmp_path):
    X, y, weights, sae, transcoder = data
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    X_map = np.load(tmp_path / "X.npy", mmap_mode="r")
    y_map = np.load(tmp_path / "y.npy", mmap_mode="r")
    sae_chunked = MatryoshkaSAE(**sae.get_params())
    sae_chunked.__dict__.update(sae.__dict__)
    sae_chunked._out_of_core_chunk_rows = 37  # several chunks, a short last one
    assert sae_chunked.score(X_map, sample_weight=weights) == pytest.approx(
        sae.score(X, sample_weight=weights), rel=1e-9)
    assert transcoder.score(X_map, y_map, sample_weight=weights) == pytest.approx(
        transcoder.score(X, y, sample_weight=weights), rel=1e-9)


@pytest.mark.parametrize("bad, message", [
    (np.zeros(400), "non-zero"), (-np.ones(400), "Negative"), (np.ones(10), "shape"),
    (np.full(400, np.nan), "NaN")])
def test_bad_weights_raise(data, bad, message):
    X, y, _, sae, transcoder = data
    with pytest.raises(ValueError, match=message):
        sae.score(X, sample_weight=bad)
    with pytest.raises(ValueError, match=message):
        transcoder.score(X, y, sample_weight=bad)


def test_explained_variance_weights():
    Y = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 1.0]])
    prediction = np.array([[0.5, 1.0], [2.0, 2.0], [3.0, 1.5]])
    weights = np.array([1.0, 2.0, 0.5])
    assert explained_variance(Y, prediction, weights) == pytest.approx(
        r2_score(Y, prediction, sample_weight=weights, multioutput="variance_weighted"))


def test_pipeline_score_under_metadata_routing(data):
    X, y, weights, _, _ = data
    with sklearn.config_context(enable_metadata_routing=True):
        sae = make_pipeline(StandardScaler(), MatryoshkaSAE(n_latents=8, k=2, max_iter=2,
                                                            random_state=0)).fit(X)
        transcoder = make_pipeline(StandardScaler(), MatryoshkaTranscoder(
            n_latents=8, k=2, max_iter=2, random_state=0)).fit(X, y)
        assert np.isfinite(sae.score(X)) and np.isfinite(transcoder.score(X, y))
        # a requested weight reaches the model
        sae[-1].set_score_request(sample_weight=True)
        assert sae.score(X, sample_weight=weights) == pytest.approx(
            sae[-1].score(sae[0].transform(X), sample_weight=weights))


def test_motif_models_score_with_weights_and_under_routing():
    from sklearn_nldisco import MotifSAE, MotifTranscoder

    rng = np.random.default_rng(1)
    X = rng.poisson(1.0, size=(300, 6)).astype(np.float64)
    y = np.roll(X[:, :2], 2, axis=0) + rng.normal(size=(300, 2))
    weights = rng.integers(0, 3, size=300).astype(np.float64)
    ids = np.repeat([0, 1, 2], 100)
    models = [(MotifSAE(n_latents=4, n_bins_kernel=3, max_iter=2, random_state=0), None),
              (MotifTranscoder(n_latents=4, n_bins_kernel=3, max_iter=2, random_state=0), y)]
    for model, target in models:
        model.fit(X, target, interval_ids=ids)
        prediction = (model.predict(X, interval_ids=ids) if target is not None
                      else model.reconstruct(X, interval_ids=ids))
        expected = X if target is None else target
        assert model.score(X, target, interval_ids=ids, sample_weight=weights) == (
            pytest.approx(r2_score(expected, prediction, sample_weight=weights,
                                   multioutput="variance_weighted"), rel=1e-10))
        with pytest.raises(ValueError, match="Negative"):
            model.score(X, target, interval_ids=ids, sample_weight=-weights)
    with sklearn.config_context(enable_metadata_routing=True):
        pipeline = make_pipeline(StandardScaler(), MotifSAE(
            n_latents=4, n_bins_kernel=3, max_iter=2, random_state=0)).fit(X)
        assert np.isfinite(pipeline.score(X))
