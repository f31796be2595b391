"""Input and parameter validation of MatryoshkaSAE and MatryoshkaTranscoder.

Bad input must raise a ValueError whose message names the argument, the
offending value and what was expected. Degenerate but valid input (fewer
rows than a batch, a single row) must fit and code to finite numbers.
"""

import re

import numpy as np
import pytest

from conftest import assert_same_codes

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder

N_ROWS, N_FEATURES, N_TARGETS = 200, 10, 4
FAST = dict(n_latents=16, k=2, max_iter=2, batch_size=64, random_state=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(seed=0):
    rng = np.random.RandomState(seed)
    X = rng.poisson(2.0, size=(N_ROWS, N_FEATURES)).astype(np.float64)
    Y = X[:, :N_TARGETS] + rng.poisson(1.0, size=(N_ROWS, N_TARGETS))
    return X, Y


def _fit(estimator, X, Y):
    """Fit an estimator of either kind (the SAE ignores ``Y``)."""
    if isinstance(estimator, MatryoshkaTranscoder):
        return estimator.fit(X, Y)
    return estimator.fit(X)


ESTIMATORS = [MatryoshkaSAE, MatryoshkaTranscoder]


@pytest.fixture(scope="module")
def fitted():
    X, Y = _data()
    return {
        MatryoshkaSAE: MatryoshkaSAE(**FAST).fit(X),
        MatryoshkaTranscoder: MatryoshkaTranscoder(**FAST).fit(X, Y),
    }


def _message_names_argument(excinfo, argument):
    """The error message mentions ``argument`` as a word of its own."""
    message = str(excinfo.value)
    assert re.search(rf"\b{re.escape(argument)}\b", message), (
        f"the message does not name the argument {argument!r}: {message!r}"
    )


# ----------------------------------------------------------- non-finite data
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_nan_in_X(Estimator):
    X, Y = _data()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"Input X contains NaN"):
        _fit(Estimator(**FAST), X, Y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_inf_in_X(Estimator):
    X, Y = _data()
    X[5, 1] = np.inf
    with pytest.raises(ValueError, match=r"Input X contains infinity"):
        _fit(Estimator(**FAST), X, Y)


def test_nan_and_inf_in_y_transcoder():
    X, Y = _data()
    Y_nan = Y.copy()
    Y_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"Input y contains NaN"):
        MatryoshkaTranscoder(**FAST).fit(X, Y_nan)
    Y_inf = Y.copy()
    Y_inf[0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"Input y contains infinity"):
        MatryoshkaTranscoder(**FAST).fit(X, Y_inf)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_nan_at_transform(Estimator, fitted):
    X, _ = _data()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"Input X contains NaN"):
        fitted[Estimator].transform(X)


# -------------------------------------------------------- non-negative losses
@pytest.mark.parametrize("loss", ["poisson", "msle"])
def test_negative_X_with_count_loss_sae(loss):
    X, _ = _data()
    X[7, 3] = -2.5
    with pytest.raises(
        ValueError, match=rf"X has negative values \(minimum -2\.5\).*loss='{loss}'.*>= 0"
    ):
        MatryoshkaSAE(loss=loss, **FAST).fit(X)


@pytest.mark.parametrize("loss", ["poisson", "msle"])
def test_negative_y_with_count_loss_transcoder(loss):
    X, Y = _data()
    Y[4, 1] = -3.0
    with pytest.raises(
        ValueError, match=rf"y has negative values \(minimum -3\).*loss='{loss}'.*>= 0"
    ):
        MatryoshkaTranscoder(loss=loss, **FAST).fit(X, Y)


@pytest.mark.parametrize("loss", ["poisson", "msle"])
def test_negative_X_allowed_for_transcoder_input(loss):
    """Only the reconstructed target must be counts: a negative input is fine."""
    X, Y = _data()
    X = X - 3.0
    model = MatryoshkaTranscoder(loss=loss, **FAST).fit(X, Y)
    prediction = model.predict(X)
    assert np.all(np.isfinite(prediction))
    assert np.all(prediction >= 0)  # softplus output: a rate


