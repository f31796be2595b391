"""Tests for sklearn_nldisco/evaluation/: bits per spike, the Poisson readout,
co-smoothing, the smoothing baseline, unit shifts, the structure control and
single-unit dominance.

Small synthetic populations: units driven by a few shared latents (population
structure a model can find) against independent units (none to find).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import gammaln
from sklearn.cross_decomposition import PLSRegression
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.evaluation import (
    CoSmoothing,
    GaussianSmoother,
    PoissonReadout,
    bits_per_spike,
    bits_per_spike_per_unit,
    co_smoothing,
    co_smoothing_scorer,
    held_out_explained_variance,
    reconstruct,
    shift_units,
    single_unit_dominance,
    single_unit_fraction,
    structure_control,
)
from sklearn_nldisco.models import explained_variance


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """The readouts multiply small matrices: several BLAS threads on a busy
    machine make them many times slower, one is as fast as any."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _population(n_samples=2000, n_units=20, n_latents=2, shared=True, seed=0):
    """Poisson counts of units driven by ``n_latents`` slow shared latents, or of
    independent units with the same rate fluctuations (log-rate sd 0.7)."""
    rng = np.random.default_rng(seed)
    n_sources = n_latents if shared else n_units
    kernel = np.exp(-0.5 * (np.arange(-10, 11) / 2.0) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))  # unit-variance sources
    sources = np.column_stack([np.convolve(noise, kernel, "valid")
                               for noise in rng.normal(size=(n_sources, n_samples + 20))])
    if shared:
        weights = rng.normal(size=(n_latents, n_units))
        sources = sources @ (weights / np.linalg.norm(weights, axis=0))
    return rng.poisson(np.exp(0.7 * sources)).astype(np.float64)


# --------------------------------------------------------------------- bits per spike

def test_bits_per_spike_matches_a_hand_computation():
    counts = np.array([[0.0, 2.0], [3.0, 1.0], [1.0, 0.0]])
    rates = np.array([[0.5, 1.5], [2.0, 1.0], [1.0, 0.5]])
    mean = counts.mean(axis=0)  # [4/3, 1]

    def log_likelihood(rate):  # the full Poisson log-likelihood, log(k!) included
        return np.sum(counts * np.log(rate) - rate - gammaln(counts + 1))

    expected = (log_likelihood(rates) - log_likelihood(np.tile(mean, (3, 1)))) / (
        counts.sum() * np.log(2))
    assert bits_per_spike(counts, rates) == pytest.approx(expected, rel=1e-12)
    # per unit: the same sum, over each unit's own spikes
    per_unit = bits_per_spike_per_unit(counts, rates)
    for unit in range(2):
        c, r, m = counts[:, unit], rates[:, unit], mean[unit]
        gain = np.sum(c * np.log(r) - r) - np.sum(c * np.log(m) - m)
        assert per_unit[unit] == pytest.approx(gain / (c.sum() * np.log(2)), rel=1e-12)
    # pooled = per unit weighted by spikes
    assert bits_per_spike(counts, rates) == pytest.approx(
        np.sum(per_unit * counts.sum(axis=0)) / counts.sum())
    # another baseline
    baseline = np.array([1.0, 2.0])
    gain = log_likelihood(rates) - log_likelihood(np.tile(baseline, (3, 1)))
    assert bits_per_spike(counts, rates, baseline_rates=baseline) == pytest.approx(
        gain / (counts.sum() * np.log(2)))


def test_bits_per_spike_is_zero_for_the_mean_rate_and_positive_for_the_truth():
    rng = np.random.default_rng(0)
    true_rates = np.exp(rng.normal(size=(5000, 3)))
    counts = rng.poisson(true_rates).astype(float)
    mean = np.broadcast_to(counts.mean(axis=0), counts.shape)
    assert bits_per_spike(counts, mean) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(bits_per_spike_per_unit(counts, mean), 0.0, atol=1e-12)
    assert bits_per_spike(counts, true_rates) > 0.2
    # half the true modulation is still better than none, worse than all of it
    shrunk = np.exp(0.5 * np.log(true_rates)) * true_rates.mean() / np.exp(
        0.5 * np.log(true_rates)).mean()
    assert 0 < bits_per_spike(counts, shrunk) < bits_per_spike(counts, true_rates)


