"""MotifTranscoder: motif codes of one population that decode another at a lag.

The transcoder form of ``MotifSAE``: the same convolutional (or transformer)
encoder codes the source population ``X``, one sparse code per bin, and the
temporal kernels decode the target population ``y`` from the codes, so a
latent is a source pattern together with the target pattern that follows it
over ``n_bins_kernel`` bins. Fitting, coding and decoding are ``MotifSAE``'s
(``_motif._BaseMotif``); only the target differs.
"""

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._base import (
    _unchanged_on_failure,
    check_2d_not_empty,
    check_target_shape,
    explained_variance,
)
from ._motif import _ATTRIBUTES_DOC, _PARAMETERS_DOC, _BaseMotif, _stretch_bounds


def _replaced(text, replacements):
    """``text`` with each ``(old, new)`` replaced; every ``old`` must occur."""
    for old, new in replacements:
        if old not in text:
            raise RuntimeError(f"the shared docstring no longer contains {old!r}")
        text = text.replace(old, new)
    return text


_TRANSCODER_PARAMETERS_DOC = _replaced(_PARAMETERS_DOC, [
    ("reconstructs ``X`` on its own", "predicts ``y`` on its own"),
    ("``transform``, ``reconstruct`` and\n        ``score`` import torch",
     "``transform``, ``predict`` and\n        ``score`` import torch"),
    ("""        Per-unit scaling fitted on the training bins and undone by
        ``inverse_transform``: mean removal (the loss weighs each unit by
        its variance in counts), z-score, or nothing.""",
     """        Per-unit scaling of ``X`` (what the encoder sees) and of ``y`` (what
        the kernels decode and the loss compares), each with its own
        statistics fitted on the training bins; ``predict`` undoes the
        target's: mean removal (the loss weighs each target unit by its
        variance in counts), z-score, or nothing, as
        :class:`MatryoshkaTranscoder` treats its target."""),
])

_TRANSCODER_ATTRIBUTES_DOC = _replaced(_ATTRIBUTES_DOC, [
    ("""    components_ : ndarray of shape (n_latents, n_bins_kernel, n_units)
        Decoder kernels (motifs), unit Frobenius norm, in scaled units:""",
     """    components_ : ndarray of shape (n_latents, n_bins_kernel, n_targets)
        Decoder kernels (target motifs), unit Frobenius norm, in scaled
        target units:"""),
    ("""    decoder_bias_ : ndarray of shape (n_units,)
        In scaled units.""",
     """    decoder_bias_ : ndarray of shape (n_targets,)
        In scaled target units."""),
    ("""        Scaling: the model sees ``(X - input_mean_) / input_scale_``.""",
     """        Scaling: the encoder sees ``(X - input_mean_) / input_scale_``.
    target_mean_, target_scale_ : ndarray of shape (n_targets,)
        Target scaling: the kernels decode ``(y - target_mean_) /
        target_scale_``; ``predict`` returns ``y_hat * target_scale_ +
        target_mean_``."""),
])


def check_target(y, n_rows, n_targets=None):
    """``y`` as a finite float64 array with one row per bin of ``X``.

    One or two dimensions, at least one column; with ``n_targets``, as
    many columns as at fit time (a 1-D ``y`` is one target).
    """
    y = check_array(y, ensure_2d=False, ensure_min_features=0, dtype=np.float64,
                    input_name="y")
    if y.ndim == 2 and y.shape[1] == 0:
        raise ValueError(
            f"y has 0 columns (shape {y.shape}); expected at least one target column."
        )
    check_target_shape(y.shape, n_rows, n_targets, "MotifTranscoder")
    return y


