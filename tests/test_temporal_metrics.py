"""Temporal metrics: latent ablation, spectral fidelity, reconstruction per lag."""

import copy

import numpy as np
import pandas as pd
import pytest
from scipy import signal, sparse
from sklearn.decomposition import NMF, PCA, FactorAnalysis
from sklearn.pipeline import make_pipeline

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.evaluation import (
    latent_ablation,
    reconstruct,
    reconstruction_per_lag,
    spectral_fidelity,
)
from sklearn_nldisco.models import explained_variance
from sklearn_nldisco.preprocessing import TimeWindows


# ------------------------------------------------------------------ ablation
def _counts(n_samples=300, n_units=10, seed=0):
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.normal(size=(n_samples, 3)) @ rng.normal(scale=0.5, size=(3, n_units)))
    return rng.poisson(2.0 * rates).astype(float)


def _brute_force(model, X):
    """Every latent zeroed in turn over the whole data, decoded in full."""
    codes = model.transform(X)
    codes = codes.toarray() if hasattr(codes, "toarray") else np.asarray(codes, dtype=float)
    decode = (model.inverse_transform if hasattr(model, "inverse_transform")
              else lambda z: z @ model.components_ + model.mean_)
    intact = np.square(X - decode(codes)).sum()
    increase = []
    for latent in range(codes.shape[1]):
        ablated = codes.copy()
        ablated[:, latent] = 0.0
        increase.append(np.square(X - decode(ablated)).sum() - intact)
    return np.array(increase)


@pytest.fixture(scope="module")
def msae():
    return MatryoshkaSAE(n_latents=16, k=3, max_iter=3, random_state=0,
                         n_threads=1).fit(_counts())


@pytest.mark.parametrize("name", ["msae", "pca", "pca_whiten", "nmf", "factor_analysis",
                                  "window_pca"])
def test_closed_form_ablation_matches_brute_force(name, msae):
    X_train, X_test = _counts(seed=0), _counts(seed=1)
    model = {
        "msae": msae,
        "pca": PCA(n_components=4).fit(X_train),
        "pca_whiten": PCA(n_components=4, whiten=True).fit(X_train),
        "nmf": NMF(n_components=4, max_iter=500, random_state=0).fit(X_train),
        "factor_analysis": FactorAnalysis(n_components=3, random_state=0).fit(X_train),
        # a window model: its reconstruction is each window's own bin
        "window_pca": make_pipeline(TimeWindows(3), PCA(n_components=5)).fit(X_train),
    }[name]
    ablation = latent_ablation(model, X_test)
    assert ablation.attrs["method"] == "closed_form"
    expected = _brute_force(model, X_test)
    assert np.abs(expected).max() > 1.0  # the latents matter
    np.testing.assert_allclose(ablation["error_increase"], expected, rtol=1e-8,
                               atol=1e-8 * np.abs(expected).max())
    total = np.square(X_test - X_test.mean(axis=0)).sum()
    np.testing.assert_allclose(ablation["error_increase_fraction"], expected / total,
                               rtol=1e-8, atol=1e-12)
    assert ablation.attrs["sum_squared_error"] == pytest.approx(
        np.square(X_test - reconstruct(model, X_test)).sum())
    # the library's own brute force agrees too
    np.testing.assert_allclose(latent_ablation(model, X_test, method="brute_force")
                               ["error_increase"], expected, rtol=1e-8,
                               atol=1e-8 * np.abs(expected).max())


