"""MatryoshkaTranscoder: encode one population, reconstruct another."""

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._base import (
    _BaseMatryoshka,
    _unchanged_on_failure,
    check_2d_not_empty,
    check_sample_weight,
    check_target_shape,
    explained_variance,
    with_callbacks,
)
from ._rows import CheckedRows, check_out_of_core, is_out_of_core
from ._sae import _ATTRIBUTES_DOC, _PARAMETERS_DOC


class MatryoshkaTranscoder(RegressorMixin, _BaseMatryoshka):
    _is_autoencoder = False
    __doc__ = (
        """Matryoshka sparse transcoder: sparse codes of ``X`` that reconstruct ``Y``.

    The same nested sparse coder as :class:`MatryoshkaSAE`, fitted as
    ``fit(X, Y)``: it encodes one population (``X``, e.g. PMd, or day 1) and
    reconstructs another (``Y``, e.g. M1, or day 2). ``transform(X)`` gives
    the codes, ``predict(X)`` the reconstruction of ``Y``. The input is
    centred by its own bias (``input_bias_``), not by the decoder bias.

    Parameters
    ----------"""
        + _PARAMETERS_DOC.replace("n_outputs", "n_targets")
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES_DOC.replace("n_outputs", "n_targets")
        + """
    See Also
    --------
    MatryoshkaSAE : The autoencoder (``Y = X``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco import MatryoshkaTranscoder
    >>> rng = np.random.RandomState(0)
    >>> X = rng.poisson(2.0, size=(500, 20)).astype(float)
    >>> Y = X[:, :10] + rng.poisson(1.0, size=(500, 10))
    >>> model = MatryoshkaTranscoder(n_latents=32, k=4, max_iter=5, random_state=0)
    >>> model.fit(X, Y).predict(X).shape
    (500, 10)
    """
    )

    @_unchanged_on_failure
    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the transcoder from ``X`` to ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source activity (encoded).
        y : array-like of shape (n_samples, n_targets) or (n_samples,)
            Target activity (reconstructed). When ``X`` or ``y`` (or both)
            is a NumPy memmap or an HDF5 dataset, both are read in chunks
            and never loaded whole, as in ``MatryoshkaSAE.fit``: exact
            scaling statistics from one streaming pass, then each epoch
            visits the chunks in a shuffled order with the rows shuffled
            inside each chunk; see "Out-of-core input" in
            ``docs/scaling.md``.

        Returns
        -------
        self : MatryoshkaTranscoder
        """
        if is_out_of_core(X) or is_out_of_core(y):
            return self._fit_chunked(X, y)
        check_2d_not_empty(X)
        X, Y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], multi_output=True, y_numeric=True
        )
        Y = np.asarray(Y, dtype=np.float64)
        self._y_1d = Y.ndim == 1
        if self._y_1d:
            Y = Y[:, None]
        return self._fit(X, Y)

    def _fit_chunked(self, X, y):
        """``fit`` when ``X`` or ``y`` is out of core; the other may be an array."""
        if is_out_of_core(X):
            n_rows, n_features = check_out_of_core(X)
            self.n_features_in_ = n_features
            self.__dict__.pop("feature_names_in_", None)
        else:
            check_2d_not_empty(X)
            X = validate_data(self, X, dtype=[np.float64, np.float32])
            n_rows = X.shape[0]
        if is_out_of_core(y):
            n_targets_rows = check_out_of_core(y, name="y", ndim=(1, 2))[0]
        else:
            y = check_array(
                y, ensure_2d=False, dtype=[np.float64, np.float32], input_name="y"
            )
            n_targets_rows = y.shape[0]
        if n_targets_rows != n_rows:
            raise ValueError(
                "Found input variables with inconsistent numbers of samples: "
                f"X has {n_rows} rows but y has {n_targets_rows}; expected one row "
                "of y per row of X."
            )
        self._y_1d = len(y.shape) == 1
        return self._fit(X, y)

    @_unchanged_on_failure
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """One pass (epoch) over a chunk of ``(X, y)``, continuing the training.

        As :meth:`MatryoshkaSAE.partial_fit`: the first call initialises as
        ``fit`` does, with the scaling statistics of the first chunk frozen
        afterwards; later calls continue the optimiser, schedule, dead-latent
        counters and BatchTopK threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of source activity.
        y : array-like of shape (n_samples, n_targets) or (n_samples,)
            The matching chunk of target activity.

        Returns
        -------
        self : MatryoshkaTranscoder
        """
        check_2d_not_empty(X)
        first_call = not hasattr(self, "components_")
        X, Y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], multi_output=True, y_numeric=True,
            reset=first_call,
        )
        Y = np.asarray(Y, dtype=np.float64)
        y_1d = Y.ndim == 1
        if y_1d:
            Y = Y[:, None]
        if first_call:
            self._y_1d = y_1d
        return self._partial_fit(X, Y)

    def predict(self, X, level=None):
        """Reconstruct the target population from ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        level : int, default=None
            Index into ``level_sizes_``; None uses every latent.

        Returns
        -------
        Y_hat : ndarray of shape (n_samples, n_targets) or (n_samples,)
            One-dimensional when ``y`` was one-dimensional at fit time.
        """
        check_is_fitted(self)
        Y_hat = self._reconstruct(X, level)
        return Y_hat[:, 0] if self._y_1d else Y_hat

    def score(self, X, y, sample_weight=None):
        """Explained variance of ``y`` by ``predict(X)``, over all entries.

        ``1 - sum((y - y_hat)^2) / sum((y - mean(y))^2)`` (R^2 pooled over
        targets, weighted by their variance); higher is better. This is
        ``r2_score(y, y_hat, multioutput="variance_weighted")``, not the
        uniform average over targets that scikit-learn's regressors' ``score``
        returns: compare with other models through the same ``r2_score``
        call, as ``examples/transcoder.py`` does.

        Parameters
        ----------
        X : array-like, memmap or HDF5 dataset of shape (n_samples, n_features)
        y : array-like, memmap or HDF5 dataset of shape (n_samples, n_targets) or (n_samples,)
            When either is a memmap or HDF5 dataset, both are read chunk by
            chunk, and neither ``y`` nor the prediction is held whole.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights (see :func:`explained_variance`); also
            what lets ``Pipeline.score`` run under metadata routing, which
            hands every final step a ``sample_weight``.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        n_targets = self.decoder_bias_.shape[0]
        if is_out_of_core(X) or is_out_of_core(y):
            # chunk by chunk: neither y nor its prediction is held whole
            X = self._validate_for_coding(X)
            if isinstance(X, CheckedRows):
                X = X.X  # the memmap or dataset itself, read chunk by chunk
            if is_out_of_core(y):
                check_out_of_core(y, name="y", ndim=(1, 2))  # finite: chunk by chunk
            else:
                y = self._check_score_target(y)
            check_target_shape(y.shape, X.shape[0], n_targets, type(self).__name__)
            if sample_weight is not None:
                sample_weight = check_sample_weight(sample_weight, X)
            return self._score_out_of_core(X, y, sample_weight)
        X = self._validate_for_coding(X)
        Y = self._check_score_target(y)
        check_target_shape(Y.shape, X.shape[0], n_targets, type(self).__name__)
        if Y.ndim == 1:
            Y = Y[:, None]
        return explained_variance(Y, self._reconstruct_validated(X, None), sample_weight)

    @staticmethod
    def _check_score_target(y):
        """``y`` of ``score`` as a finite float64 array of one or two dimensions."""
        return check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.regressor_tags.poor_score = True
        tags.target_tags.positive_only = self.loss != "mse"
        return tags
