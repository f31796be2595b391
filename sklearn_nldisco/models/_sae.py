"""MatryoshkaSAE: the nested sparse autoencoder."""

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils.validation import validate_data

from ._base import (
    _BaseMatryoshka,
    _unchanged_on_failure,
    check_2d_not_empty,
    check_sample_weight,
    explained_variance,
    with_callbacks,
)
from ._rows import (
    CheckedRows,
    check_out_of_core,
    is_out_of_core,
)

_PARAMETERS_DOC = """
    n_latents : int, default=256
        Size of the dictionary (number of latents), shared by all levels.
    k : int or dict, default=8
        Sparsity: the mean number of active latents per sample (L0). With
        ``sparsity="topk"`` exactly (at most) ``k`` per sample. A dict
        ``{level_size: k_level}`` (e.g. ``{128: 4, 512: 8}``) gives each
        level its own budget and its own selection: level ``i`` reconstructs
        from the ``k_i * batch_size`` largest activations of its latents
        ``[0, m_i)`` in training and from those above its own threshold at
        inference. The keys must equal ``level_sizes`` (or set them when it
        is None) and ``k`` must not decrease from one level to the next;
        ``sparsity="batchtopk"`` only, ``fit`` only (not ``partial_fit``),
        trained in the fused CPU step as an int ``k`` is (autograd elsewhere).
        ``transform`` returns the union of the levels' selections.
    level_sizes : tuple of int, default=None
        Nested prefixes: level ``i`` uses latents ``[0, level_sizes[i])`` and
        must reconstruct the target on its own. Strictly increasing, the last
        equal to ``n_latents``, the first at least ``k``. None gives
        ``(n_latents // 4, n_latents // 2, n_latents)`` without entries
        smaller than ``k``.
    level_weights : tuple of float, default=None
        Weight of each level's loss (normalised to sum to one). None weighs
        levels equally.
    loss : {"mse", "poisson", "msle"}, default="mse"
        Reconstruction loss. ``"mse"``: squared error on the scaled target,
        for rates, smoothed or z-scored activity. ``"poisson"``: Poisson
        deviance of raw counts with a softplus output (a positive rate), the
        natural likelihood of unsmoothed spike counts. ``"msle"``: squared
        error of ``log1p`` counts, which keeps bursting units from dominating.
        The last two need non-negative targets, which they see unscaled.
    sparsity : {"batchtopk", "topk"}, default="batchtopk"
        ``"batchtopk"`` keeps the ``k * batch_size`` largest activations of
        each training batch (rows may use more or fewer than ``k``; one
        selection shared by all levels) and codes new data with a single
        threshold calibrated on the training data so that the mean L0 is
        ``k``. ``"topk"`` keeps the ``k`` largest per row, in training and
        inference. Either way a row's code never depends on other rows.
    scaling : {"center", "standard", "scale", "none"}, default="center"
        Per-unit input scaling fitted on the training data and undone by
        ``inverse_transform``: mean removal, z-score, division by the
        standard deviation, or nothing. ``"center"`` keeps spike counts in
        their units, so the loss weighs each unit by its own variance (what
        explained variance in counts measures); ``"standard"`` gives every
        unit the same weight, which favours quiet units.
    bias_init : {"geometric_median", "median", "mean", "zeros"}, default="geometric_median"
        Initial decoder bias (and input centring) from the training data.
        With ``"poisson"``/``"msle"`` the output bias starts at the inverse
        link of the mean counts instead.
    batch_size : int, default=1024
        Samples per optimiser step. ``fit`` caps it at a tenth of the
        training rows (rounded up), so that an epoch takes at least 10
        steps on small recordings; ``partial_fit`` caps it at the rows of
        the chunk.
    learning_rate : float, default=1e-2
        Adam step size, after a linear warm-up and before the final decay.
    max_iter : int, default=200
        Maximum number of epochs (passes over the training rows).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows (contiguous blocks, as
        time bins are correlated), stop when the validation loss has not
        improved by ``tol`` (relative) for ``n_iter_no_change`` epochs, and
        keep the parameters of the best epoch.
    validation_fraction : float, default=0.1
        Fraction of the rows held out for early stopping.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    tol : float, default=1e-4
        Relative improvement of the validation loss that counts as progress.
    warmup_fraction : float, default=0.05
        Fraction of the ``max_iter`` schedule spent warming the learning rate up.
    decay_fraction : float, default=0.2
        Final fraction of the schedule over which the learning rate decays
        linearly to 1 % of its value.
    grad_clip : float or None, default=1.0
        Clip the global gradient norm to this value; None or 0 disables.
    aux_k : int, default=None
        Dead latents per sample used by the auxiliary loss that revives them
        (AuxK: they reconstruct the detached residual of the full model).
        None means ``k``. A small budget concentrates the signal on the
        strongest dead latents and revives more of them than a large one
        (see "Benchmarks" in the documentation).
    aux_coef : float, default=0.25
        Weight of the auxiliary loss (scaled by ``min(n_dead / aux_k, 1)``);
        0 disables it.
    dead_window : float, default=0.1
        A latent is dead when it has not fired for ``dead_window`` epochs'
        worth of training samples (so the window follows the data size).
        Short windows start the revival early and leave fewer latents dead
        at the end of training.
    mask_fraction : float, default=0.25
        Masked-unit training: in every training step each input entry is
        hidden from the encoder with this probability (set to the encoder's
        centre; kept entries are scaled by ``1 / (1 - mask_fraction)``), and
        the autoencoder's loss is scored on the hidden entries only, so that
        each unit is learned from the *other* units: latents are population
        features, not copies of single units. The encoder then starts apart
        from the decoder (a tied start would leave every latent a path back
        to its own units that masking never scores away) and
        ``code_refit="auto"`` keeps the encoder's values. The transcoder's
        loss stays over all outputs (input dropout). Inference never masks.
        On the CPU masked steps run in the fused step, at about the time
        of unmasked ones. Measured
        on M1 (see "Models" in the documentation): the explained variance
        that unit-shifted data does not have rises from 0.03 to 0.19 at
        k = 8, and on independent units (no structure) held-out explained
        variance falls from 0.65 to about 0, while raw held-out explained
        variance is lower (0.17 instead of 0.46 at k = 8: the unmasked model
        also reproduced each unit's own noise). 0 gives the behaviour of
        earlier releases.
    sparse_output : bool, default=False
        Return ``scipy.sparse`` CSR codes from ``transform``.
    code_refit : {"auto", "none", "nnls", "pursuit"}, default="auto"
        How the codes' values (and, for ``"pursuit"``, their support) are
        set at inference. ``"none"``: the encoder's values under the
        threshold rule, the fast path for very large data. ``"nnls"``: the
        encoder picks the latents, their values are refitted by
        non-negative least squares on those decoder rows, which raises
        held-out explained variance. ``"pursuit"``: exactly at most
        ``k`` latents per row, chosen greedily with explaining-away (as in
        orthogonal matching pursuit) among the encoder's ``4 k`` strongest
        candidates, with non-negative least-squares values: the best
        reconstruction when every row must use at most ``k`` latents, and
        the slowest. ``"auto"`` is ``"nnls"`` for the
        autoencoder with ``loss="mse"`` trained without masking (the only
        case where a refit is defined: the decoder must be linear in the
        codes and reconstruct the input; a masked model predicts each unit
        from the others, which a refit to the unit itself would undo) and
        ``"none"`` otherwise. Refits cost ``transform`` time
        (figures for both effects under "Benchmarks" in the documentation);
        they apply to ``transform``, ``reconstruct`` and
        ``score`` alike.
    device : str, default="auto"
        Torch device for training: ``"auto"`` (CUDA when present, else CPU),
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``... Inference always runs in NumPy.
    n_threads : int, default=None
        Threads this estimator may use in one process. None leaves every
        thread pool as it is (the default and the previous behaviour). An
        int caps, during ``fit``, ``transform``, ``predict``, ``reconstruct``
        and ``score`` only: torch's intra-op threads
        (``torch.set_num_threads``; torch is not imported by coding), the
        BLAS and OpenMP pools (``threadpoolctl.threadpool_limits``), numba's
        parallel threads (``numba.set_num_threads``) and the chunk threads of
        ``transform``. Every previous value is restored when the call
        returns or raises. In a grid search or ``fit_seeds`` with ``n_jobs``
        worker processes, set ``n_threads = n_cores // n_jobs`` so that the
        workers do not oversubscribe the cores; for the loky backend,
        ``joblib.parallel_config(inner_max_num_threads=...)`` caps the BLAS
        and OpenMP pools (and hence torch's default) of the workers in the
        same way. The limits are process-wide, so they suit process
        workers (loky, Dask), not the threading backend. On CPU, with a fixed
        ``random_state``, the fitted model is the same whatever the value
        (see ``docs/scaling.md``).
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, validation split and batch order. On CPU a
        fixed seed gives bitwise-identical models.
    verbose : int, default=0
        Print one line per epoch when positive. Progress bars are available
        through ``set_callbacks(sklearn.callback.ProgressBar())`` on
        scikit-learn >= 1.9.
"""

