"""What the steps that work within intervals (trials) share: where their ids come from."""


class _WithinIntervalsMixin:
    """``interval_ids`` from the call, else the constructor; ``fit_transform`` passes them on.

    For a transformer with an ``interval_ids`` parameter whose ``fit`` and
    ``transform`` take ``interval_ids`` too (the call's win). Put it before
    ``TransformerMixin``, whose ``fit_transform`` would drop them on the way
    to ``transform``.
    """

    def _interval_ids(self, interval_ids):
        return self.interval_ids if interval_ids is None else interval_ids

    def fit_transform(self, X, y=None, interval_ids=None):
        """``fit`` then ``transform`` with the same ``interval_ids``.

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
        X_new : ndarray of shape (n_rows, n_features_out)
        """
        return self.fit(X, y, interval_ids=interval_ids).transform(X, interval_ids=interval_ids)
