"""Non-negative least-squares refit of the codes on the encoder's support."""

import numpy as np
import pytest
from scipy.optimize import nnls

from conftest import assert_same_codes

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder


@pytest.fixture(scope="module")
def planted():
    rng = np.random.RandomState(0)
    dictionary = rng.standard_normal((24, 30))
    codes = rng.exponential(1.0, size=(800, 24)) * (rng.rand(800, 24) < 0.15)
    X = codes @ dictionary + 0.3 * rng.standard_normal((800, 30)) + 5.0
    model = MatryoshkaSAE(n_latents=48, k=4, max_iter=30, batch_size=128,
                          code_refit="none", random_state=0).fit(X[:600])
    return model, X[600:]


def _residual(model, X, codes):
    target = (X - model.input_mean_) / model.input_scale_ - model.decoder_bias_
    return np.square(target - codes @ model.components_.astype(np.float64)).sum(axis=1)


def test_refit_solves_nnls_on_the_encoder_support(planted):
    model, X = planted
    encoder_codes = model.set_params(code_refit="none").transform(X)
    refit_codes = model.set_params(code_refit="nnls").transform(X)
    assert np.all(refit_codes >= 0)
    assert np.all((refit_codes > 0) <= (encoder_codes > 0))
    decoder = model.components_.astype(np.float64)
    target = (X - model.input_mean_) / model.input_scale_ - model.decoder_bias_
    optimum = np.empty(len(X))
    for i, row in enumerate(target):
        support = np.flatnonzero(encoder_codes[i])
        optimum[i] = np.square(row).sum() if support.size == 0 else (
            nnls(decoder[support].T, row)[1] ** 2
        )
    refit_error = _residual(model, X, refit_codes)
    np.testing.assert_allclose(refit_error, optimum, rtol=1e-3, atol=1e-6)
    # never worse than the encoder's own values, strictly better overall
    assert np.all(refit_error <= _residual(model, X, encoder_codes) * (1 + 1e-6) + 1e-9)
    assert refit_error.sum() < _residual(model, X, encoder_codes).sum()


def test_refit_raises_explained_variance_and_is_consistent(planted):
    model, X = planted
    plain = model.set_params(code_refit="none").score(X)
    refit = model.set_params(code_refit="nnls").score(X)
    assert refit > plain
    dense = model.transform(X)
    sparse = model.set_params(sparse_output=True).transform(X)
    model.set_params(sparse_output=False)
    np.testing.assert_array_equal(sparse.toarray(), dense)
    np.testing.assert_allclose(model.inverse_transform(dense), model.reconstruct(X), rtol=1e-5, atol=1e-5)
    # rows are refitted independently of their neighbours
    np.testing.assert_allclose(model.transform(X[5:6]), dense[5:6], rtol=1e-6, atol=1e-7)


def test_auto_refits_only_the_squared_error_autoencoder():
    rng = np.random.RandomState(1)
    X = rng.poisson(2.0, size=(300, 8)).astype(float)
    sae = MatryoshkaSAE(n_latents=16, k=2, max_iter=2, mask_fraction=0.0,
                        random_state=0).fit(X)
    assert sae._code_refit_mode() == "nnls"
    # masked training predicts each unit from the others: no refit to the unit
    masked = MatryoshkaSAE(n_latents=16, k=2, max_iter=2, random_state=0).fit(X)
    assert masked.mask_fraction > 0 and masked._code_refit_mode() == "none"
    poisson = MatryoshkaSAE(n_latents=16, k=2, max_iter=2, loss="poisson", random_state=0)
    assert poisson.fit(X)._code_refit_mode() == "none"
    transcoder = MatryoshkaTranscoder(n_latents=16, k=2, max_iter=2, random_state=0)
    assert transcoder.fit(X, X[:, :3])._code_refit_mode() == "none"


@pytest.mark.parametrize(
    "make",
    [
        lambda: MatryoshkaSAE(n_latents=16, k=2, loss="poisson", code_refit="nnls"),
        lambda: MatryoshkaTranscoder(n_latents=16, k=2, code_refit="nnls"),
        lambda: MatryoshkaSAE(n_latents=16, k=2, loss="msle", code_refit="pursuit"),
    ],
)
def test_explicit_refit_where_undefined_is_an_error(make):
    X = np.random.RandomState(2).poisson(2.0, size=(100, 6)).astype(float)
    with pytest.raises(ValueError, match=r"code_refit='(nnls|pursuit)'.*loss='mse' only"):
        make().fit(X, X[:, :2])


def test_refit_with_more_active_latents_than_units():
    """Supports larger than the number of units give singular Gram systems."""
    rng = np.random.RandomState(4)
    X = rng.poisson(3.0, size=(400, 3)).astype(float)
    model = MatryoshkaSAE(n_latents=16, k=3, max_iter=5, random_state=0).fit(X)
    plain = model.set_params(code_refit="none").transform(X)
    assert (np.count_nonzero(plain, axis=1) > X.shape[1]).any()
    refit = model.set_params(code_refit="nnls").transform(X)
    assert np.all(np.isfinite(refit)) and np.all(refit >= 0)
    assert _residual(model, X, refit).sum() <= _residual(model, X, plain).sum()


def test_pursuit_codes_at_most_k_latents_optimally_on_their_support(planted):
    model, X = planted
    codes = model.set_params(code_refit="pursuit").transform(X)
    model.set_params(code_refit="none")
    l0 = np.count_nonzero(codes, axis=1)
    assert l0.max() <= model.k and l0.mean() > model.k - 1
    assert np.all(codes >= 0)
    # coefficients are the NNLS fit on the chosen support
    decoder = model.components_.astype(np.float64)
    target = (X - model.input_mean_) / model.input_scale_ - model.decoder_bias_
    for i in range(0, len(X), 10):
        support = np.flatnonzero(codes[i])
        best = nnls(decoder[support].T, target[i])[1] ** 2 if support.size else np.square(target[i]).sum()
        np.testing.assert_allclose(_residual(model, X[i : i + 1], codes[i : i + 1])[0], best,
                                   rtol=1e-3, atol=1e-6)
    # every chosen latent was among the encoder's 4k strongest candidates
    weight, offset = model.encoder_weight_, model.encoder_bias_
    pre = ((X - model.input_mean_) / model.input_scale_ - model.input_bias_) @ weight + offset
    rank = np.argsort(np.argsort(-pre, axis=1), axis=1)
    assert np.all(rank[codes > 0] < 4 * model.k)


def test_pursuit_rows_are_coded_alone(planted):
    model, X = planted
    model.set_params(code_refit="pursuit")
    codes = model.transform(X)
    order = np.random.RandomState(0).permutation(len(X))
    assert_same_codes(model.transform(X[order]), codes[order])
    assert_same_codes(model.transform(X[7:8]), codes[7:8])
    sparse = model.set_params(sparse_output=True).transform(X)
    np.testing.assert_array_equal(sparse.toarray(), codes)
    model.set_params(sparse_output=False, code_refit="none")
