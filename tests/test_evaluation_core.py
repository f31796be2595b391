"""Core checks of the evaluation subpackage: bits per spike, readout, co-smoothing, controls."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from sklearn_nldisco.evaluation import (
    CoSmoothing,
    PoissonReadout,
    bits_per_spike,
    shift_units,
    single_unit_dominance,
    single_unit_fraction,
    structure_control,
)


def _population(n=2400, n_units=24, shared=True, seed=0):
    rng = np.random.default_rng(seed)
    if shared:
        latent = rng.normal(size=(n, 2))
        rate = np.exp(0.7 * latent @ rng.normal(size=(2, n_units)) - 0.5)
    else:
        rate = np.full((n, n_units), 0.8)
    return rng.poisson(rate).astype(float)


def test_bits_per_spike_by_hand():
    counts = np.array([[0.0, 1.0], [3.0, 1.0]])
    rates = np.array([[0.5, 1.0], [2.0, 1.0]])
    mean = counts.mean(axis=0)
    ll = (counts * np.log(rates) - rates).sum() - (counts * np.log(mean) - mean).sum()
    assert bits_per_spike(counts, rates) == pytest.approx(ll / (counts.sum() * np.log(2)))
    assert bits_per_spike(counts, np.broadcast_to(mean, counts.shape).copy()) == pytest.approx(0)
    assert np.isnan(bits_per_spike(np.zeros((2, 2)), np.ones((2, 2))))
    with pytest.raises(ValueError, match="shape"):
        bits_per_spike(counts, rates[:1])
    with pytest.raises(ValueError, match="non-negative"):
        bits_per_spike(-counts, rates)


def test_readout_recovers_weights_and_caps_rates():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(4000, 3))
    true = np.array([[0.6, -0.4, 0.0], [0.0, 0.3, 0.5]])
    Y = rng.poisson(np.exp(Z @ true.T + 0.2))
    readout = PoissonReadout().fit(Z, Y)
    np.testing.assert_allclose(readout.coef_, true, atol=0.06)
    np.testing.assert_allclose(readout.intercept_, 0.2, atol=0.06)
    assert np.all(readout.predict(100 * Z[:5]) <= Y.max(axis=0))


def test_readout_penalises_noise_features_more():
    rng = np.random.default_rng(2)
    signal = rng.normal(size=(3000, 1))
    noise = rng.normal(size=(3000, 40))
    y = rng.poisson(np.exp(0.8 * signal[:, 0]))
    chosen_signal = PoissonReadout().fit(signal, y).alpha_[0]
    chosen_noise = PoissonReadout().fit(noise, y).alpha_[0]
    assert chosen_noise > chosen_signal


def test_co_smoothing_sees_shared_structure_only():
    structured = _population(shared=True)
    independent = _population(shared=False)
    score = CoSmoothing(PCA(n_components=2)).fit(structured[:1800]).score(structured[1800:])
    null = CoSmoothing(PCA(n_components=2)).fit(independent[:1800]).score(independent[1800:])
    assert score > 0.1
    assert null < 0.01


def test_co_smoothing_rejects_bad_held_out():
    X = _population(n=200, n_units=4)
    for held_out in (np.array([0, 1, 2, 3]), np.array([7]), np.array([0.5])):
        with pytest.raises(ValueError):
            CoSmoothing(PCA(n_components=1), held_out=held_out).fit(X)
    model = CoSmoothing(PCA(n_components=1), held_out=np.array([1, 3])).fit(X)
    np.testing.assert_array_equal(model.held_out_units_, [1, 3])
    np.testing.assert_array_equal(model.held_in_units_, [0, 2])


def test_shift_units_keeps_units_and_breaks_their_relation():
    rng = np.random.default_rng(3)
    column = np.cumsum(rng.normal(size=500))
    X = np.column_stack([column, column])
    shifted = shift_units(X, random_state=0)
    for j in range(2):
        np.testing.assert_array_equal(np.sort(shifted[:, j]), np.sort(X[:, j]))
    assert np.corrcoef(shifted.T)[0, 1] < 0.9
    with pytest.raises(ValueError, match="min_shift"):
        shift_units(X, min_shift=400)


def test_structure_control_separates_structure_from_capacity():
    structured = _population(shared=True)
    independent = _population(shared=False)
    real = structure_control(PCA(n_components=2), structured[:1800], structured[1800:])
    null = structure_control(PCA(n_components=2), independent[:1800], independent[1800:])
    assert real.structure == pytest.approx(real.real - real.shifted)
    assert real.structure > 0.1
    assert abs(null.structure) < 0.02


def test_single_unit_dominance():
    rows = np.array([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    dominance = single_unit_dominance(rows)
    np.testing.assert_allclose(dominance[:2], [1.0, 1 / 3])
    assert np.isnan(dominance[2])
    assert single_unit_fraction(rows) == 0.5
    assert single_unit_fraction(rows, latents=[0]) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        single_unit_fraction(rows, threshold=1.5)