_ATTRIBUTES_DOC = """
    components_ : ndarray of shape (n_latents, n_outputs)
        Decoder dictionary, unit-norm rows, in scaled target units.
    encoder_weight_ : ndarray of shape (n_features, n_latents)
    encoder_bias_ : ndarray of shape (n_latents,)
    decoder_bias_ : ndarray of shape (n_outputs,)
    input_bias_ : ndarray of shape (n_features,)
        Subtracted from the scaled input before encoding (the decoder bias
        for the mse autoencoder).
    threshold_ : float or ndarray of shape (n_levels,)
        Inference threshold (BatchTopK); 0.0 for ``sparsity="topk"``. With
        a per-level ``k``, one threshold per level.
    level_sizes_ : ndarray of int
    level_weights_ : ndarray of float, summing to one
    input_mean_, input_scale_ : ndarray of shape (n_features,)
        Input scaling: the encoder sees ``(X - input_mean_) / input_scale_``.
    target_mean_, target_scale_ : ndarray of shape (n_outputs,)
        Scaling of the reconstruction target, undone at decoding.
    latent_frequency_ : ndarray of shape (n_latents,)
        Fraction of the rows passed to ``fit`` (held-out blocks included) on
        which each latent is active under the inference rule.
    dead_latents_ : ndarray of int
        Latents that are never active on the rows passed to ``fit``.
    n_iter_ : int
        Epochs run (with ``partial_fit``: calls, i.e. passes over a chunk).
    best_iter_ : int
        Epoch whose parameters were kept.
    n_steps_ : int
        Optimiser steps taken.
    stop_reason_ : str
        Why training stopped: ``"max_iter"``, ``"early_stopping"``,
        ``"callback"``, ``"interrupted"`` (a ``KeyboardInterrupt`` was caught:
        the model keeps the epoch ``best_iter_``, see "What happens when
        things go wrong" in ``docs/models.md``), ``"diverged"`` (a
        ``ConvergenceWarning`` said so) or ``"partial_fit"``. A program that
        must stop on Ctrl-C checks ``stop_reason_ == "interrupted"``.
    history_ : dict of ndarray
        Per epoch: ``train_loss`` and ``val_loss`` (n_epochs, n_levels),
        ``val_explained_variance`` (n_epochs, n_levels, original units),
        ``l0``, ``dead_fraction``, ``aux_loss``, ``learning_rate``,
        ``epoch_time`` (n_epochs,).
    device_ : str
        Device used for training.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` has string column names.
"""


