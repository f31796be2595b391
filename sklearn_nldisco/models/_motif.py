"""MotifSAE: a shift-equivariant convolutional Matryoshka sparse autoencoder.

One code per time bin, decoded with temporal kernels shared over time, so a
latent is a short spatio-temporal pattern (a motif) wherever it occurs. The
estimator holds NumPy arrays only: ``fit`` trains through torch
(``_motif_training``, imported inside ``fit``), coding and decoding are
NumPy (the ``"conv"`` encoder never imports torch). Its parameters, fitting
and coding live in ``_BaseMotif``, which ``MotifTranscoder``
(``_motif_transcoder``) shares.
"""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ..preprocessing import interval_positions
from ._base import (
    OPTIMISATION_CONSTRAINTS,
    _unchanged_on_failure,
    check_2d_not_empty,
    explained_variance,
)
from ._initialisation import scaling_statistics
from ._spec import check_level_sizes, check_level_weights

_SCALINGS = ("center", "standard", "none")


def default_motif_level_sizes(n_latents):
    """Levels ``(n_latents // 4, n_latents // 2, n_latents)``, empty ones dropped."""
    return tuple(sorted({size for size in (n_latents // 4, n_latents // 2, n_latents)
                         if size >= 1}))


@dataclass(frozen=True)
class MotifTrainingSpec:
    """Every setting of a ``MotifSAE`` or ``MotifTranscoder`` training run,
    resolved and checked.

    The fields mirror ``MotifSAE``'s parameters; ``level_sizes`` and
    ``level_weights`` are resolved tuples (weights summing to one) and
    ``aux_k`` a float.
    """

    n_latents: int
    n_bins_kernel: int
    k: float
    encoder: str
    local_max_bins: int
    level_sizes: tuple
    level_weights: tuple
    batch_size: int
    chunk_bins: int
    learning_rate: float
    max_iter: int
    early_stopping: bool
    validation_fraction: float
    n_iter_no_change: int
    tol: float
    warmup_fraction: float
    decay_fraction: float
    grad_clip: float | None
    aux_k: float
    aux_coef: float
    dead_window: float
    device: str
    verbose: int
    #: False: the transcoder (the kernels decode a target, not the input)
    autoencoder: bool = True


# ------------------------------------------------------------ NumPy coding
# The sums below use ``np.einsum`` without BLAS: a BLAS product may round a
# row by its position in the matrix, and a bin's code must depend on its
# window only (shifting the input shifts the codes bit for bit).
def _stretch_bounds(interval_ids, n_bins):
    """Each bin's position in its stretch and the stretch's length."""
    positions, lasts = interval_positions(interval_ids, n_bins)
    lengths = lasts - (np.arange(n_bins) - positions)
    return positions, lengths


def encode_conv(X_scaled, encoder_weight, encoder_bias, positions, lengths):
    """Pre-activations ``b + sum_tau X[t + tau] . E[:, tau]`` (zeros past a stretch).

    ``X_scaled`` (n_bins, n_units), ``encoder_weight`` (n_latents, n_kernel,
    n_units); returns (n_bins, n_latents) in the dtype of ``X_scaled``.
    """
    # C order: einsum's summation order (and so the last bit) follows the layout
    X_scaled = np.ascontiguousarray(X_scaled)
    n_bins = X_scaled.shape[0]
    pre = np.empty((n_bins, encoder_weight.shape[0]), dtype=X_scaled.dtype)
    pre[:] = encoder_bias.astype(X_scaled.dtype)
    shifted = np.zeros_like(X_scaled)
    for tau in range(encoder_weight.shape[1]):
        shifted[:] = 0
        if tau < n_bins:
            shifted[: n_bins - tau] = X_scaled[tau:]
        shifted[positions + tau >= lengths] = 0
        pre += np.einsum("tu,ju->tj", shifted,
                         encoder_weight[:, tau].astype(X_scaled.dtype), optimize=False)
    return pre


def decode_conv(codes, components, positions, lengths, n_used=None):
    """``sum_tau z[t - tau] . D[:, tau]`` within stretches (no bias).

    ``codes`` (n_bins, n_latents), ``components`` (n_latents, n_kernel,
    n_units); only latents ``[0, n_used)`` decode. The non-zero codes are
    added one by one, in the order of their bins, so an output bin's sum
    depends on the codes that reach it only (shift-equivariant bit for bit).
    """
    n_used = codes.shape[1] if n_used is None else n_used
    kernels = components[:n_used].astype(codes.dtype)
    out = np.zeros((codes.shape[0], components.shape[2]), dtype=codes.dtype)
    bins, latents = np.nonzero(codes[:, :n_used])
    if bins.size == 0:
        return out
    values = codes[bins, latents][:, None]
    for tau in range(components.shape[1]):
        # a code emits within its stretch only
        inside = positions[bins] + tau < lengths[bins]
        np.add.at(out, bins[inside] + tau, values[inside] * kernels[latents[inside], tau])
    return out


def local_maxima(pre, positions, lengths, width):
    """Whether each pre-activation is its latent's largest within ``width``
    bins on either side in its stretch (ties go to the earlier bin)."""
    keep = np.ones(pre.shape, dtype=bool)
    n_bins = pre.shape[0]
    for distance in range(1, min(width, n_bins - 1) + 1):
        # the bin ``distance`` earlier, in the same stretch: strictly smaller
        earlier = np.full(pre.shape, -np.inf)
        earlier[distance:] = pre[:-distance]
        earlier[positions < distance] = -np.inf
        keep &= pre > earlier
        # the bin ``distance`` later: not larger
        later = np.full(pre.shape, -np.inf)
        later[:-distance] = pre[distance:]
        later[positions + distance >= lengths] = -np.inf
        keep &= pre >= later
    return keep


def select_codes(pre, threshold, keep=None):
    """Keep the pre-activations above ``max(threshold, 0)`` (and in ``keep``)."""
    selected = pre > max(float(threshold), 0.0)
    if keep is not None:
        selected &= keep
    return np.where(selected, pre, 0).astype(pre.dtype, copy=False)


def calibrate_threshold(pre, k, keep=None):
    """The cut under which ``pre`` keeps (about) ``k`` values per row on average."""
    budget = int(round(k * pre.shape[0]))
    candidates = pre > 0 if keep is None else (pre > 0) & keep
    values = pre[candidates]
    if budget <= 0 or values.size == 0:
        return float(values.max()) if values.size else 0.0
    if budget >= values.size:
        return 0.0
    # the (budget + 1)-th largest value: exactly ``budget`` lie above it
    return float(np.partition(values, values.size - budget - 1)[values.size - budget - 1])


_PARAMETERS_DOC = """
    n_latents : int, default=64
        Number of motifs (latents), shared by all levels.
    n_bins_kernel : int, default=10
        Length of each motif in bins (the decoder kernels and the encoder's
        window). Choose it to cover the longest pattern expected, e.g. the
        duration of a motif divided by the bin size; a kernel longer than
        the motif leaves the extra bins near zero.
    k : float, default=0.1
        Sparsity: the mean number of active latents per bin (BatchTopK). In
        training each mini-batch keeps its ``k * n_bins`` largest
        activations (all levels share one selection); ``transform`` keeps
        the activations above one threshold calibrated on the bins given to
        ``fit`` so that their mean L0 is ``k``. A code marks a motif's onset,
        so a motif occurring every few hundred bins needs far fewer than
        one code per bin: ``k`` may be below 1.
    local_max_bins : int, default=None
        A latent codes at most one onset within this many bins on either
        side: a code is kept only where its pre-activation is the largest of
        its latent's within ``local_max_bins`` bins before and after (in the
        same stretch; ties go to the earlier bin), in training and
        inference. A matched filter responds over several bins around a
        pattern's onset; this keeps the one at the onset instead of a smear.
        None means ``n_bins_kernel // 2``; 0 disables it (each bin then
        depends only on the bins its kernel covers).
    level_sizes : tuple of int, default=None
        Nested prefixes: level ``i`` uses latents ``[0, level_sizes[i])`` and
        reconstructs ``X`` on its own. Strictly increasing, the last equal
        to ``n_latents``. None gives ``(n_latents // 4, n_latents // 2,
        n_latents)``.
    level_weights : tuple of float, default=None
        Weight of each level's loss (normalised to sum to one). None weighs
        levels equally.
    encoder : {"conv", "transformer"}, default="conv"
        ``"conv"``: a linear convolution over the bins each kernel covers
        (``t`` to ``t + n_bins_kernel - 1``) plus a bias, then the threshold;
        NumPy only at inference, exactly shift-equivariant.
        ``"transformer"``: a small torch encoder giving per-bin codes: the
        same convolution embeds each bin as a token (width 64), one
        pre-norm transformer layer (4 heads, feed-forward 128, no dropout)
        lets each token attend to the tokens of its stretch within
        ``n_bins_kernel // 2`` bins on either side (no absolute positions,
        so shift-equivariant up to float rounding), and a linear readout
        gives the pre-activations. It starts at random (not tied to the
        kernels) and its kernels are not re-aligned to onsets in training.
        It needs torch at inference: ``transform``, ``reconstruct`` and
        ``score`` import torch (``inverse_transform`` does not).
    scaling : {"center", "standard", "none"}, default="center"
        Per-unit scaling fitted on the training bins and undone by
        ``inverse_transform``: mean removal (the loss weighs each unit by
        its variance in counts), z-score, or nothing. Bins beyond a stretch's
        ends count as zeros of the scaled data (the mean, when centred).
    batch_size : int, default=2048
        Bins per optimiser step (capped at a tenth of the training bins,
        rounded up, so that an epoch takes at least about 10 steps).
    chunk_bins : int, default=128
        Training bins are cut into chunks of this length (a step takes
        ``batch_size // chunk_bins`` of them, at least one); each chunk is
        coded with ``n_bins_kernel - 1`` bins of context on each side within
        its stretch, so that its loss is the loss of the whole sequence.
        It is also the block of the validation split.
    learning_rate : float, default=3e-3
        Adam step size, after a linear warm-up and before the final decay.
    max_iter : int, default=100
        Maximum number of epochs (passes over the training bins).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the bins (whole chunks of
        ``chunk_bins``, each coded as a stretch of its own), stop when the
        validation loss has not improved by ``tol`` (relative) for
        ``n_iter_no_change`` epochs, and keep the parameters of the best
        epoch.
    validation_fraction : float, default=0.1
        Fraction of the chunks held out for early stopping.
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
    aux_k : float, default=None
        Activations per bin of dead latents in the auxiliary loss that
        revives them (they reconstruct the detached residual of the full
        model). None means ``k``.
    aux_coef : float, default=0.25
        Weight of the auxiliary loss (the residual's squared error relative
        to its power); 0 disables it.
    dead_window : float, default=0.1
        A latent is dead when it has not fired for ``dead_window`` epochs'
        worth of training bins.
    device : str, default="auto"
        Torch device for training: ``"auto"`` (CUDA when present, else CPU),
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``... Inference runs in NumPy.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, validation split and chunk order. On CPU a
        fixed seed gives bitwise-identical models.
    verbose : int, default=0
        Print one line per epoch when positive.
"""

_ATTRIBUTES_DOC = """
    components_ : ndarray of shape (n_latents, n_bins_kernel, n_units)
        Decoder kernels (motifs), unit Frobenius norm, in scaled units:
        ``components_[j, tau]`` is what a code of latent ``j`` at bin ``t``
        adds to bin ``t + tau``.
    encoder_weight_ : ndarray of shape (n_latents, n_bins_kernel, n_units)
        ``encoder_weight_[j, tau]`` weighs bin ``t + tau`` in the code of
        latent ``j`` at bin ``t``. With ``encoder="transformer"``, the
        token embedding, shape (64, n_bins_kernel, n_units).
    encoder_bias_ : ndarray of shape (n_latents,)
        With ``encoder="transformer"``, the readout's bias.
    encoder_state_ : dict of str to ndarray
        ``encoder="transformer"`` only: every weight of the encoder (its
        torch ``state_dict`` as NumPy arrays).
    decoder_bias_ : ndarray of shape (n_units,)
        In scaled units.
    threshold_ : float
        Inference threshold (calibrated BatchTopK).
    level_sizes_ : ndarray of int
    level_weights_ : ndarray of float, summing to one
    input_mean_, input_scale_ : ndarray of shape (n_units,)
        Scaling: the model sees ``(X - input_mean_) / input_scale_``.
    latent_frequency_ : ndarray of shape (n_latents,)
        Fraction of the bins passed to ``fit`` on which each latent is active
        under the inference rule.
    dead_latents_ : ndarray of int
        Latents never active on the bins passed to ``fit``.
    n_iter_ : int
        Epochs run.
    best_iter_ : int
        Epoch whose parameters were kept.
    n_steps_ : int
        Optimiser steps taken.
    stop_reason_ : str
        ``"max_iter"`` or ``"early_stopping"``.
    history_ : dict of ndarray
        Per epoch: ``train_loss``, ``val_loss`` (NaN without validation),
        ``l0`` (active latents per bin in training), ``dead_fraction``,
        ``aux_loss``, ``learning_rate``.
    device_ : str
        Device used for training.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` has string column names.
"""


class _BaseMotif(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Parameters, fitting and coding shared by ``MotifSAE`` and ``MotifTranscoder``.

    The codes come from the convolutional (or transformer) encoder over
    ``X``; the kernels decode ``X`` itself (the autoencoder) or a target
    ``Y`` (the transcoder, ``_is_autoencoder = False``).
    """

    _is_autoencoder = True

    _parameter_constraints = {
        "n_latents": [Interval(Integral, 1, None, closed="left")],
        "n_bins_kernel": [Interval(Integral, 1, None, closed="left")],
        "k": [Interval(Real, 0, None, closed="neither")],
        "local_max_bins": [Interval(Integral, 0, None, closed="left"), None],
        "level_sizes": ["array-like", None],
        "level_weights": ["array-like", None],
        "encoder": [StrOptions({"conv", "transformer"})],
        "scaling": [StrOptions(set(_SCALINGS))],
        **OPTIMISATION_CONSTRAINTS,
        "chunk_bins": [Interval(Integral, 1, None, closed="left")],
        "aux_k": [Interval(Real, 0, None, closed="neither"), None],
        "aux_coef": [Interval(Real, 0, None, closed="left")],
        "dead_window": [Interval(Real, 0, None, closed="neither")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_latents=64,
        *,
        n_bins_kernel=10,
        k=0.1,
        local_max_bins=None,
        level_sizes=None,
        level_weights=None,
        encoder="conv",
        scaling="center",
        batch_size=2048,
        chunk_bins=128,
        learning_rate=3e-3,
        max_iter=100,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warmup_fraction=0.05,
        decay_fraction=0.2,
        grad_clip=1.0,
        aux_k=None,
        aux_coef=0.25,
        dead_window=0.1,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_latents = n_latents
        self.n_bins_kernel = n_bins_kernel
        self.k = k
        self.local_max_bins = local_max_bins
        self.level_sizes = level_sizes
        self.level_weights = level_weights
        self.encoder = encoder
        self.scaling = scaling
        self.batch_size = batch_size
        self.chunk_bins = chunk_bins
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warmup_fraction = warmup_fraction
        self.decay_fraction = decay_fraction
        self.grad_clip = grad_clip
        self.aux_k = aux_k
        self.aux_coef = aux_coef
        self.dead_window = dead_window
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # --------------------------------------------------------------- checks
    def _levels(self):
        """Checked level sizes and weights (weights summing to one)."""
        if self.level_sizes is None:
            sizes = default_motif_level_sizes(self.n_latents)
        else:
            sizes = check_level_sizes(self.level_sizes, self.n_latents)
        weights = check_level_weights(self.level_weights, sizes)
        total = sum(weights)
        return sizes, tuple(weight / total for weight in weights)

    def _training_spec(self):
        if self.k > self.n_latents:
            raise ValueError(
                f"k={self.k} is larger than n_latents={self.n_latents}; expected "
                "0 < k <= n_latents (active latents per bin on average)."
            )
        sizes, weights = self._levels()
        return MotifTrainingSpec(
            n_latents=self.n_latents, n_bins_kernel=self.n_bins_kernel, k=float(self.k),
            encoder=self.encoder, local_max_bins=self._local_max_bins(),
            level_sizes=sizes, level_weights=weights, batch_size=self.batch_size,
            chunk_bins=self.chunk_bins, learning_rate=float(self.learning_rate),
            max_iter=self.max_iter, early_stopping=bool(self.early_stopping),
            validation_fraction=float(self.validation_fraction),
            n_iter_no_change=self.n_iter_no_change, tol=float(self.tol),
            warmup_fraction=float(self.warmup_fraction),
            decay_fraction=float(self.decay_fraction),
            grad_clip=None if not self.grad_clip else float(self.grad_clip),
            aux_k=float(self.k if self.aux_k is None else self.aux_k),
            aux_coef=float(self.aux_coef), dead_window=float(self.dead_window),
            device=self.device, verbose=int(self.verbose),
            autoencoder=self._is_autoencoder,
        )

    # --------------------------------------------------------------- fitting
    def _fit_validated(self, X, Y, interval_ids):
        """Fit the codes of ``X`` to decode ``Y`` (None: ``X`` itself); both validated."""
        positions, lengths = _stretch_bounds(interval_ids, X.shape[0])
        spec = self._training_spec()
        mean, scale = scaling_statistics(X, self.scaling)
        X_scaled = ((X - mean) / scale).astype(np.float32)
        Y_scaled = None
        if Y is not None:
            target_mean, target_scale = scaling_statistics(Y, self.scaling)
            Y_scaled = ((Y - target_mean) / target_scale).astype(np.float32)
        starts = np.flatnonzero(positions == 0)
        stretches = np.column_stack([starts, starts + lengths[starts]])

        from . import _motif_training  # torch is needed for fitting only

        fitted = _motif_training.train(
            X_scaled, stretches, spec, check_random_state(self.random_state), Y_scaled)
        parameters = fitted["parameters"]
        self.components_ = parameters["decoder_weight"]
        self.decoder_bias_ = parameters["decoder_bias"]
        if self.encoder == "conv":
            self.encoder_weight_ = parameters["encoder_weight"]
            self.encoder_bias_ = parameters["encoder_bias"]
            self.__dict__.pop("encoder_state_", None)
        else:
            state = parameters["encoder_state"]
            self.encoder_state_ = state
            self.encoder_weight_ = state["embed.weight"].transpose(0, 2, 1).copy()
            self.encoder_bias_ = state["readout.bias"]
        self.input_mean_, self.input_scale_ = mean, scale
        if Y is not None:
            self.target_mean_, self.target_scale_ = target_mean, target_scale
        self.level_sizes_ = np.asarray(spec.level_sizes, dtype=np.int64)
        self.level_weights_ = np.asarray(spec.level_weights, dtype=np.float64)
        for name in ("n_iter", "best_iter", "n_steps", "stop_reason", "history", "device"):
            setattr(self, name + "_", fitted[name])
        pre = self._pre_activations(X_scaled.astype(np.float64), positions, lengths)
        keep = self._keep(pre, positions, lengths)
        self.threshold_ = calibrate_threshold(pre, spec.k, keep)
        active = select_codes(pre, self.threshold_, keep) > 0
        self.latent_frequency_ = active.mean(axis=0)
        self.dead_latents_ = np.flatnonzero(~active.any(axis=0))
        return self

    # --------------------------------------------------------------- coding
    @property
    def _n_features_out(self):
        return self.n_latents

    def _validate_for_coding(self, X):
        check_is_fitted(self)
        check_2d_not_empty(X)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32], order="C")

    def _codes(self, X, positions, lengths):
        """Codes (float64) of validated ``X``."""
        X_scaled = (np.asarray(X, dtype=np.float64) - self.input_mean_) / self.input_scale_
        pre = self._pre_activations(X_scaled, positions, lengths)
        return select_codes(pre, self.threshold_, self._keep(pre, positions, lengths))

    def _pre_activations(self, X_scaled, positions, lengths):
        """The encoder's output before selection, (n_bins, n_latents) float64."""
        if self.encoder == "conv":
            return encode_conv(X_scaled, self.encoder_weight_, self.encoder_bias_,
                               positions, lengths)
        from . import _motif_transformer  # the transformer needs torch to code

        return _motif_transformer.pre_activations(
            self.encoder_state_, X_scaled.astype(np.float32), positions, lengths,
            self.n_bins_kernel, self.n_latents)

    def _local_max_bins(self):
        if self.local_max_bins is None:
            return self.n_bins_kernel // 2
        return int(self.local_max_bins)

    def _keep(self, pre, positions, lengths):
        width = self._local_max_bins()
        return local_maxima(pre, positions, lengths, width) if width else None

    def transform(self, X, interval_ids=None):
        """Sparse non-negative codes, one row per bin, one column per latent.

        A code at bin ``t`` marks the onset of its motif there. A bin's code
        depends on the bins ``t`` to ``t + n_bins_kernel - 1`` of its
        stretch only (zeros of the scaled data beyond the stretch's end).

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
            Consecutive time bins, in time order within each stretch.
        interval_ids : array-like of shape (n_bins,), default=None
            Stretch of each bin; None: all bins are one stretch.

        Returns
        -------
        codes : ndarray of shape (n_bins, n_latents)
            In the dtype of ``X`` (float32 or float64).
        """
        X = self._validate_for_coding(X)
        positions, lengths = _stretch_bounds(interval_ids, X.shape[0])
        return self._codes(X, positions, lengths).astype(X.dtype, copy=False)

    def _level_size(self, level):
        n_levels = len(self.level_sizes_)
        if level is None:
            return int(self.level_sizes_[-1])
        if (not isinstance(level, Integral) or isinstance(level, (bool, np.bool_))
                or not -n_levels <= level < n_levels):
            raise ValueError(
                f"level={level!r} is not a valid level; expected an integer in "
                f"[{-n_levels}, {n_levels - 1}] (level_sizes_="
                f"{tuple(self.level_sizes_.tolist())})."
            )
        return int(self.level_sizes_[level])

    def _decode(self, codes, positions, lengths, level):
        """The decoded output (float64) in its original units."""
        n_used = self._level_size(level)
        scaled = decode_conv(codes, self.components_, positions, lengths, n_used)
        scaled += self.decoder_bias_
        if self._is_autoencoder:
            return scaled * self.input_scale_ + self.input_mean_
        return scaled * self.target_scale_ + self.target_mean_

    def inverse_transform(self, X, interval_ids=None, level=None):
        """Decode codes, using the latents of one level.

        ``MotifSAE`` reconstructs the bins of ``X``; ``MotifTranscoder``
        predicts its target ``y`` (always two-dimensional here).

        Parameters
        ----------
        X : array-like of shape (n_bins, n_latents)
            Codes, as returned by ``transform``.
        interval_ids : array-like of shape (n_bins,), default=None
            Stretch of each bin: a code emits its motif within its own
            stretch only. None: all bins are one stretch.
        level : int, default=None
            Index into ``level_sizes_``: reconstruct from latents
            ``[0, level_sizes_[level])`` only. None uses every latent.

        Returns
        -------
        reconstruction : ndarray of shape (n_bins, n_outputs)
            ``n_outputs`` is ``n_units`` (``MotifSAE``) or ``n_targets``
            (``MotifTranscoder``); in the original units (scaling undone),
            in the dtype of the codes.
        """
        check_is_fitted(self)
        codes = check_array(X, dtype=[np.float64, np.float32], input_name="X")
        if codes.shape[1] != self.n_latents:
            raise ValueError(
                f"X has {codes.shape[1]} columns but {type(self).__name__} has n_latents="
                f"{self.n_latents}; expected codes from transform."
            )
        positions, lengths = _stretch_bounds(interval_ids, codes.shape[0])
        return self._decode(codes.astype(np.float64), positions, lengths, level).astype(
            codes.dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = False
        return tags


class MotifSAE(_BaseMotif):
    __doc__ = (
        """Shift-equivariant convolutional Matryoshka sparse autoencoder (motifs).

    One sparse, non-negative code per time bin, decoded by kernels shared
    over time: a code of latent ``j`` at bin ``t`` marks the onset of motif
    ``j`` there and emits the motif over bins ``t`` to ``t + n_bins_kernel -
    1``::

        x_hat[t] = b + sum_j sum_tau z[t - tau, j] D[j, tau, :]

    with unit-norm kernels ``D`` (``components_``). The encoder is a
    convolution over the bins the kernel covers,
    ``z[t] = threshold(b_enc + sum_tau E[:, tau] x[t + tau])``, so the same
    pattern is coded the same way wherever it occurs: shifting ``X`` by ``s``
    bins shifts the codes by ``s`` bins, exactly, away from the ends.
    Sparsity is BatchTopK (``k`` active latents per bin on average; one
    threshold calibrated on the training bins at inference) among each
    latent's local maxima in time (``local_max_bins``). The latents
    are cut into nested prefixes (levels) and every level reconstructs ``X``
    alone; the loss is the weighted sum of the levels' squared errors, as
    in :class:`MatryoshkaSAE`.

    Rows of ``X`` are consecutive time bins. ``interval_ids`` (one id per
    bin, e.g. the trial) mark stretches that are coded as separate
    sequences: no convolution crosses from one stretch into another, the
    bins beyond a stretch's ends count as zeros (of the scaled data). Pass
    ``interval_ids`` to ``fit``, ``transform``, ``inverse_transform`` and
    ``score``; in a Pipeline, request it with
    ``set_fit_request(interval_ids=True)`` (and ``set_transform_request``,
    ``set_score_request``) under ``sklearn.set_config(enable_metadata_routing=True)``.

    Training is torch autograd (``conv1d`` / ``conv_transpose1d``) with
    Adam on random chunks of bins that never cross a stretch boundary,
    tied initialisation (the ``"conv"`` encoder starts as the matched filter
    of the random kernels), kernels moved to their pattern's onset after
    each epoch, an auxiliary loss for dead latents and early stopping on
    held-out chunks. With ``encoder="conv"``, ``transform``,
    ``inverse_transform`` and ``score`` are NumPy only: a fitted model needs
    no torch.

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
    MatryoshkaSAE : The single-bin model (one pattern per bin).
    sklearn_nldisco.preprocessing.TimeWindows : Windows of bins for the
        flat-window model.

    Notes
    -----
    A bin's code depends on the bins after it (up to ``n_bins_kernel - 1``)
    in its stretch and, through the local maxima, on its neighbours' (up to
    ``local_max_bins`` on either side); its reconstruction depends on the
    codes before it: the
    output for a bin changes with the rows around it, so code whole
    stretches, in time order. The sums of coding and decoding avoid BLAS
    (whose rounding may depend on a row's position), which makes them
    exactly shift-equivariant and a few times slower than a matrix product.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco import MotifSAE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.poisson(2.0, size=(600, 10)).astype(float)
    >>> model = MotifSAE(n_latents=8, n_bins_kernel=5, max_iter=3, random_state=0)
    >>> model.fit(X, interval_ids=np.repeat([0, 1, 2], 200)).components_.shape
    (8, 5, 10)
    >>> model.transform(X, interval_ids=np.repeat([0, 1, 2], 200)).shape
    (600, 8)
    """
    )

    @_unchanged_on_failure
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, interval_ids=None):
        """Fit the motifs to the bins of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
            Binned activity (e.g. spike counts), rows consecutive time bins
            in time order within each stretch.
        y : Ignored
        interval_ids : array-like of shape (n_bins,), default=None
            Stretch of each bin (e.g. ``SpikeBinner.interval_ids_``), each
            stretch's bins consecutive. None: all bins are one stretch.

        Returns
        -------
        self : MotifSAE
        """
        check_2d_not_empty(X)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        return self._fit_validated(X, None, interval_ids)

    def fit_transform(self, X, y=None, interval_ids=None):
        """``fit`` then ``transform`` with the same ``interval_ids``.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
        y : Ignored
        interval_ids : array-like of shape (n_bins,), default=None

        Returns
        -------
        codes : ndarray of shape (n_bins, n_latents)
        """
        return self.fit(X, y, interval_ids=interval_ids).transform(X, interval_ids=interval_ids)

    def reconstruct(self, X, interval_ids=None, level=None):
        """Reconstruct ``X`` through the codes of one level.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
        interval_ids : array-like of shape (n_bins,), default=None
        level : int, default=None
            Index into ``level_sizes_``; None uses every latent.

        Returns
        -------
        X_hat : ndarray of shape (n_bins, n_units), original units.
        """
        X = self._validate_for_coding(X)
        positions, lengths = _stretch_bounds(interval_ids, X.shape[0])
        return self._decode(self._codes(X, positions, lengths), positions, lengths, level)

    def score(self, X, y=None, interval_ids=None, sample_weight=None):
        """Explained variance of the full reconstruction of ``X``.

        ``1 - sum((X - X_hat)^2) / sum((X - mean(X))^2)`` over all entries,
        in the original units; higher is better. Use it on held-out bins.

        Parameters
        ----------
        X : array-like of shape (n_bins, n_units)
        y : Ignored
        interval_ids : array-like of shape (n_bins,), default=None
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
        positions, lengths = _stretch_bounds(interval_ids, X.shape[0])
        reconstruction = self._decode(self._codes(X, positions, lengths), positions, lengths,
                                      None)
        return explained_variance(X, reconstruction, sample_weight)


__all__ = ["MotifSAE"]