def test_bits_per_spike_without_spikes_is_nan():
    assert np.isnan(bits_per_spike(np.zeros((4, 2)), np.ones((4, 2))))
    counts = np.array([[0.0, 1.0], [0.0, 3.0]])
    per_unit = bits_per_spike_per_unit(counts, np.ones((2, 2)))
    assert np.isnan(per_unit[0]) and np.isfinite(per_unit[1])
    assert np.isfinite(bits_per_spike(counts, np.ones((2, 2))))


def test_bits_per_spike_zero_rate_where_a_spike_falls_is_finite_and_very_bad():
    counts = np.array([[1.0], [0.0]])
    bits = bits_per_spike(counts, np.array([[0.0], [0.0]]))
    assert np.isfinite(bits) and bits < -20


@pytest.mark.parametrize("counts, rates, baseline, message", [
    (np.ones(3), np.ones(3), None, "2-D"),
    (np.ones((3, 2)), np.ones((3, 1)), None, "shape"),
    (-np.ones((3, 2)), np.ones((3, 2)), None, "counts must be finite and non-negative"),
    (np.full((3, 2), np.nan), np.ones((3, 2)), None, "counts must be finite"),
    (np.ones((3, 2)), -np.ones((3, 2)), None, "rates must be finite and non-negative"),
    (np.ones((3, 2)), np.full((3, 2), np.inf), None, "rates must be finite"),
    (np.ones((3, 2)), np.ones((3, 2)), np.ones(3), "baseline_rates must have shape"),
    (np.ones((3, 2)), np.ones((3, 2)), -np.ones(2), "baseline_rates must be finite"),
])
def test_bits_per_spike_validation(counts, rates, baseline, message):
    for function in (bits_per_spike, bits_per_spike_per_unit):
        with pytest.raises(ValueError, match=message):
            function(counts, rates, baseline_rates=baseline)


# --------------------------------------------------------------------- PoissonReadout

def _glm_data(n_samples=4000, seed=1):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n_samples, 3))
    coef = np.array([[0.6, -0.4, 0.0], [0.0, 0.3, 0.5], [-0.5, 0.0, 0.2]])
    intercept = np.array([0.2, -0.3, 0.5])
    Y = rng.poisson(np.exp(Z @ coef.T + intercept)).astype(float)
    return Z, Y, coef, intercept


def test_readout_recovers_known_glm_weights():
    Z, Y, coef, intercept = _glm_data()
    readout = PoissonReadout().fit(Z, Y)
    np.testing.assert_allclose(readout.coef_, coef, atol=0.05)
    np.testing.assert_allclose(readout.intercept_, intercept, atol=0.05)
    assert readout.coef_.shape == (3, 3) and readout.alpha_.shape == (3,)
    assert readout.n_features_in_ == 3
    # weights on raw features: shifting and scaling a feature changes them accordingly
    moved = PoissonReadout().fit(np.column_stack([Z[:, 0] * 10 + 5, Z[:, 1:]]), Y)
    np.testing.assert_allclose(moved.coef_[:, 0] * 10, coef[:, 0], atol=0.05)
    rates = readout.predict(Z[:5])
    np.testing.assert_allclose(
        rates, np.minimum(np.exp(Z[:5] @ readout.coef_.T + readout.intercept_),
                          readout.max_rate_))


def test_readout_chooses_more_ridge_for_noise_features():
    rng = np.random.default_rng(2)
    n_samples = 3000
    signal = rng.normal(size=(n_samples, 1))
    noise = rng.normal(size=(n_samples, 30))
    driven = rng.poisson(np.exp(0.8 * signal[:, 0]))
    independent = rng.poisson(1.0, size=n_samples)
    # per output in one fit: the unit the features drive gets a weaker penalty
    features = np.column_stack([signal, noise])
    alphas = PoissonReadout().fit(features, np.column_stack([driven, independent])).alpha_
    assert alphas[1] > alphas[0]
    # across fits: pure-noise features get more ridge than an informative one
    assert (PoissonReadout().fit(noise, driven).alpha_[0]
            > PoissonReadout().fit(signal, driven).alpha_[0])
    # the choice is one of the candidates; a single candidate is taken as it is
    assert set(alphas) <= {1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0}
    assert PoissonReadout(alphas=(0.5,)).fit(signal, driven).alpha_[0] == 0.5


