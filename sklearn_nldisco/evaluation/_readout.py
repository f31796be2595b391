"""A Poisson GLM readout from features to spike counts, and bits per spike."""

import numbers

import numpy as np
from scipy import optimize, sparse
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

# the linear predictor is clipped here before exp, so a diverging readout
# gives huge but finite rates instead of inf
_MAX_LOG_RATE = 20.0
# below this rate a Poisson log-likelihood is evaluated at this rate
_MIN_RATE = 1e-9


def bits_per_spike(counts, rates, *, baseline_rates=None):
    """Log-likelihood gain of predicted rates over the mean rate, per spike, in bits.

    ``(log L(rates) - log L(baseline)) / (n_spikes * ln 2)`` for Poisson
    counts, pooled over all units (the Neural Latents Benchmark's
    co-smoothing score). The baseline is each unit's mean count over the
    scored rows unless ``baseline_rates`` is given. Positive: the
    prediction beats the unit's mean rate; 0: no better; negative: worse.

    Parameters
    ----------
    counts : array-like of shape (n_samples, n_units)
        Observed spike counts (non-negative).
    rates : array-like of shape (n_samples, n_units)
        Predicted expected counts per row (positive; values below 1e-9 are
        evaluated at 1e-9).
    baseline_rates : array-like of shape (n_units,), default=None
        The baseline's constant rate per unit; None: ``counts.mean(axis=0)``.

    Returns
    -------
    bits : float
        Pooled bits per spike; NaN when ``counts`` has no spike.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.evaluation import bits_per_spike
    >>> counts = np.array([[0.0], [2.0], [0.0], [2.0]])
    >>> round(bits_per_spike(counts, np.ones_like(counts)), 6)
    0.0
    >>> bits_per_spike(counts, np.array([[0.1], [2.0], [0.1], [2.0]])) > 0
    True
    """
    counts, gain = _log_likelihood_gain(counts, rates, baseline_rates)
    n_spikes = counts.sum()
    if n_spikes == 0:
        return float("nan")
    return float(gain.sum() / (n_spikes * np.log(2.0)))


def bits_per_spike_per_unit(counts, rates, *, baseline_rates=None):
    """:func:`bits_per_spike` of each unit on its own (NaN for silent units).

    Parameters and baseline as for :func:`bits_per_spike`; returns an array
    of shape ``(n_units,)``.
    """
    counts, gain = _log_likelihood_gain(counts, rates, baseline_rates)
    n_spikes = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_spikes > 0, gain.sum(axis=0) / (n_spikes * np.log(2.0)), np.nan)


def _log_likelihood_gain(counts, rates, baseline_rates):
    """Checked counts, and the per-entry log-likelihood of ``rates`` minus the baseline's."""
    counts, rates, baseline = _check_counts_rates(counts, rates, baseline_rates)
    gain = _poisson_log_likelihood(counts, rates) - _poisson_log_likelihood(
        counts, np.broadcast_to(baseline, counts.shape))
    return counts, gain