# ------------------------------------------------------------- shape of data
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_1d_X(Estimator):
    X, Y = _data()
    with pytest.raises(ValueError, match=r"X must be 2-D .* 1-D array of shape \(200,\)") as excinfo:
        _fit(Estimator(**FAST), X[:, 0], Y)
    _message_names_argument(excinfo, "X")


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_empty_X(Estimator):
    X, Y = _data()
    with pytest.raises(
        ValueError, match=r"X is empty \(shape=\(0, 10\)\).*at least one sample"
    ) as excinfo:
        _fit(Estimator(**FAST), X[:0], Y[:0])
    _message_names_argument(excinfo, "X")


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_wrong_n_features_at_transform(Estimator, fitted):
    X, _ = _data()
    model = fitted[Estimator]
    pattern = rf"X has 5 features, but {Estimator.__name__} is expecting 10 features"
    with pytest.raises(ValueError, match=pattern):
        model.transform(X[:, :5])
    if Estimator is MatryoshkaSAE:
        with pytest.raises(ValueError, match=pattern):
            model.reconstruct(X[:, :5])
        with pytest.raises(ValueError, match=pattern):
            model.score(X[:, :5])
    else:
        with pytest.raises(ValueError, match=pattern):
            model.predict(X[:, :5])


# ------------------------------------------------- levels, k and their weights
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_k_larger_than_first_level(Estimator):
    X, Y = _data()
    model = Estimator(n_latents=32, level_sizes=(8, 16, 32), k=12, max_iter=1)
    with pytest.raises(
        ValueError, match=r"k=12 is larger than the first level \(level_sizes\[0\]=8\)"
    ) as excinfo:
        _fit(model, X, Y)
    assert "expected k <= level_sizes[0]" in str(excinfo.value)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_level_sizes_not_increasing(Estimator):
    X, Y = _data()
    model = Estimator(n_latents=32, level_sizes=(16, 8, 32), k=2, max_iter=1)
    with pytest.raises(
        ValueError, match=r"level_sizes=\(16, 8, 32\).*strictly increasing"
    ):
        _fit(model, X, Y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_last_level_differs_from_n_latents(Estimator):
    X, Y = _data()
    model = Estimator(n_latents=32, level_sizes=(8, 16, 24), k=2, max_iter=1)
    with pytest.raises(
        ValueError,
        match=r"level_sizes=\(8, 16, 24\) contradicts n_latents=32.*level_sizes\[-1\] == n_latents",
    ):
        _fit(model, X, Y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_k_larger_than_n_latents(Estimator):
    X, Y = _data()
    with pytest.raises(
        ValueError, match=r"k=20 is larger than n_latents=16.*1 <= k <= n_latents"
    ):
        _fit(Estimator(n_latents=16, k=20, max_iter=1), X, Y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_level_weights_wrong_length(Estimator):
    X, Y = _data()
    model = Estimator(n_latents=32, k=2, level_weights=(1.0, 2.0), max_iter=1)
    with pytest.raises(
        ValueError,
        match=r"level_weights=\(1\.0, 2\.0\) has 2 entries but there are 3 levels.*one weight per level",
    ):
        _fit(model, X, Y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize("level", [5, 3, -4, 1.0])
def test_invalid_level_in_decoding(Estimator, fitted, level):
    X, _ = _data()
    model = fitted[Estimator]
    assert len(model.level_sizes_) == 3
    codes = model.transform(X)
    pattern = rf"level={re.escape(repr(level))} is not a valid level.*\[-3, 2\]"
    with pytest.raises(ValueError, match=pattern):
        model.inverse_transform(codes, level=level)
    if Estimator is MatryoshkaSAE:
        with pytest.raises(ValueError, match=pattern):
            model.reconstruct(X, level=level)
    else:
        with pytest.raises(ValueError, match=pattern):
            model.predict(X, level=level)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_inverse_transform_wrong_number_of_columns(Estimator, fitted):
    model = fitted[Estimator]
    with pytest.raises(
        ValueError, match=rf"X has 7 columns but {Estimator.__name__} has n_latents=16"
    ):
        model.inverse_transform(np.zeros((3, 7)))


# ------------------------------------------------------ small but valid data
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_fewer_samples_than_a_batch(Estimator):
    X, Y = _data()
    X, Y = X[:50], Y[:50]
    model = _fit(
        Estimator(n_latents=16, k=2, batch_size=1024, max_iter=3, random_state=0), X, Y
    )
    assert model.n_iter_ >= 1
    codes = model.transform(X)
    assert codes.shape == (50, 16)
    assert np.all(np.isfinite(codes))
    assert np.all(np.isfinite(model.inverse_transform(codes)))
    assert np.isfinite(model.score(X, Y if Estimator is MatryoshkaTranscoder else None))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
def test_single_row_fits(Estimator, sparsity):
    X, Y = _data()
    model = _fit(
        Estimator(n_latents=16, k=2, sparsity=sparsity, max_iter=2, random_state=0),
        X[:1], Y[:1],
    )
    assert model.n_features_in_ == N_FEATURES
    codes = model.transform(X[:1])
    assert codes.shape == (1, 16)
    assert np.all(np.isfinite(codes))
    assert np.all(np.isfinite(model.inverse_transform(codes)))
    # codes of unseen rows are finite too
    assert np.all(np.isfinite(model.transform(X[1:20])))


# ------------------------------------------------ row independence and L0
@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
def test_row_code_does_not_depend_on_other_rows(Estimator, sparsity):
    X, Y = _data()
    model = _fit(
        Estimator(n_latents=24, k=3, sparsity=sparsity, max_iter=3, batch_size=64,
                  random_state=0),
        X, Y,
    )
    codes = model.transform(X)
    assert np.count_nonzero(codes) > 0
    for i in (0, 1, 17, N_ROWS - 1):
        assert_same_codes(model.transform(X[i : i + 1])[0], codes[i])
    # a row coded among other, different rows gets the same code as well
    shuffled = np.random.RandomState(1).permutation(N_ROWS)
    assert_same_codes(model.transform(X[shuffled]), codes[shuffled])
    assert_same_codes(model.transform(X[50:60]), codes[50:60])


@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
def test_row_code_does_not_depend_on_chunking(sparsity):
    """Long inputs are coded in chunks (possibly in threads): same codes per row."""
    X, _ = _data()
    model = MatryoshkaSAE(
        n_latents=24, k=3, sparsity=sparsity, max_iter=3, batch_size=64, random_state=0
    ).fit(X)
    rng = np.random.RandomState(2)
    X_long = rng.poisson(2.0, size=(1300, N_FEATURES)).astype(np.float64)
    codes = model.transform(X_long)
    assert codes.shape == (1300, 24)
    for i in (0, 511, 512, 1023, 1024, 1299):
        assert_same_codes(model.transform(X_long[i : i + 1])[0], codes[i])
    assert_same_codes(model.transform(X_long[500:530]), codes[500:530])
    assert_same_codes(model.transform(X_long[::-1]), codes[::-1])
    sparse = model.set_params(sparse_output=True).transform(X_long)
    assert_same_codes(sparse, codes)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_batchtopk_mean_l0_close_to_k(Estimator):
    X, Y = _data()
    k = 4
    model = _fit(
        Estimator(n_latents=32, k=k, sparsity="batchtopk", max_iter=5, batch_size=64,
                  random_state=0, code_refit="none"),
        X, Y,
    )
    l0 = np.count_nonzero(model.transform(X), axis=1)
    assert abs(l0.mean() - k) <= 0.1 * k, l0.mean()
    assert model.threshold_ > 0
    if Estimator is MatryoshkaSAE:
        # the refit keeps the encoder's support or drops latents from it
        refit = model.set_params(code_refit="nnls").transform(X)
        assert np.all((refit > 0) <= (model.set_params(code_refit="none").transform(X) > 0))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_topk_l0_at_most_k_per_row(Estimator):
    X, Y = _data()
    k = 3
    model = _fit(
        Estimator(n_latents=24, k=k, sparsity="topk", max_iter=5, batch_size=64,
                  random_state=0),
        X, Y,
    )
    codes = model.transform(X)
    l0 = np.count_nonzero(codes, axis=1)
    assert l0.max() <= k
    assert l0.mean() > 0
    assert np.all(codes >= 0)
    assert model.threshold_ == 0.0