class MotifTranscoder(RegressorMixin, _BaseMotif):
    _is_autoencoder = False
    __doc__ = (
        """Shift-equivariant convolutional Matryoshka sparse transcoder (motifs).

    The transcoder form of :class:`MotifSAE`, fitted as ``fit(X, y)``: one
    sparse, non-negative code per time bin of the source population ``X``
    (e.g. PMd), from the same convolutional encoder,
    ``z[t] = threshold(b_enc + sum_tau E[:, tau] x[t + tau])``, and temporal
    kernels that decode the target population ``y`` (e.g. M1)::

        y_hat[t] = b_y + sum_j sum_tau z[t - tau, j] D[j, tau, :]

    with unit-norm kernels ``D`` (``components_``, shape ``(n_latents,
    n_bins_kernel, n_targets)``). A latent is a source pattern (what its
    encoder weights read over bins ``t`` to ``t + n_bins_kernel - 1``) and
    the target pattern that goes with it over the same bins: a source
    pattern that leads the target's by a few bins is one latent, its lag
    inside the kernel. The latents are nested prefixes (levels), every
    level predicts ``y`` alone, and the loss is the weighted sum of the
    levels' squared errors of the scaled ``y``. ``transform(X)`` gives the
    codes, ``predict(X)`` the prediction of ``y``.

    Rows are consecutive time bins; ``interval_ids`` mark stretches coded
    and decoded as separate sequences (no convolution crosses one), as in
    :class:`MotifSAE`. Pass them to ``fit``, ``transform``, ``predict``,
    ``inverse_transform`` and ``score``; in a Pipeline, request them with
    ``set_fit_request(interval_ids=True)`` (and ``set_predict_request``,
    ``set_transform_request``, ``set_score_request``) under
    ``sklearn.set_config(enable_metadata_routing=True)``. Training, sparsity
    and the encoders are MotifSAE's (the ``"conv"`` encoder starts at random
    weights instead of the kernels' matched filter, and a kernel is moved
    to its pattern's onset only over bins that both its encoder weights and
    its target kernel leave empty, and the auxiliary loss takes each dead
    latent's largest local maxima whatever their sign, so that a latent
    whose pre-activations all fell below zero still gets a gradient). With
    ``encoder="conv"``, ``transform``, ``predict`` and ``score`` are NumPy
    only.

    Parameters
    ----------"""
        + _TRANSCODER_PARAMETERS_DOC
        + """
    Attributes
    ----------"""
        + _TRANSCODER_ATTRIBUTES_DOC
        + """
    See Also
    --------
    MotifSAE : The autoencoder (``y = X``).
    MatryoshkaTranscoder : The single-bin transcoder (no lag between the
        populations).

    Notes
    -----
    As in :class:`MotifSAE`, a bin's code depends on its neighbours, so
    code whole stretches in time order: the scikit-learn checks that
    predict a subset or a permutation of the rows are expected failures.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco import MotifTranscoder
    >>> rng = np.random.RandomState(0)
    >>> X = rng.poisson(1.0, size=(600, 10)).astype(float)
    >>> y = np.roll(X[:, :4], 2, axis=0) + rng.poisson(0.5, size=(600, 4))
    >>> model = MotifTranscoder(n_latents=8, n_bins_kernel=5, max_iter=3, random_state=0)
    >>> model.fit(X, y, interval_ids=np.repeat([0, 1, 2], 200)).components_.shape
    (8, 5, 4)
    >>> model.predict(X, interval_ids=np.repeat([0, 1, 2], 200)).shape
    (600, 4)
    """
    )

    @_unchanged_on_failure
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, interval_ids=None):
        """Fit the motif codes of ``X`` that predict ``y``.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
            Source activity (encoded), rows consecutive time bins in time
            order within each stretch.
        y : array-like of shape (n_bins, n_targets) or (n_bins,)
            Target activity (decoded), the same bins as ``X``.
        interval_ids : array-like of shape (n_bins,), default=None
            Stretch of each bin (e.g. ``SpikeBinner.interval_ids_``), each
            stretch's bins consecutive. None: all bins are one stretch.

        Returns
        -------
        self : MotifTranscoder
        """
        check_2d_not_empty(X)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        Y = check_target(y, X.shape[0])
        self._y_1d = Y.ndim == 1
        if self._y_1d:
            Y = Y[:, None]
        return self._fit_validated(X, Y, interval_ids)

    def fit_transform(self, X, y, interval_ids=None):
        """``fit`` then ``transform`` with the same ``interval_ids``.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
            Source bins, consecutive in time within each stretch.
        y : array-like of shape (n_bins, n_targets) or (n_bins,)
            Target bins.
        interval_ids : array-like of shape (n_bins,), default=None
            Stretch of each bin; None: all bins are one stretch.

        Returns
        -------
        codes : ndarray of shape (n_bins, n_latents)
        """
        return self.fit(X, y, interval_ids=interval_ids).transform(X, interval_ids=interval_ids)

    def _predict_validated(self, X, interval_ids, level):
        positions, lengths = _stretch_bounds(interval_ids, X.shape[0])
        return self._decode(self._codes(X, positions, lengths), positions, lengths, level)

    def predict(self, X, interval_ids=None, level=None):
        """Predict the target population from the bins of ``X``.

        A bin's prediction is the bias plus the kernels of the codes of the
        ``n_bins_kernel`` bins up to it in its stretch, so it depends on
        ``X`` from ``local_max_bins + n_bins_kernel - 1`` bins before to
        ``local_max_bins + n_bins_kernel - 1`` bins after it.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
            Consecutive time bins of the source, in time order within each
            stretch.
        interval_ids : array-like of shape (n_bins,), default=None
            Stretch of each bin; None: all bins are one stretch.
        level : int, default=None
            Index into ``level_sizes_``: predict from latents
            ``[0, level_sizes_[level])`` only. None uses every latent.

        Returns
        -------
        y_hat : ndarray of shape (n_bins, n_targets) or (n_bins,)
            In the target's original units, float64; one-dimensional when
            ``y`` was one-dimensional at fit time.
        """
        X = self._validate_for_coding(X)
        self._level_size(level)  # a bad level fails before the coding
        y_hat = self._predict_validated(X, interval_ids, level)
        return y_hat[:, 0] if self._y_1d else y_hat

    def score(self, X, y, interval_ids=None, sample_weight=None):
        """Explained variance of ``y`` by ``predict(X)``, over all entries.

        ``1 - sum((y - y_hat)^2) / sum((y - mean(y))^2)``, with the column
        means of ``y``: R^2 pooled over the targets, each weighing by its
        variance, in the target's original units; higher is better. This is
        ``r2_score(y, y_hat, multioutput="variance_weighted")`` (the
        definition of :meth:`MatryoshkaTranscoder.score` and of the other
        models' ``score``), not the uniform average over targets of
        scikit-learn's regressors. Use it on held-out bins.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
            Source bins, consecutive in time within each stretch.
        y : array-like of shape (n_bins, n_targets) or (n_bins,)
            The target's bins, as many targets as at fit time.
        interval_ids : array-like of shape (n_bins,), default=None
            Stretch of each bin; None: all bins are one stretch.
        sample_weight : array-like of shape (n_bins,), default=None
            Non-negative weights of the bins' errors and deviations (see
            :func:`~sklearn_nldisco.models.explained_variance`); also what lets
            ``Pipeline.score`` run under metadata routing, which hands every
            final step a ``sample_weight``.

        Returns
        -------
        score : float
        """
        X = self._validate_for_coding(X)
        Y = check_target(y, X.shape[0], self.decoder_bias_.shape[0])
        if Y.ndim == 1:
            Y = Y[:, None]
        return explained_variance(Y, self._predict_validated(X, interval_ids, None),
                                  sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.regressor_tags.poor_score = True
        return tags


__all__ = ["MotifTranscoder"]