def test_readout_caps_rates_at_the_largest_training_count():
    Z, Y, _, _ = _glm_data(n_samples=1000)
    readout = PoissonReadout().fit(Z, Y)
    np.testing.assert_array_equal(readout.max_rate_, Y.max(axis=0))
    extreme = readout.predict(100 * Z[:50])
    assert np.all(extreme <= Y.max(axis=0))
    assert np.any(np.isclose(extreme, Y.max(axis=0)))  # the cap binds
    assert np.all(np.isfinite(extreme))


def test_readout_sparse_input_gives_the_dense_fit():
    rng = np.random.default_rng(3)
    codes = np.maximum(rng.normal(size=(1500, 6)) - 1.0, 0.0)  # sparse, like SAE codes
    Y = rng.poisson(np.exp(0.5 * codes[:, :2] - 0.2)).astype(float)
    dense = PoissonReadout().fit(codes, Y)
    sparse = PoissonReadout().fit(sp.csr_matrix(codes), Y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(sparse.alpha_, dense.alpha_)
    np.testing.assert_allclose(sparse.predict(sp.csr_matrix(codes)), dense.predict(codes),
                               rtol=1e-6)


def test_readout_single_output_and_score():
    Z, Y, _, _ = _glm_data(n_samples=1500)
    readout = PoissonReadout().fit(Z, Y[:, 0])
    assert readout.predict(Z).shape == (1500,)
    assert readout.score(Z, Y[:, 0]) == pytest.approx(
        bits_per_spike(Y[:, :1], readout.predict(Z)[:, None]))
    assert readout.score(Z, Y[:, 0]) > 0.1
    with pytest.raises(ValueError, match="sample_weight"):
        readout.score(Z, Y[:, 0], sample_weight=np.ones(1500))


@pytest.mark.parametrize("alphas", [(), (0.0, 1.0), (-1.0,), (np.inf,)])
def test_readout_rejects_bad_alphas(alphas):
    Z, Y, _, _ = _glm_data(n_samples=100)
    with pytest.raises(ValueError, match="alphas must be positive"):
        PoissonReadout(alphas=alphas).fit(Z, Y)


def test_readout_input_errors():
    Z, Y, _, _ = _glm_data(n_samples=100)
    with pytest.raises(ValueError, match="non-negative"):
        PoissonReadout().fit(Z, -Y)
    with pytest.raises(ValueError, match="at least 10 rows"):
        PoissonReadout(cv=5).fit(Z[:9], Y[:9])
    PoissonReadout(alphas=(1.0,), cv=5).fit(Z[:9], Y[:9])  # no choice, no folds needed
    with pytest.raises(ValueError, match="cv"):
        PoissonReadout(cv=1).fit(Z, Y)


# Checks that cannot pass, and why.
READOUT_EXPECTED_FAILURES = {
    "check_regressors_train": "score is bits per spike, not R^2; the check wants > 0.5 on "
                              "continuous targets",
    "check_regressor_multioutput": "the check's multi-output targets are negative and a "
                                   "Poisson readout needs counts (it ignores positive_only)",
    "check_non_transformer_estimators_n_iter": "no n_iter_: max_iter bounds each of many "
                                               "L-BFGS runs (per alpha, fold and output)",
    "check_fit2d_1sample": "the error for one row names rows and the cross-validation "
                           "folds, not 'n_samples'",
}
SMOOTHER_EXPECTED_FAILURES = {
    "check_methods_sample_order_invariance": "rows are consecutive time bins: smoothing "
                                             "depends on their order by design",
    "check_methods_subset_invariance": "a row is smoothed with its neighbours, so a subset "
                                       "of rows is smoothed differently by design",
}


def _expected_failures(estimator):
    if isinstance(estimator, PoissonReadout):
        return READOUT_EXPECTED_FAILURES
    return SMOOTHER_EXPECTED_FAILURES


@parametrize_with_checks([PoissonReadout(), GaussianSmoother()],
                         expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------- co-smoothing

def test_co_smoothing_finds_shared_structure_only():
    structured = _population(shared=True)
    independent = _population(shared=False)
    model = CoSmoothing(PCA(n_components=2), held_out=0.25).fit(structured[:1500])
    assert model.score(structured[1500:]) > 0.1
    null = CoSmoothing(PCA(n_components=2), held_out=0.25).fit(independent[:1500])
    assert null.score(independent[1500:]) < 0.01
    per_unit = model.score_units(structured[1500:])
    assert per_unit.shape == (5,) and np.all(per_unit > 0)


def test_co_smoothing_held_out_as_fraction_or_indices():
    X = _population(n_samples=600)
    model = CoSmoothing(PCA(n_components=2), held_out=0.25, random_state=3).fit(X)
    assert len(model.held_out_units_) == 5
    assert np.all(np.diff(model.held_out_units_) > 0)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([model.held_in_units_, model.held_out_units_])), np.arange(20))
    again = CoSmoothing(PCA(n_components=2), held_out=0.25, random_state=3).fit(X)
    np.testing.assert_array_equal(again.held_out_units_, model.held_out_units_)
    other = CoSmoothing(PCA(n_components=2), held_out=0.25, random_state=4).fit(X)
    assert not np.array_equal(other.held_out_units_, model.held_out_units_)

    explicit = CoSmoothing(PCA(n_components=2), held_out=[7, 2, 2, -1]).fit(X)
    np.testing.assert_array_equal(explicit.held_out_units_, [2, 7, 19])
    assert explicit.predict(X).shape == (600, 3)
    # the held-out columns are not an input: changing them changes no prediction
    changed = X.copy()
    changed[:, [2, 7, 19]] = 0
    np.testing.assert_array_equal(explicit.predict(changed), explicit.predict(X))
    # as the readout: the model's transform of the held-in units
    features = explicit.estimator_.transform(X[:, explicit.held_in_units_])
    np.testing.assert_allclose(explicit.predict(X), explicit.readout_.predict(features))