def test_ablation_of_a_full_pca_is_the_explained_variance_ratio():
    X = _counts()
    pca = PCA().fit(X)
    ablation = latent_ablation(pca, X)
    # nothing is left over: removing a component loses exactly its variance
    np.testing.assert_allclose(ablation["error_increase_fraction"],
                               pca.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(ablation["active_fraction"], 1.0)
    assert list(ablation.index) == list(range(X.shape[1]))
    assert ablation.index.name == "latent"


def test_ablation_with_sparse_codes_and_active_fraction(msae):
    X = _counts(seed=1)
    dense = latent_ablation(msae, X)
    sparse_model = copy.deepcopy(msae).set_params(sparse_output=True)
    assert sparse.issparse(sparse_model.transform(X))
    sparse_ablation = latent_ablation(sparse_model, X)
    np.testing.assert_allclose(sparse_ablation["error_increase"], dense["error_increase"],
                               rtol=1e-5, atol=1e-6)
    codes = msae.transform(X)
    np.testing.assert_allclose(dense["active_fraction"], (codes != 0).mean(axis=0))
    never_active = np.flatnonzero((codes == 0).all(axis=0))
    assert np.all(dense["error_increase"].to_numpy()[never_active] == 0.0)


def test_poisson_decoder_falls_back_to_brute_force():
    X_train, X_test = _counts(seed=0), _counts(seed=1)
    model = MatryoshkaSAE(n_latents=12, k=3, max_iter=3, loss="poisson", random_state=0,
                          n_threads=1).fit(X_train)
    ablation = latent_ablation(model, X_test)
    assert ablation.attrs["method"] == "brute_force"
    np.testing.assert_allclose(ablation["error_increase"], _brute_force(model, X_test),
                               rtol=1e-8, atol=1e-6)
    with pytest.raises(ValueError, match="affine"):
        latent_ablation(model, X_test, method="closed_form")


def test_ablation_of_a_model_fitted_on_a_dataframe(recwarn):
    X = pd.DataFrame(_counts(), columns=[f"unit{i}" for i in range(10)])
    pca = PCA(n_components=3).set_output(transform="pandas").fit(X)
    ablation = latent_ablation(pca, X)
    assert not [w for w in recwarn if "feature names" in str(w.message)]
    np.testing.assert_allclose(ablation["error_increase"], _brute_force(pca, X.to_numpy()))


def test_ablation_refuses_bad_arguments():
    X = _counts()
    pca = PCA(n_components=2).fit(X)
    with pytest.raises(ValueError, match="method"):
        latent_ablation(pca, X, method="exact")
    with pytest.raises(ValueError, match="finite"):
        latent_ablation(pca, np.where(X == 0, np.nan, X))


# --------------------------------------------------------- spectral fidelity
def test_a_missing_frequency_shows_in_its_band():
    fs = 100.0
    t = np.arange(4000) / fs
    slow, fast = np.sin(2 * np.pi * 3.0 * t), np.sin(2 * np.pi * 30.0 * t)
    X = np.column_stack([slow + fast, slow])
    X_hat = np.column_stack([slow, slow])  # the 30 Hz component is lost
    bands = [(0.0, 10.0), (20.0, 40.0), (40.0, 50.0)]
    result = spectral_fidelity(X, X_hat, fs=fs, nperseg=200, bands=bands)
    assert result.frequencies[-1] == pytest.approx(fs / 2)
    assert result.power.shape == result.power_hat.shape == (101, 2)
    np.testing.assert_allclose(result.band_relative_error[0], 0.0, atol=1e-9)
    assert result.band_relative_error[1, 0] == pytest.approx(-1.0, abs=1e-6)
    assert result.band_relative_error[1, 1] == pytest.approx(0.0, abs=1e-9)
    assert result.band_power[1, 1] < 1e-6 * result.band_power[1, 0]
    # equal amplitudes: half the power of unit 0 is missing; unit 1 is exact
    assert result.relative_error[0] == pytest.approx(0.5, abs=0.01)
    assert result.relative_error[1] == pytest.approx(0.0, abs=1e-9)
    # the power of a unit-amplitude sinusoid is 1/2, wherever its band
    assert result.band_power[0, 0] == pytest.approx(0.5, rel=0.02)
    assert result.band_power[1, 0] == pytest.approx(0.5, rel=0.02)
    assert result.n_intervals == 1 and result.n_segments == 39


def test_default_bands_are_octaves_below_nyquist():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1024, 3))
    result = spectral_fidelity(X, X, fs=20.0)
    np.testing.assert_allclose(result.bands, [[0, 1.25], [1.25, 2.5], [2.5, 5], [5, 10]])
    np.testing.assert_allclose(result.relative_error, 0.0)
    # the bands cover every frequency once: their power is the whole spectrum's
    step = result.frequencies[1] - result.frequencies[0]
    np.testing.assert_allclose(result.band_power.sum(axis=0),
                               result.power.sum(axis=0) * step)


def test_spectra_are_computed_per_interval_and_never_across_joins():
    fs, n_per_interval, n_intervals = 50.0, 200, 6
    rng = np.random.default_rng(0)
    t = np.arange(n_per_interval) / fs
    # one sinusoid per interval, each with its own phase: the joins are jumps
    pieces = [np.sin(2 * np.pi * 5.0 * t + phase)[:, None]
              for phase in rng.uniform(0, 2 * np.pi, n_intervals)]
    X = np.vstack(pieces)
    X_hat = 0.5 * X
    ids = np.repeat(np.arange(n_intervals), n_per_interval)
    result = spectral_fidelity(X, X_hat, fs=fs, nperseg=100, interval_ids=ids)
    _, expected = signal.welch(pieces[0], fs=fs, nperseg=100, axis=0)
    for piece in pieces[1:]:
        expected = expected + signal.welch(piece, fs=fs, nperseg=100, axis=0)[1]
    np.testing.assert_allclose(result.power, expected / n_intervals)
    np.testing.assert_allclose(result.power_hat, 0.25 * result.power)
    assert result.n_intervals == n_intervals and result.n_segments == 3 * n_intervals
    # the order of the intervals does not matter: no segment spans a join
    order = rng.permutation(n_intervals)
    shuffled = spectral_fidelity(np.vstack([pieces[i] for i in order]),
                                 0.5 * np.vstack([pieces[i] for i in order]),
                                 fs=fs, nperseg=100, interval_ids=ids)
    np.testing.assert_allclose(shuffled.power, result.power)
    # across joins the jumps add power away from 5 Hz
    crossing = spectral_fidelity(X, X_hat, fs=fs, nperseg=100)
    high = result.frequencies > 10.0
    assert crossing.power[high].sum() > 10 * result.power[high].sum()