def _check_counts_rates(counts, rates, baseline_rates):
    counts = np.asarray(counts, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"counts must be 2-D (n_samples, n_units); got shape {counts.shape}.")
    if rates.shape != counts.shape:
        raise ValueError(
            f"rates has shape {rates.shape} but counts has shape {counts.shape}; "
            "expected one rate per count."
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("counts must be finite and non-negative.")
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError("rates must be finite and non-negative.")
    if baseline_rates is None:
        baseline = counts.mean(axis=0)
    else:
        baseline = np.asarray(baseline_rates, dtype=np.float64)
        if baseline.shape != (counts.shape[1],):
            raise ValueError(
                f"baseline_rates must have shape ({counts.shape[1]},); got {baseline.shape}."
            )
        if not np.all(np.isfinite(baseline)) or np.any(baseline < 0):
            raise ValueError("baseline_rates must be finite and non-negative.")
    return counts, rates, baseline


def _poisson_log_likelihood(counts, rates):
    """Per-entry Poisson log-likelihood without the ``log(counts!)`` term."""
    return counts * np.log(np.maximum(rates, _MIN_RATE)) - rates


class PoissonReadout(RegressorMixin, BaseEstimator):
    """Poisson GLMs from features to every output unit, with ridge chosen by time blocks.

    Each output unit ``j`` gets ``rate_j = exp(Z w_j + b_j)``, fitted by
    maximising the Poisson log-likelihood minus ``alpha_j / 2 ||w_j||^2``
    (the intercept is not penalised), on the features centred and divided
    by one common scale (their root mean variance over the training rows).
    The features are not standardised one by one: the penalty weighs each
    feature in its own units, so a rarely active latent or a weak,
    noise-dominated component cannot take a large weight cheaply (with
    per-feature standardisation the smoothing baseline on M1 scored 0.041
    bits per spike instead of 0.059). ``alpha_j`` is chosen **per unit** from ``alphas`` by
    cross-validation over ``cv`` contiguous blocks of the training rows
    (rows are time bins, which are correlated, so blocks rather than
    shuffled rows), as the value with the highest held-out log-likelihood
    summed over the folds; the model is then refitted on all training rows.
    Nothing is chosen on data passed to ``predict`` or ``score``.

    ``predict`` caps each unit's rate at its largest training count
    (``max_rate_``): an exponential link extrapolates features outside their
    training range to absurd rates (thousands of spikes per bin), which
    would let one bin dominate a log-likelihood.

    This is the readout of the co-smoothing protocol
    (:class:`CoSmoothing`): from the latents of held-in units to the counts
    of held-out units.

    Parameters
    ----------
    alphas : array-like of float, default=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
        Candidate ridge strengths (positive; the penalty is on the mean
        log-likelihood per row, on the commonly scaled features). A single value
        skips cross-validation. The path is fitted from the strongest
        penalty down, each fit starting from the previous one, and stops on
        a fold once every unit's held-out log-likelihood has started to
        fall (weaker penalties are then never chosen on that fold).
    cv : int, default=3
        Number of contiguous blocks of training rows for choosing alpha.
    max_iter : int, default=200
        Maximum L-BFGS iterations per fit.
    tol : float, default=1e-6
        L-BFGS tolerance on the projected gradient.

    Attributes
    ----------
    coef_ : ndarray of shape (n_outputs, n_features)
        Weights on the (unscaled) features.
    intercept_ : ndarray of shape (n_outputs,)
    alpha_ : ndarray of shape (n_outputs,)
        The ridge strength chosen for each output.
    max_rate_ : ndarray of shape (n_outputs,)
        The cap on predicted rates: each output's largest training count.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.evaluation import PoissonReadout
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(600, 3))
    >>> Y = rng.poisson(np.exp(0.5 * Z[:, :2]))
    >>> readout = PoissonReadout().fit(Z, Y)
    >>> readout.predict(Z).shape
    (600, 2)
    """

    _parameter_constraints = {
        "alphas": ["array-like"],
        "cv": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(self, alphas=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), *, cv=3, max_iter=200,
                 tol=1e-6):
        self.alphas = alphas
        self.cv = cv
        self.max_iter = max_iter
        self.tol = tol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit one Poisson GLM per column of ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Features, rows in time order (the cross-validation blocks are
            contiguous).
        y : array-like of shape (n_samples, n_outputs) or (n_samples,)
            Non-negative counts.

        Returns
        -------
        self : PoissonReadout
        """
        alphas = np.asarray(self.alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"alphas must be positive finite numbers; got {self.alphas!r}.")
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64,
                             multi_output=True, y_numeric=True)
        Y = np.asarray(y, dtype=np.float64)
        self._single_output = Y.ndim == 1
        Y = Y.reshape(len(Y), -1)
        if np.any(Y < 0):
            raise ValueError("y must be non-negative counts.")
        n_samples = X.shape[0]
        if len(alphas) > 1 and n_samples < 2 * self.cv:
            raise ValueError(
                f"PoissonReadout needs at least {2 * self.cv} rows to choose alpha by "
                f"{self.cv}-fold cross-validation; got {n_samples}."
            )
        basis = _Basis(X)
        P = basis.project(X)
        if len(alphas) == 1:
            chosen = np.full(Y.shape[1], alphas[0])
        else:
            chosen = self._choose_alphas(P, Y, np.sort(alphas)[::-1])
        V, b = _fit_glm(P, Y, chosen, max_iter=self.max_iter, tol=self.tol)
        self.coef_, self.intercept_ = basis.weights(V, b)
        self.alpha_ = chosen
        self.max_rate_ = np.maximum(Y.max(axis=0), _MIN_RATE)
        return self

    def _choose_alphas(self, P, Y, alphas):
        """Per-output alpha with the best held-out log-likelihood over contiguous folds."""
        n_samples, n_outputs = P.shape[0], Y.shape[1]
        edges = np.linspace(0, n_samples, self.cv + 1).astype(int)
        held_out_ll = np.zeros((len(alphas), Y.shape[1]))
        for fold in range(self.cv):
            test = np.arange(edges[fold], edges[fold + 1])
            train = np.setdiff1d(np.arange(n_samples), test)
            P_train, Y_train, P_test, Y_test = P[train], Y[train], P[test], Y[test]
            V = np.zeros((P.shape[1], n_outputs))
            b = np.log(np.maximum(Y_train.mean(axis=0), _MIN_RATE))
            best = np.full(n_outputs, -np.inf)
            active = np.ones(n_outputs, dtype=bool)
            for a, alpha in enumerate(alphas):  # strongest first, warm-started
                # a unit whose held-out likelihood fell is past its best
                # alpha on this fold; weaker penalties are not fitted for it
                columns = np.flatnonzero(active)
                V_a, b_a = _fit_glm(P_train, Y_train[:, columns], np.full(columns.size, alpha),
                                    max_iter=self.max_iter, tol=self.tol,
                                    start=(V[:, columns], b[columns]))
                V[:, columns], b[columns] = V_a, b_a
                fold_ll = _poisson_log_likelihood(
                    Y_test[:, columns], _rates(P_test, V_a, b_a)).sum(axis=0)
                held_out_ll[a, ~active] = -np.inf
                held_out_ll[a, columns] += fold_ll
                falling = fold_ll < best[columns]
                best[columns] = np.maximum(best[columns], fold_ll)
                active[columns[falling]] = False
                if not active.any():
                    held_out_ll[a + 1:] = -np.inf
                    break
        return alphas[np.argmax(held_out_ll, axis=0)]

    def predict(self, X):
        """Expected counts of every output unit.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        rates : ndarray of shape (n_samples, n_outputs) or (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        rates = np.minimum(_rates(X, self.coef_.T, self.intercept_), self.max_rate_)
        return rates[:, 0] if self._single_output else rates

    def score(self, X, y, sample_weight=None):
        """Bits per spike of the predicted rates over each unit's mean count in ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_outputs) or (n_samples,)
        sample_weight : None
            Not supported (accepted for scikit-learn compatibility; must be None).

        Returns
        -------
        bits : float
        """
        if sample_weight is not None:
            raise ValueError("PoissonReadout.score does not support sample_weight.")
        rates = np.asarray(self.predict(X)).reshape(len(np.asarray(y)), -1)
        return bits_per_spike(np.asarray(y, dtype=np.float64).reshape(rates.shape), rates)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = True
        return tags


class _Basis:
    """Centred features, divided by one common scale, rotated onto their principal axes.

    The ridge penalty on the weights is unchanged by the rotation,
    and in these coordinates the Poisson Hessian of unit ``j`` is close to
    the diagonal ``mean_rate_j * variance_k + alpha_j``, which
    :func:`_fit_glm` uses as its preconditioner.
    """

    def __init__(self, X):
        if sparse.issparse(X):
            X = X.toarray()
        self.mean = X.mean(axis=0)
        # one common scale (the root mean variance), not one per feature
        common = float(np.sqrt(np.mean(X.var(axis=0))))
        self.scale = np.full(X.shape[1], common if common > 0 else 1.0)
        scaled = (X - self.mean) / self.scale
        variances, axes = np.linalg.eigh(scaled.T @ scaled / len(X))
        keep = variances > 1e-10 * max(variances.max(), 1e-300)
        self.axes = axes[:, keep]

    def project(self, X):
        if sparse.issparse(X):
            X = X.toarray()
        return ((X - self.mean) / self.scale) @ self.axes

    def weights(self, V, b):
        """Coefficients ``(n_outputs, n_features)`` and intercepts on the raw features."""
        scaled = self.axes @ V
        coef = scaled / self.scale[:, None]
        intercept = b - self.mean @ coef
        return coef.T, intercept


def _rates(X, W, b):
    eta = X @ W + b
    return np.exp(np.minimum(eta, _MAX_LOG_RATE))


def _fit_glm(P, Y, alphas, *, max_iter, tol, start=None):
    """Ridge Poisson GLMs for all columns of ``Y`` at once (the objective separates).

    ``P`` has centred, uncorrelated columns. The variables are rescaled by
    the square root of the diagonal Hessian approximation, so that L-BFGS
    sees a problem close to the identity for every unit whatever its rate.
    """
    n_samples, n_features = P.shape
    n_outputs = Y.shape[1]
    mean_counts = np.maximum(Y.mean(axis=0), _MIN_RATE)
    variances = P.var(axis=0)
    curvature = mean_counts[None, :] * variances[:, None] + alphas[None, :]
    root_w = np.sqrt(curvature)
    root_b = np.sqrt(mean_counts)
    if start is None:
        W0 = np.zeros((n_features, n_outputs))
        b0 = np.log(mean_counts)
    else:
        W0, b0 = start
    n_w = n_features * n_outputs

    def objective(theta):
        W = theta[:n_w].reshape(n_features, n_outputs) / root_w
        b = theta[n_w:] / root_b
        eta = np.minimum(P @ W + b, _MAX_LOG_RATE)
        mu = np.exp(eta)
        value = (mu - Y * eta).sum() / n_samples + 0.5 * (alphas * np.square(W).sum(axis=0)).sum()
        residual = (mu - Y) / n_samples
        grad_W = (P.T @ residual + alphas * W) / root_w
        grad_b = residual.sum(axis=0) / root_b
        return value, np.concatenate([grad_W.ravel(), grad_b])

    theta0 = np.concatenate([(W0 * root_w).ravel(), b0 * root_b])
    result = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B",
                               options={"maxiter": max_iter, "gtol": tol})
    theta = result.x
    return theta[:n_w].reshape(n_features, n_outputs) / root_w, theta[n_w:] / root_b