@pytest.mark.parametrize("held_out, error, message", [
    (0, ValueError, "held_out"),
    (1, ValueError, "held_out"),
    (1.5, ValueError, "held_out"),
    (0.01, ValueError, "leaves no held-out or no held-in unit"),
    (0.99, ValueError, "leaves no held-out or no held-in unit"),
    ([0, 1, 2, 3], ValueError, "names every unit"),
    ([0, 4], ValueError, r"in \[0, 4\)"),
    ([-5], ValueError, r"in \[0, 4\)"),
    ([], ValueError, "non-empty"),
    ([0.5, 1.5], ValueError, "indices"),
])
def test_co_smoothing_rejects_bad_held_out(held_out, error, message):
    X = _population(n_samples=200, n_units=4)
    with pytest.raises(error, match=message):
        CoSmoothing(PCA(n_components=1), held_out=held_out).fit(X)


def test_co_smoothing_needs_counts():
    X = _population(n_samples=200)
    with pytest.raises(ValueError, match="non-negative"):
        CoSmoothing(PCA(n_components=1)).fit(X - 1)
    model = CoSmoothing(PCA(n_components=1)).fit(X)
    with pytest.raises(ValueError, match="non-negative"):
        model.score(X - 1)


def test_co_smoothing_fits_a_regressor_to_the_held_out_counts():
    X = _population(n_samples=800, n_units=12)
    model = CoSmoothing(PLSRegression(n_components=2), held_out=[1, 5, 9]).fit(X[:600])
    # fitted from the 9 held-in units to the 3 held-out units
    assert model.estimator_.coef_.shape == (3, 9)
    direct = PLSRegression(n_components=2).fit(X[:600, model.held_in_units_], X[:600, [1, 5, 9]])
    np.testing.assert_allclose(model.estimator_.coef_, direct.coef_)
    assert model.score(X[600:]) > 0

    transcoder = MatryoshkaTranscoder(n_latents=8, k=2, max_iter=3, random_state=0,
                                      n_threads=1)
    model = CoSmoothing(transcoder, held_out=[1, 5, 9]).fit(X[:600])
    assert model.estimator_.components_.shape == (8, 3)  # decodes to the held-out units
    assert model.estimator_.n_features_in_ == 9
    assert np.isfinite(model.score(X[600:]))


