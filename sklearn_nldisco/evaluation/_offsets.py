"""The features of the rows at fixed offsets in time from each row, within intervals."""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from ..preprocessing import interval_positions
from ._intervals import _WithinIntervalsMixin

_COMBINE = ("concatenate", "mean")


def _check_offsets(offsets):
    """The offsets as a 1-D int array, or a ValueError naming what was received."""
    values = np.asarray(offsets)
    if values.ndim == 0:
        values = values.reshape(1)
    if (values.ndim != 1 or values.size == 0
            or not all(isinstance(value, Integral) for value in values.tolist())):
        raise ValueError(
            f"offsets must be a non-empty 1-D sequence of integers (bins after each row; "
            f"negative: before); got {offsets!r}."
        )
    return values.astype(np.int64)


def _interval_bounds(interval_ids, n_rows):
    """First row and one-past-last row of each row's interval."""
    positions, lasts = interval_positions(interval_ids, n_rows)
    return np.arange(n_rows) - positions, lasts


class OffsetFeatures(_WithinIntervalsMixin, TransformerMixin, BaseEstimator):
    """Each row's features taken from the rows at fixed offsets in time, within intervals.

    Row ``t`` of the output holds the features of rows ``t + offset`` for
    each of ``offsets`` (positive: later bins, negative: earlier ones) of
    the same interval, side by side (``combine="concatenate"``) or averaged
    (``combine="mean"``). Where ``t + offset`` falls outside ``t``'s
    interval, the interval's nearest row stands in (its first or last
    bin), so no row ever reads another trial.

    Two uses in co-smoothing of a window model, whose code at bin ``t``
    describes the window of bins ``t - n + 1`` to ``t``
    (:class:`~sklearn_nldisco.preprocessing.TimeWindows`):

    - **the windows that cover a bin**, after the model:
      ``make_pipeline(TimeWindows(n), model, OffsetFeatures(range(n), combine="mean"))``
      reads bin ``t`` out from the codes of every window that holds it
      (those ending at ``t`` to ``t + n - 1``);
    - **centred windows**: ``OffsetFeatures([n // 2])`` gives row ``t``
      what belongs to the window ending ``n // 2`` bins later, which spans
      bins ``t - n + 1 + n // 2`` to ``t + n // 2`` (centred on ``t`` for
      odd ``n``), as the smoothing baseline's Gaussian reaches both ways.
      After an autoencoder it moves the codes
      (``make_pipeline(TimeWindows(n), model, OffsetFeatures([n // 2]))``);
      before a transcoder it moves the windows, so the transcoder learns
      the centred window -> the target at ``t``
      (``make_pipeline(TimeWindows(n), OffsetFeatures([n // 2]), transcoder)``).
      In the last ``n // 2`` bins of an interval its last window stands in;
      in the first bins, the window's own edge rule fills the bins before
      the interval.

    Parameters
    ----------
    offsets : array-like of int, default=(0,)
        Offsets in bins from each row (0: the row itself).
    combine : {"concatenate", "mean"}, default="concatenate"
        ``"concatenate"``: one block of columns per offset, in the order of
        ``offsets``; ``"mean"``: their average (as many columns as the
        input).
    interval_ids : array-like of shape (n_rows,), default=None
        Interval (trial) of each row, each interval's rows consecutive and
        in time order; None: all rows are one stretch. Used by ``fit`` and
        ``transform`` when they are not given ``interval_ids`` themselves;
        for subsets of rows pass it to the methods instead (through a
        Pipeline or :class:`CoSmoothing` with metadata routing).

    Attributes
    ----------
    offsets_ : ndarray of int
        The checked offsets.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` had string column names.

    See Also
    --------
    sklearn_nldisco.preprocessing.TimeWindows : Windows of past bins.
    GaussianSmoother : Acausal smoothing over rows, within intervals.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.evaluation import OffsetFeatures
    >>> X = np.array([[1.0], [2.0], [3.0], [10.0], [20.0]])
    >>> OffsetFeatures([0, 1], interval_ids=[0, 0, 0, 1, 1]).fit_transform(X)
    array([[ 1.,  2.],
           [ 2.,  3.],
           [ 3.,  3.],
           [10., 20.],
           [20., 20.]])
    >>> OffsetFeatures([-1, 0, 1], combine="mean").fit_transform(X).ravel().round(2)
    array([ 1.33,  2.  ,  5.  , 11.  , 16.67])
    """

    _parameter_constraints = {
        "offsets": ["array-like"],
        "combine": [StrOptions(set(_COMBINE))],
        "interval_ids": ["array-like", None],
    }

    def __init__(self, offsets=(0,), *, combine="concatenate", interval_ids=None):
        self.offsets = offsets
        self.combine = combine
        self.interval_ids = interval_ids

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, interval_ids=None):
        """Check the offsets and record the number of columns; nothing is learned.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            Rows in time order within each interval.
        y : None
            Ignored.
        interval_ids : array-like of shape (n_rows,), default=None
            Interval of each row; None: the constructor's ``interval_ids``.

        Returns
        -------
        self : OffsetFeatures
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        interval_positions(self._interval_ids(interval_ids), X.shape[0])
        self.offsets_ = _check_offsets(self.offsets)
        return self

    def transform(self, X, interval_ids=None):
        """The features of the rows at each offset, concatenated or averaged.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            Rows in time order within each interval.
        interval_ids : array-like of shape (n_rows,), default=None
            Interval of each row; None: the constructor's ``interval_ids``.

        Returns
        -------
        X_offsets : ndarray of shape (n_rows, n_offsets * n_features) or (n_rows, n_features)
            ``n_offsets * n_features`` columns for ``"concatenate"``
            (block ``i`` from ``offsets[i]``), ``n_features`` for ``"mean"``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        firsts, lasts = _interval_bounds(self._interval_ids(interval_ids), X.shape[0])
        rows = np.arange(X.shape[0])
        sources = [np.clip(rows + offset, firsts, lasts - 1) for offset in self.offsets_]
        if self.combine == "mean":
            total = np.zeros_like(X)
            for source in sources:
                total += X[source]
            return total / len(sources)
        return np.hstack([X[source] for source in sources])

    def get_feature_names_out(self, input_features=None):
        """``"{name}@{offset:+d}"`` per offset block, or the input names for ``"mean"``.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input names; None: ``feature_names_in_`` or ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        if self.combine == "mean":
            return np.asarray(names, dtype=object)
        return np.asarray([f"{name}@{offset:+d}" for offset in self.offsets_ for name in names],
                          dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
