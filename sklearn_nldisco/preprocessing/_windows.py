"""Windows of consecutive time bins, one window per bin, within intervals.

Rows stay time bins: row ``t`` of the output is the window of the
``n_bins_window`` bins ending at bin ``t``, flattened. A window never
reaches into another interval (trial, session, or the far side of a gap);
the first bins of an interval are padded by a documented rule instead.
"""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

_EDGES = ("repeat", "zero", "mean")


def _check_interval_ids(interval_ids, n_bins):
    """Interval ids as a 1-D array of one id per row, each interval's rows consecutive.

    Returns the position of each row within its interval and the
    one-past-last row of its interval.
    """
    if interval_ids is None:
        positions = np.arange(n_bins)
        return positions, np.full(n_bins, n_bins)
    ids = np.asarray(interval_ids)
    if ids.ndim != 1 or ids.shape[0] != n_bins:
        raise ValueError(
            f"interval_ids must be 1-D with one id per row of X ({n_bins} rows); got "
            f"shape {ids.shape}. Interval ids given to the constructor describe one "
            "array only: for subsets of rows (cross-validation folds), pass "
            "interval_ids to fit and transform instead."
        )
    if ids.dtype.kind == "f" and np.isnan(ids).any():
        raise ValueError("interval_ids must not contain NaN.")
    breaks = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    firsts = np.r_[0, breaks]
    lasts = np.r_[breaks, n_bins]
    if n_bins and np.unique(ids[firsts]).size != firsts.size:
        raise ValueError(
            "interval_ids must keep each interval's rows consecutive (rows in time "
            "order); an id appears again after another interval's rows. Sort the rows "
            "by time, or give the separate stretches distinct ids."
        )
    run_lengths = lasts - firsts
    positions = np.arange(n_bins) - np.repeat(firsts, run_lengths)
    return positions, np.repeat(lasts, run_lengths)


def interval_positions(interval_ids, n_bins):
    """Where each row sits in its interval, checking the interval ids.

    The rule of every time-aware step (windows, smoothing, convolutions):
    rows are time bins, consecutive within each interval, and an interval's
    rows are never split by another's.

    Parameters
    ----------
    interval_ids : array-like of shape (n_bins,) or None
        Interval (trial, block, stretch) of each row, e.g.
        :attr:`SpikeBinner.interval_ids_`. None: all rows are one interval.
    n_bins : int
        Number of rows the ids must describe.

    Returns
    -------
    positions : ndarray of shape (n_bins,)
        Each row's index within its interval (0 for its first row).
    ends : ndarray of shape (n_bins,)
        For each row, the row one past the end of its interval.

    Raises
    ------
    ValueError
        When the ids are not 1-D with one id per row, contain NaN, or an id
        appears again after another interval's rows.

    Examples
    --------
    >>> from sklearn_nldisco.preprocessing import interval_positions
    >>> positions, ends = interval_positions([7, 7, 7, 3, 3], 5)
    >>> positions.tolist(), ends.tolist()
    ([0, 1, 2, 0, 1], [3, 3, 3, 5, 5])
    """
    return _check_interval_ids(interval_ids, n_bins)


def _window_rows(X, n_bins_window, positions, edge, fill):
    """The flattened windows (lag-major, oldest lag first) of the rows of X."""
    n_bins, n_units = X.shape
    windows = np.empty((n_bins, n_bins_window * n_units), dtype=X.dtype)
    for lag in range(n_bins_window):
        block = slice((n_bins_window - 1 - lag) * n_units, (n_bins_window - lag) * n_units)
        # a shifted slice copy, then the few rows whose lag reaches before their interval
        windows[lag:, block] = X[: max(n_bins - lag, 0)]
        padded = np.flatnonzero(positions < lag)
        if edge == "repeat":
            windows[padded, block] = X[padded - positions[padded]]
        else:
            windows[padded, block] = fill
    return windows