def test_co_smoothing_function_returns_the_fitted_model_and_scores():
    X = _population(n_samples=1200)
    result = co_smoothing(PCA(n_components=2), X[:900], X[900:], held_out=0.25,
                          random_state=1)
    assert set(result) == {"bits_per_spike", "bits_per_spike_per_unit", "held_out_units",
                           "model"}
    assert result.bits_per_spike == pytest.approx(result.model.score(X[900:]))
    np.testing.assert_allclose(result.bits_per_spike_per_unit,
                               result.model.score_units(X[900:]))
    np.testing.assert_array_equal(result.held_out_units, result.model.held_out_units_)
    assert result.bits_per_spike > 0.05


@pytest.mark.parametrize("scoring", [co_smoothing_scorer, None])
def test_co_smoothing_in_a_grid_search(scoring):
    X = _population(n_samples=1500, n_latents=2)
    search = GridSearchCV(CoSmoothing(PCA(), held_out=0.25),
                          {"estimator__n_components": [1, 2, 6]},
                          cv=KFold(n_splits=3, shuffle=False), scoring=scoring).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert scores[1] > scores[0]  # the second latent helps
    assert search.best_params_["estimator__n_components"] in (2, 6)
    # each fold's score is the refitted CoSmoothing's score on the held-out block
    train, test = list(KFold(n_splits=3).split(X))[0]
    fold = CoSmoothing(PCA(n_components=1), held_out=0.25).fit(X[train])
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(fold.score(X[test]))


def test_co_smoothing_scorer_needs_a_co_smoothing_model():
    X = _population(n_samples=300)
    model = CoSmoothing(PCA(n_components=2)).fit(X)
    assert co_smoothing_scorer(model, X) == model.score(X)
    with pytest.raises(TypeError, match="CoSmoothing"):
        co_smoothing_scorer(PCA(n_components=2).fit(X), X)


# --------------------------------------------------------------------- GaussianSmoother

def test_smoother_sigma_zero_is_the_identity():
    X = _population(n_samples=50, n_units=3)
    smoothed = GaussianSmoother(sigma=0).fit_transform(X)
    np.testing.assert_array_equal(smoothed, X)
    assert smoothed is not X


def test_smoother_smooths_each_column_over_rows_and_keeps_totals():
    X = np.zeros((21, 2))
    X[10, 0] = 1.0
    smoothed = GaussianSmoother(sigma=2.0).fit_transform(X)
    np.testing.assert_array_equal(smoothed[:, 1], 0.0)  # no mixing between columns
    assert smoothed[:, 0].argmax() == 10
    np.testing.assert_allclose(smoothed[:, 0], smoothed[::-1, 0])
    assert smoothed[:, 0].sum() == pytest.approx(1.0)
    counts = _population(n_samples=80, n_units=4)
    np.testing.assert_allclose(GaussianSmoother(1.5).fit_transform(counts).sum(axis=0),
                               counts.sum(axis=0))  # reflected edges keep the totals


def test_smoother_never_mixes_rows_of_different_calls():
    X = _population(n_samples=100, n_units=3)
    smoother = GaussianSmoother(sigma=2.0).fit(X)
    first, second = smoother.transform(X[:60]), smoother.transform(X[60:])
    # each block is smoothed on its own: the same as a fresh smoother on that block alone
    np.testing.assert_array_equal(second, GaussianSmoother(sigma=2.0).fit_transform(X[60:]))
    np.testing.assert_array_equal(smoother.transform(X[:60]), first)
    whole = smoother.transform(X)
    assert not np.allclose(whole[55:65], np.vstack([first, second])[55:65])
    np.testing.assert_allclose(whole[:40], first[:40], atol=1e-3)  # far from the cut


