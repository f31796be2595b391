"""Structure controls: the same metric on data whose cross-unit structure is destroyed."""

import numbers

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch, check_random_state

from ..models import explained_variance
from ._cosmoothing import co_smoothing


def shift_units(X, *, random_state=None, min_shift=None):
    """Circularly shift every column (unit) in time by its own random offset.

    Keeps each unit's rate, count distribution and autocorrelation exactly
    (up to the wrap-around point) and destroys every relation between units:
    the structure-destroying control of the population metrics. Offsets are
    drawn uniformly from ``[min_shift, n_samples - min_shift]``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_units)
        Rows in time order.
    random_state : int, RandomState instance or None, default=None
        Draws the offsets.
    min_shift : int, default=None
        Smallest offset in rows; None: ``n_samples // 10`` (at least 1).

    Returns
    -------
    shifted : ndarray of shape (n_samples, n_units)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.evaluation import shift_units
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> shifted = shift_units(X, random_state=0)
    >>> sorted(shifted[:, 0]) == sorted(X[:, 0])
    True
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must be 2-D with at least 2 rows; got shape {X.shape}.")
    n_samples = X.shape[0]
    if min_shift is None:
        min_shift = max(1, n_samples // 10)
    if not isinstance(min_shift, numbers.Integral) or not 1 <= min_shift <= n_samples // 2:
        raise ValueError(
            f"min_shift must be an integer in [1, {n_samples // 2}] for {n_samples} rows; "
            f"got {min_shift!r}."
        )
    rng = check_random_state(random_state)
    offsets = rng.randint(min_shift, n_samples - min_shift + 1, size=X.shape[1])
    rows = (np.arange(n_samples)[:, None] - offsets[None, :]) % n_samples
    return np.take_along_axis(X, rows, axis=0)


def reconstruct(estimator, X):
    """A fitted model's reconstruction of ``X``: ``inverse_transform(transform(X))``.

    Factor analysis has no ``inverse_transform``; its reconstruction is the
    posterior mean of the factors through the loadings plus the mean.
    """
    _check_can_decode(estimator)
    return decode(estimator, estimator.transform(X))


def _check_can_decode(estimator):
    if hasattr(estimator, "inverse_transform"):
        return
    if hasattr(estimator, "components_") and hasattr(estimator, "mean_"):
        return
    raise TypeError(
        f"cannot reconstruct with {type(estimator).__name__}: it has no inverse_transform "
        "(and no components_ and mean_)."
    )


def decode(estimator, codes):
    """A fitted model's reconstruction from its codes (the second half of :func:`reconstruct`)."""
    _check_can_decode(estimator)
    if hasattr(estimator, "inverse_transform"):
        return np.asarray(estimator.inverse_transform(codes), dtype=np.float64)
    return np.asarray(codes @ estimator.components_ + estimator.mean_, dtype=np.float64)


def held_out_explained_variance(estimator, X_train, X_test):
    """Explained variance of ``X_test`` by a clone of ``estimator`` fitted on ``X_train``."""
    model = clone(estimator).fit(X_train)
    return explained_variance(X_test, reconstruct(model, X_test))


_METRICS = ("explained_variance", "co_smoothing")


def structure_control(estimator, X_train, X_test, *, metric="explained_variance",
                      random_state=0, n_controls=1, **metric_params):
    """A metric on the real data, on unit-shifted data, and their difference.

    The model is fitted on ``X_train`` and scored on ``X_test`` twice: as
    given, and after :func:`shift_units` on each block separately (so the
    control keeps the train/test split and every unit's own statistics, and
    has no cross-unit structure). ``structure = real - shifted`` is the part
    of the metric that comes from population structure rather than from the
    model's capacity to reproduce each unit: a model that reconstructs
    shifted data as well as real data has found no structure, however high
    its explained variance.

    Parameters
    ----------
    estimator : estimator
        Cloned for each fit.
    X_train, X_test : array-like of shape (n_samples, n_units)
        Rows in time order.
    metric : {"explained_variance", "co_smoothing"}, default="explained_variance"
        Held-out explained variance of the reconstruction, or co-smoothing
        bits per spike (:func:`co_smoothing`, which needs counts).
    random_state : int, default=0
        Seeds the shifts (control ``i`` uses ``random_state + i`` for the
        training block and ``random_state + i + 1000`` for the test block).
    n_controls : int, default=1
        Number of shifted copies; ``shifted`` is their mean.
    **metric_params
        Passed to :func:`co_smoothing` (``held_out``, ``readout``...).

    Returns
    -------
    result : Bunch
        ``real``, ``shifted`` (mean over controls), ``structure``
        (``real - shifted``), ``shifted_each`` (list).
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}; got {metric!r}.")
    if metric_params and metric != "co_smoothing":
        raise TypeError(
            f"unexpected arguments for metric={metric!r}: {sorted(metric_params)}."
        )
    if not isinstance(n_controls, numbers.Integral) or n_controls < 1:
        raise ValueError(f"n_controls must be a positive integer; got {n_controls!r}.")
    if not isinstance(random_state, numbers.Integral):
        raise ValueError(f"random_state must be an integer; got {random_state!r}.")
    X_train = np.asarray(X_train, dtype=np.float64)
    X_test = np.asarray(X_test, dtype=np.float64)

    def measure(train, test):
        if metric == "explained_variance":
            return held_out_explained_variance(estimator, train, test)
        return co_smoothing(estimator, train, test, **metric_params).bits_per_spike

    real = measure(X_train, X_test)
    shifted = [
        measure(shift_units(X_train, random_state=random_state + i),
                shift_units(X_test, random_state=random_state + i + 1000))
        for i in range(n_controls)
    ]
    mean_shifted = float(np.mean(shifted))
    return Bunch(real=float(real), shifted=mean_shifted, structure=float(real - mean_shifted),
                 shifted_each=[float(s) for s in shifted])