def _lags_per_bin(X_windows, n_bins_window, n_units, lasts):
    """Each bin's reconstruction by the window ending ``lag`` bins after it."""
    n_bins = X_windows.shape[0]
    blocks = X_windows.reshape(n_bins, n_bins_window, n_units)
    dtype = np.result_type(X_windows.dtype, np.float32)
    per_lag = np.full((n_bins_window, n_bins, n_units), np.nan, dtype=dtype)
    rows = np.arange(n_bins)
    for lag in range(n_bins_window):
        per_lag[lag, : max(n_bins - lag, 0)] = blocks[lag:, n_bins_window - 1 - lag]
        per_lag[lag, rows + lag >= lasts] = np.nan
    return per_lag


class TimeWindows(TransformerMixin, BaseEstimator):
    """Windows of consecutive time bins, flattened, one row per bin.

    Row ``t`` of the output holds the ``n_bins_window`` bins ending at bin
    ``t`` (bins ``t - n_bins_window + 1`` to ``t``) of the same interval,
    flattened lag-major with the oldest bin first: columns
    ``[X[t - n + 1], ..., X[t - 1], X[t]]``, each block holding every unit.
    Rows stay time bins, so a model fitted after it emits one code per bin
    and everything that takes per-bin codes works unchanged.
    ``make_pipeline(TimeWindows(5), MatryoshkaSAE())`` is the flat-window
    model: a linear encoder over the window, whose decoder reconstructs
    every bin of it.

    A window never crosses an interval boundary (trial, session, gap): the
    rows must be consecutive bins in time order within each interval, as
    :class:`SpikeBinner` returns them, with ``interval_ids`` naming each
    row's interval. The first ``n_bins_window - 1`` bins of an interval lack
    earlier bins; ``edge`` says what fills those lags.

    Parameters
    ----------
    n_bins_window : int, default=5
        Bins per window, the current one included (1: the input unchanged).
    interval_ids : array-like of shape (n_bins,), default=None
        Interval of each row (e.g. :attr:`SpikeBinner.interval_ids_`); each
        interval's rows consecutive. None: all rows are one stretch. Used
        by ``fit``, ``transform`` and :meth:`inverse_transform_lags` when
        they are not given ``interval_ids`` themselves, so it must match
        the rows of every array transformed. For subsets of rows
        (cross-validation), pass ``interval_ids`` to the methods instead,
        through a Pipeline with metadata routing.
    edge : {"repeat", "zero", "mean"}, default="repeat"
        Fill of the lags before an interval's first bin: ``"repeat"`` its
        first bin, ``"zero"`` zeros, ``"mean"`` the mean of each unit over
        the rows given to ``fit``.

    Attributes
    ----------
    mean_ : ndarray of shape (n_units,)
        Mean of each column over the rows given to ``fit`` (the fill of
        ``edge="mean"``).
    n_features_in_ : int
        Number of units.
    feature_names_in_ : ndarray of shape (n_units,)
        Unit names, when ``X`` had string column names.

    See Also
    --------
    SpikeBinner : Bins spike trains; its ``interval_ids_`` are the intervals.
    sklearn_nldisco.MatryoshkaSAE : The model to fit on the windows.

    Notes
    -----
    A row's window changes with the rows before it, so the output of a row
    depends on the order and the subset of rows given. ``interval_ids``
    cannot reveal a row missing from within an interval: give whole
    intervals.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.preprocessing import TimeWindows
    >>> X = np.array([[1.0], [2.0], [3.0], [10.0], [20.0]])
    >>> windows = TimeWindows(2, interval_ids=[0, 0, 0, 1, 1])
    >>> windows.fit_transform(X)
    array([[ 1.,  1.],
           [ 1.,  2.],
           [ 2.,  3.],
           [10., 10.],
           [10., 20.]])
    >>> windows.get_feature_names_out(["a"]).tolist()
    ['a@t-1', 'a@t-0']
    >>> windows.inverse_transform_lags(windows.transform(X))[1].ravel().tolist()
    [1.0, 2.0, nan, 10.0, nan]
    """

    _parameter_constraints = {
        "n_bins_window": [Interval(Integral, 1, None, closed="left")],
        "interval_ids": ["array-like", None],
        "edge": [StrOptions(set(_EDGES))],
    }

    def __init__(self, n_bins_window=5, *, interval_ids=None, edge="repeat"):
        self.n_bins_window = n_bins_window
        self.interval_ids = interval_ids
        self.edge = edge

    def _interval_ids(self, interval_ids):
        return self.interval_ids if interval_ids is None else interval_ids

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, interval_ids=None):
        """Record the number of units and their means; nothing else is learned.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
            Consecutive time bins, in time order within each interval.
        y : None
            Ignored.
        interval_ids : array-like of shape (n_bins,), default=None
            Interval of each row; None: the constructor's ``interval_ids``.

        Returns
        -------
        self : TimeWindows
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        _check_interval_ids(self._interval_ids(interval_ids), X.shape[0])
        self.mean_ = X.mean(axis=0)
        return self

    def transform(self, X, interval_ids=None):
        """The window ending at each bin, flattened.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
            Consecutive time bins, in time order within each interval.
        interval_ids : array-like of shape (n_bins,), default=None
            Interval of each row; None: the constructor's ``interval_ids``.

        Returns
        -------
        X_windows : ndarray of shape (n_bins, n_bins_window * n_units)
            Column ``(n_bins_window - 1 - lag) * n_units + unit`` holds
            ``unit`` ``lag`` bins before the row's bin.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        positions, _ = _check_interval_ids(self._interval_ids(interval_ids), X.shape[0])
        fill = self.mean_.astype(X.dtype) if self.edge == "mean" else 0
        return _window_rows(X, self.n_bins_window, positions, self.edge, fill)

    def fit_transform(self, X, y=None, interval_ids=None):
        """``fit`` then ``transform`` with the same ``interval_ids``.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
        y : None
            Ignored.
        interval_ids : array-like of shape (n_bins,), default=None

        Returns
        -------
        X_windows : ndarray of shape (n_bins, n_bins_window * n_units)
        """
        return self.fit(X, y, interval_ids=interval_ids).transform(X, interval_ids=interval_ids)

    def _check_windows(self, X_windows):
        check_is_fitted(self)
        X_windows = np.asarray(X_windows)
        n_columns = self.n_bins_window * self.n_features_in_
        if X_windows.ndim != 2 or X_windows.shape[1] != n_columns:
            raise ValueError(
                f"X must have shape (n_bins, {n_columns}) (n_bins_window="
                f"{self.n_bins_window} times {self.n_features_in_} units); got "
                f"shape {X_windows.shape}."
            )
        return X_windows

    def inverse_transform(self, X):
        """Each bin as its own window gives it (the window's last block).

        Exact on the output of ``transform``; on a model's reconstruction
        of the windows, the reconstruction of each bin at lag 0. See
        :meth:`inverse_transform_lags` for the other lags.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_bins_window * n_units)

        Returns
        -------
        X_bins : ndarray of shape (n_bins, n_units)
        """
        X = self._check_windows(X)
        return X[:, (self.n_bins_window - 1) * self.n_features_in_ :].copy()

    def inverse_transform_lags(self, X, interval_ids=None):
        """Each bin as reconstructed by each window that holds it.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_bins_window * n_units)
            Flattened windows (e.g. a model's reconstruction of
            ``transform``'s output), one per bin.
        interval_ids : array-like of shape (n_bins,), default=None
            Interval of each row; None: the constructor's ``interval_ids``.

        Returns
        -------
        X_lags : ndarray of shape (n_bins_window, n_bins, n_units)
            ``X_lags[lag, t]`` is bin ``t`` as given by the window ending at
            bin ``t + lag``; NaN where that bin lies beyond the end of
            ``t``'s interval. Compare ``X_lags[lag]`` with the bins for the
            reconstruction error at each lag (ignoring NaN); padded lags
            never appear.
        """
        X = self._check_windows(X)
        _, lasts = _check_interval_ids(self._interval_ids(interval_ids), X.shape[0])
        return _lags_per_bin(X, self.n_bins_window, self.n_features_in_, lasts)

    def get_feature_names_out(self, input_features=None):
        """Names ``"{unit}@t-{lag}"``, oldest lag first, as the columns.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Unit names; None: ``feature_names_in_`` or ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        units = _check_feature_names_in(self, input_features)
        return np.asarray(
            [f"{unit}@t-{lag}" for lag in range(self.n_bins_window - 1, -1, -1) for unit in units],
            dtype=object,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