def test_smoother_is_stateless():
    X = _population(n_samples=40, n_units=3)
    np.testing.assert_array_equal(GaussianSmoother(1.0).transform(X),
                                  GaussianSmoother(1.0).fit(X).transform(X))
    with pytest.raises(ValueError, match="features"):
        GaussianSmoother(1.0).fit(X).transform(X[:, :2])
    with pytest.raises(ValueError, match="sigma"):
        GaussianSmoother(sigma=-1.0).fit(X)


# --------------------------------------------------------------------- shift_units

def _correlated_columns(n_samples=1000, seed=0):
    rng = np.random.default_rng(seed)
    column = np.convolve(rng.normal(size=n_samples + 10), np.ones(5), "valid")[:n_samples]
    return np.column_stack([column, column, column])


def test_shift_units_keeps_each_column_and_breaks_their_relation():
    X = _correlated_columns()
    assert np.corrcoef(X.T)[0, 1] == pytest.approx(1.0)
    shifted = shift_units(X, random_state=0)
    for j in range(X.shape[1]):
        np.testing.assert_array_equal(np.sort(shifted[:, j]), np.sort(X[:, j]))
    correlation = np.corrcoef(shifted.T)
    assert np.all(np.abs(correlation[np.triu_indices(3, 1)]) < 0.3)


def test_shift_units_is_a_circular_shift_of_at_least_min_shift():
    X = _correlated_columns(n_samples=200)
    shifted = shift_units(X, random_state=1, min_shift=30)
    for j in range(X.shape[1]):
        offsets = [offset for offset in range(200)
                   if np.array_equal(np.roll(X[:, j], offset), shifted[:, j])]
        assert len(offsets) == 1 and 30 <= offsets[0] <= 170
    np.testing.assert_array_equal(shift_units(X, random_state=1, min_shift=30), shifted)
    assert not np.array_equal(shift_units(X, random_state=2, min_shift=30), shifted)


@pytest.mark.parametrize("min_shift", [0, 101, 2.5, -3])
def test_shift_units_rejects_bad_min_shift(min_shift):
    with pytest.raises(ValueError, match="min_shift"):
        shift_units(np.ones((200, 2)), min_shift=min_shift)


def test_shift_units_needs_2d_rows():
    with pytest.raises(ValueError, match="2-D"):
        shift_units(np.ones(10))
    with pytest.raises(ValueError, match="at least 2 rows"):
        shift_units(np.ones((1, 3)))


# --------------------------------------------------------------------- structure_control

def _low_rank(n_samples=1600, n_units=16, seed=0):
    rng = np.random.default_rng(seed)
    sources = _correlated_columns(n_samples + 200, seed)[:, :1]
    sources = np.column_stack([sources, np.roll(sources, 50)])[:n_samples]
    signal = sources @ rng.normal(size=(2, n_units))
    return signal + 0.5 * rng.normal(size=(n_samples, n_units))


def test_structure_control_explained_variance():
    X = _low_rank()
    real = structure_control(PCA(n_components=2), X[:1200], X[1200:])
    assert real.structure == pytest.approx(real.real - real.shifted)
    assert real.structure > 0.3
    assert real.real == pytest.approx(
        held_out_explained_variance(PCA(n_components=2), X[:1200], X[1200:]))
    assert real.shifted == pytest.approx(held_out_explained_variance(
        PCA(n_components=2), shift_units(X[:1200], random_state=0),
        shift_units(X[1200:], random_state=1000)))

    rng = np.random.default_rng(1)
    independent = np.column_stack([_correlated_columns(1600, seed)[:, 0]
                                   for seed in range(16)]) + rng.normal(size=(1600, 16))
    null = structure_control(PCA(n_components=2), independent[:1200], independent[1200:],
                             n_controls=3)
    assert abs(null.structure) < 0.05
    assert len(null.shifted_each) == 3
    assert null.shifted == pytest.approx(np.mean(null.shifted_each))


def test_structure_control_co_smoothing():
    X = _population(n_samples=1600, n_units=16)
    result = structure_control(PCA(n_components=2), X[:1200], X[1200:],
                               metric="co_smoothing", held_out=[0, 5, 10, 15])
    assert result.real == pytest.approx(co_smoothing(
        PCA(n_components=2), X[:1200], X[1200:], held_out=[0, 5, 10, 15]).bits_per_spike)
    assert result.real > 0.1
    assert result.shifted < 0.02  # the held-in units no longer predict the held-out ones
    assert result.structure == pytest.approx(result.real - result.shifted)