def test_short_intervals_are_skipped_and_the_default_segment_fits_the_shortest():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    ids = np.repeat([0, 1, 2], [200, 60, 40])
    assert spectral_fidelity(X, X, interval_ids=ids).n_intervals == 3  # nperseg 40
    result = spectral_fidelity(X, X, nperseg=64, interval_ids=ids)
    assert result.n_intervals == 1 and result.n_segments == 5
    with pytest.raises(ValueError, match="nperseg"):
        spectral_fidelity(X, X, nperseg=256, interval_ids=ids)


def test_spectral_fidelity_refuses_bad_arguments():
    X = np.random.default_rng(0).normal(size=(100, 2))
    with pytest.raises(ValueError, match="same shape"):
        spectral_fidelity(X, X[:, :1])
    with pytest.raises(ValueError, match="bands"):
        spectral_fidelity(X, X, bands=[(0.3, 0.1)])
    with pytest.raises(ValueError, match="fs"):
        spectral_fidelity(X, X, fs=0)
    with pytest.raises(ValueError, match="interval_ids"):
        spectral_fidelity(X, X, interval_ids=np.zeros(99))
    with pytest.raises(ValueError, match="noverlap"):
        spectral_fidelity(X, X, nperseg=20, noverlap=20)


# ---------------------------------------------------- reconstruction per lag
def _windows(X, n_bins_window):
    """Lag-major windows, oldest bin first: row t holds X[t - n + 1 : t + 1]."""
    return np.stack([X[t - n_bins_window + 1 : t + 1].ravel()
                     for t in range(n_bins_window - 1, len(X))])


def test_reconstruction_per_lag_on_a_constructed_case():
    rng = np.random.default_rng(0)
    n_units, n_bins_window = 4, 3
    X = rng.normal(size=(400, n_units)) * np.arange(1, n_units + 1)
    windows = _windows(X, n_bins_window)
    # the oldest bin of a window is column block 0, the window's own bin the last
    np.testing.assert_array_equal(windows[:, -n_units:], X[n_bins_window - 1 :])
    np.testing.assert_array_equal(windows[:, :n_units], X[: len(X) - n_bins_window + 1])
    # shrink each column block towards its mean by a: its explained variance is 1 - a^2
    shrink_per_block = np.array([0.9, 0.5, 0.0])  # oldest bin first, as the columns
    mean = windows.mean(axis=0)
    factors = np.repeat(shrink_per_block, n_units)
    reconstruction = (1 - factors) * windows + factors * mean
    per_lag = reconstruction_per_lag(windows, reconstruction, n_bins_window, n_units)
    # the result is in lag order: lag 0 (the window's own bin, last block) first
    np.testing.assert_allclose(per_lag, 1 - shrink_per_block[::-1] ** 2)
    # a lag's block pools its units as explained_variance does
    assert per_lag[2] == pytest.approx(explained_variance(
        windows[:, :n_units], reconstruction[:, :n_units]))
    assert per_lag[1] == pytest.approx(explained_variance(
        windows[:, n_units : 2 * n_units], reconstruction[:, n_units : 2 * n_units]))


def test_reconstruction_per_lag_refuses_a_wrong_layout():
    windows = np.zeros((10, 6))
    with pytest.raises(ValueError, match="n_bins_window \\* n_units"):
        reconstruction_per_lag(windows, windows, 4, 2)
    with pytest.raises(ValueError, match="n_units"):
        reconstruction_per_lag(windows, windows, 3, 0)
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_per_lag(windows, windows[:, :4], 3, 2)


def test_the_layout_is_that_of_the_time_windows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    windows = TimeWindows(4).fit_transform(X)
    # rows with a full history are the windows built here
    np.testing.assert_array_equal(windows[3:], _windows(X, 4))
    reconstruction = windows.copy()
    reconstruction[:, -3:] = windows[:, -3:].mean(axis=0)  # lag 0 lost
    np.testing.assert_allclose(reconstruction_per_lag(windows, reconstruction, 4, 3),
                               [0.0, 1.0, 1.0, 1.0], atol=1e-12)