class MatryoshkaSAE(_BaseMatryoshka):
    __doc__ = (
        """Matryoshka sparse autoencoder for binned neural activity.

    A sparse encoder-decoder trained on ``X`` (time bins x units). The
    encoder is ``z = ReLU((x - b_dec) W_enc + b_enc)`` followed by top-k
    selection; one dictionary of ``n_latents`` unit-norm decoder rows is cut
    into nested prefixes (levels) and every level reconstructs ``X`` on its
    own (``x_i = z[:, :m_i] W_dec[:m_i] + b_dec``), so broad features settle
    in the first latents and finer ones in later levels. Training is Adam on
    fp32 weights with the decoder kept at unit norm (radial gradient removed),
    tied initialisation, an auxiliary loss for dead latents and early
    stopping on held-out rows. Decoding touches only the active decoder rows.

    Parameters
    ----------"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    MatryoshkaTranscoder : The same model reconstructing another population.
    sklearn.decomposition.MiniBatchDictionaryLearning : Sparse coding by OMP.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco import MatryoshkaSAE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.poisson(2.0, size=(500, 20)).astype(float)
    >>> sae = MatryoshkaSAE(n_latents=32, k=4, max_iter=5, random_state=0).fit(X)
    >>> sae.transform(X).shape
    (500, 32)
    >>> sae.level_sizes_.tolist()
    [8, 16, 32]
    """
    )

    @_unchanged_on_failure
    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the autoencoder to ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Binned activity, e.g. spike counts (time bins x units). A NumPy
            memmap or an HDF5 dataset is read in chunks and never loaded
            whole: exact scaling statistics from one streaming pass, then
            each epoch visits the chunks in a shuffled order with the rows
            shuffled inside each chunk (not one global shuffle, so the
            result differs from fitting the same data from memory); see
            "Out-of-core input" in ``docs/scaling.md``.
        y : Ignored

        Returns
        -------
        self : MatryoshkaSAE
        """
        if is_out_of_core(X):
            # read in chunks, never loaded whole (see docs/scaling.md)
            n_features = check_out_of_core(X)[1]
            self.n_features_in_ = n_features
            self.__dict__.pop("feature_names_in_", None)
            return self._fit(X)
        check_2d_not_empty(X)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        return self._fit(X)

    @_unchanged_on_failure
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One pass (epoch) over a chunk of ``X``, continuing the training.

        The first call (on an unfitted model) initialises the model exactly
        as ``fit`` does, with the scaling statistics of that first chunk,
        which stay frozen afterwards (they define the model's input space).
        Each call runs one shuffled pass over the chunk in mini-batches of
        ``batch_size`` (no validation split, no early stopping); Adam's
        moments and step count, the learning-rate schedule (linear warm-up,
        then constant ``learning_rate``), the dead-latent counters and the
        running BatchTopK threshold carry over between calls, and survive
        pickling. On a model fitted by ``fit``, training continues from the
        fitted weights with a fresh optimiser. ``fit`` starts over. See
        ``docs/scaling.md``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of binned activity.
        y : Ignored

        Returns
        -------
        self : MatryoshkaSAE
        """
        check_2d_not_empty(X)
        first_call = not hasattr(self, "components_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=first_call)
        return self._partial_fit(X)

    def reconstruct(self, X, level=None):
        """Reconstruct ``X`` through the codes of one level.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        level : int, default=None
            Index into ``level_sizes_``; None uses every latent.

        Returns
        -------
        X_hat : ndarray of shape (n_samples, n_features), original units.
        """
        return self._reconstruct(X, level)

    def score(self, X, y=None, sample_weight=None):
        """Explained variance of the full reconstruction of ``X``.

        ``1 - sum((X - X_hat)^2) / sum((X - mean(X))^2)`` over all entries, in
        the original units; higher is better. Use it on held-out rows.

        Parameters
        ----------
        X : array-like, memmap or HDF5 dataset of shape (n_samples, n_features)
            A memmap or HDF5 dataset is scored chunk by chunk: neither it
            nor its reconstruction is held in memory whole.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights (see :func:`explained_variance`); also
            what lets ``Pipeline.score`` run under metadata routing, which
            hands every final step a ``sample_weight``.

        Returns
        -------
        score : float
        """
        X = self._validate_for_coding(X)
        if isinstance(X, CheckedRows):
            # chunk by chunk: neither X nor its reconstruction is held whole
            if sample_weight is not None:
                sample_weight = check_sample_weight(sample_weight, X.X)
            return self._score_out_of_core(X.X, X.X, sample_weight)
        return explained_variance(X, self._reconstruct_validated(X, None), sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self.loss != "mse"
        return tags