def test_structure_control_validation():
    X = _low_rank(n_samples=200, n_units=4)
    with pytest.raises(ValueError, match="metric"):
        structure_control(PCA(1), X[:150], X[150:], metric="r2")
    with pytest.raises(TypeError, match="held_out"):
        structure_control(PCA(1), X[:150], X[150:], held_out=0.5)
    with pytest.raises(ValueError, match="n_controls"):
        structure_control(PCA(1), X[:150], X[150:], n_controls=0)
    with pytest.raises(ValueError, match="random_state"):
        structure_control(PCA(1), X[:150], X[150:], random_state=None)


def test_reconstruct():
    X = _low_rank(n_samples=300, n_units=6)
    pca = PCA(n_components=6).fit(X)
    np.testing.assert_allclose(reconstruct(pca, X), X, atol=1e-8)
    fa = FactorAnalysis(n_components=2, random_state=0).fit(X)
    assert not hasattr(fa, "inverse_transform")
    np.testing.assert_allclose(reconstruct(fa, X), fa.transform(X) @ fa.components_ + fa.mean_)
    assert explained_variance(X, reconstruct(fa, X)) > 0.5
    with pytest.raises(TypeError, match="cannot reconstruct"):
        reconstruct(GaussianSmoother().fit(X), X)


# --------------------------------------------------------------------- single-unit dominance

def test_single_unit_dominance_of_hand_made_rows():
    rows = np.array([[3.0, 0.0, 0.0, 0.0],
                     [1.0, 1.0, 1.0, 1.0],
                     [0.0, -2.0, 1.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0]])
    dominance = single_unit_dominance(rows)
    np.testing.assert_allclose(dominance[:3], [1.0, 0.25, 0.8])
    assert np.isnan(dominance[3])
    # a model's components_ are read the same way
    pca = PCA(n_components=2).fit(_low_rank(n_samples=200, n_units=5))
    np.testing.assert_array_equal(single_unit_dominance(pca),
                                  single_unit_dominance(pca.components_))
    with pytest.raises(ValueError, match="2-D"):
        single_unit_dominance(np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        single_unit_dominance(np.array([[np.nan, 1.0]]))


def test_single_unit_dominance_undoes_the_models_scaling():
    rng = np.random.default_rng(0)
    X = rng.poisson(2.0, size=(300, 6)).astype(float) * np.array([1, 1, 1, 1, 1, 20.0])
    model = MatryoshkaSAE(n_latents=16, k=2, max_iter=3, scaling="standard",
                          random_state=0, n_threads=1).fit(X)
    assert not np.allclose(model.target_scale_, 1.0)
    in_data_units = model.components_ * model.target_scale_[None, :]
    np.testing.assert_allclose(single_unit_dominance(model),
                               single_unit_dominance(in_data_units))
    assert not np.allclose(single_unit_dominance(model),
                           single_unit_dominance(model.components_))


def test_single_unit_fraction():
    rows = np.array([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    # dominance: 1, 1/3, 16/17.25 (0.93); the zero row is not counted
    assert single_unit_fraction(rows) == pytest.approx(2 / 3)
    assert single_unit_fraction(rows, threshold=0.95) == pytest.approx(1 / 3)
    assert single_unit_fraction(rows, latents=[1]) == 0.0
    assert single_unit_fraction(rows, latents=[0, 2]) == 1.0
    assert single_unit_fraction(rows, latents=np.array([0, 1])) == 0.5
    assert np.isnan(single_unit_fraction(rows, latents=[]))
    assert np.isnan(single_unit_fraction(rows, latents=[3]))  # only a zero row
    for threshold in (0, 1, 1.5, "0.8"):
        with pytest.raises(ValueError, match="threshold"):
            single_unit_fraction(rows, threshold=threshold)
    for latents in ([4], [-1]):
        with pytest.raises(ValueError, match="latents"):
            single_unit_fraction(rows, latents=latents)
