"""Shared scikit-learn face of the Matryoshka autoencoder and transcoder.

``_BaseMatryoshka`` validates parameters and data, initialises the
parameters, hands training to ``_training`` (torch, imported only inside
``fit``) and stores the result as NumPy arrays. Encoding and decoding use
``_inference`` (NumPy only), so a fitted model needs no torch.
"""

import functools
import sys
from contextlib import ExitStack, contextmanager
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
from threadpoolctl import threadpool_limits

from . import _inference, _out_of_core
from ._init import (
    BIAS_INITS,
    SCALINGS,
    bias_from_data,
    random_unit_rows,
    scaling_statistics,
    validation_rows,
)
from ._losses import LOSSES, NONNEGATIVE_LOSSES, check_nonnegative, inverse_link_numpy

try:  # scikit-learn >= 1.9: progress bars and other fit callbacks
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # pragma: no cover - older scikit-learn

    class _NoCallbackContext:
        def call_on_fit_task_begin(self, **kwargs):
            return self

        def call_on_fit_task_end(self, **kwargs):
            return False

        def subcontext(self, **kwargs):
            return self

    class CallbackSupportMixin:  # noqa: D101 - stand-in without callbacks
        def _init_callback_context(self, **kwargs):
            return _NoCallbackContext()

    def with_callbacks(method):
        return method


@contextmanager
def limit_threads(n_threads, *, torch_module=None):
    """Cap the thread pools that fitting and coding use, restoring them on exit.

    ``n_threads=None`` changes nothing. An int caps, for the duration of the
    block, torch's intra-op threads (``torch.set_num_threads``; torch is
    only touched when ``torch_module`` is given or torch is already
    imported, so coding never imports it), the BLAS and OpenMP pools
    (``threadpoolctl.threadpool_limits``) and numba's parallel threads
    (``numba.set_num_threads``, capped at numba's own pool size). The previous
    values come back when the block ends, error or not. These are
    process-wide settings: cap processes (loky, Dask workers), not threads
    sharing one process.
    """
    if n_threads is None:
        yield
        return
    n_threads = int(n_threads)
    torch = torch_module if torch_module is not None else sys.modules.get("torch")
    with ExitStack() as stack:
        # Starting numba's threading layer (OpenMP) can reset the OpenMP pool
        # that torch shares: torch's count is read before anything else,
        # restored after everything else, and limited last.
        if torch is not None:
            stack.callback(torch.set_num_threads, torch.get_num_threads())
        _limit_numba_threads(n_threads, stack)
        stack.enter_context(threadpool_limits(limits=n_threads))
        if torch is not None:
            torch.set_num_threads(n_threads)
        yield


def _limit_numba_threads(n_threads, stack):
    """``numba.set_num_threads`` within numba's pool size, when it can start one."""
    try:
        import numba

        previous = numba.get_num_threads()
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # pragma: no cover - no usable threading layer
        return
    stack.callback(numba.set_num_threads, previous)


def _with_thread_limit(method):
    """Run ``method`` under ``limit_threads(self.n_threads)``."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with limit_threads(getattr(self, "n_threads", None)):
            return method(self, *args, **kwargs)

    return wrapper


def _with_fit_thread_limit(method):
    """Run a fitting ``method`` under ``limit_threads(self.n_threads)``.

    Fitting imports torch, so torch's threads are capped too; with
    ``n_threads=None`` the method runs as it is.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.n_threads is None:
            return method(self, *args, **kwargs)
        from . import _training  # torch is needed for fitting only

        with limit_threads(self.n_threads, torch_module=_training.torch):
            return method(self, *args, **kwargs)

    return wrapper


# partial_fit's running BatchTopK threshold: the earlier estimate weighs at
# most this many times the current chunk (an exponential average with a
# memory of about five chunks)
_THRESHOLD_MEMORY = 4.0


def default_level_sizes(n_latents, k):
    """Levels ``(n_latents // 4, n_latents // 2, n_latents)``, those >= k kept."""
    sizes = sorted({size for size in (n_latents // 4, n_latents // 2, n_latents)})
    return tuple(size for size in sizes if size >= max(k, 1))


def resolve_levels(n_latents, k, level_sizes, level_weights):
    """Check that ``n_latents``, ``k``, ``level_sizes`` and weights agree.

    Returns the level sizes and the level weights as tuples. Raises a
    ValueError naming the argument, the value and what was expected.
    """
    if k > n_latents:
        raise ValueError(
            f"k={k} is larger than n_latents={n_latents}; expected "
            f"1 <= k <= n_latents."
        )
    if level_sizes is None:
        sizes = default_level_sizes(n_latents, k)
    else:
        sizes = tuple(int(size) for size in level_sizes)
        if len(sizes) == 0:
            raise ValueError("level_sizes=() is empty; expected at least one level.")
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
            raise ValueError(
                f"level_sizes={tuple(level_sizes)} must be positive and strictly "
                "increasing (each level is a prefix of the next)."
            )
        if sizes[-1] != n_latents:
            raise ValueError(
                f"level_sizes={tuple(level_sizes)} contradicts n_latents={n_latents}: "
                f"the last level must use all latents (level_sizes[-1] == n_latents)."
            )
        if k > sizes[0]:
            raise ValueError(
                f"k={k} is larger than the first level (level_sizes[0]={sizes[0]}); "
                "expected k <= level_sizes[0] so that every level can hold k "
                "active latents."
            )
    if level_weights is None:
        weights = (1.0,) * len(sizes)
    else:
        weights = tuple(float(weight) for weight in level_weights)
        if len(weights) != len(sizes):
            raise ValueError(
                f"level_weights={tuple(level_weights)} has {len(weights)} entries but "
                f"there are {len(sizes)} levels (level_sizes={sizes}); expected one "
                "weight per level."
            )
        if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"level_weights={tuple(level_weights)} must be finite, non-negative "
                "and not all zero."
            )
    return sizes, weights


def check_2d_not_empty(X, name="X"):
    """1-D and empty inputs get an error that names the argument."""
    shape = getattr(X, "shape", None)
    if shape is None:
        shape = np.asarray(X).shape
    if len(shape) == 1:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features) but got a 1-D array of shape "
            f"{tuple(shape)}. Reshape your data either using array.reshape(-1, 1) "
            "if your data has a single feature or array.reshape(1, -1) if it "
            "contains a single sample."
        )
    if len(shape) == 2 and shape[0] == 0:
        raise ValueError(
            f"{name} is empty (shape={tuple(shape)}); expected at least one sample."
        )


class _BaseMatryoshka(
    CallbackSupportMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Common parameters, fitting and coding of the Matryoshka models."""

    _is_autoencoder = True

    _parameter_constraints = {
        "n_latents": [Interval(Integral, 1, None, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "level_sizes": ["array-like", None],
        "level_weights": ["array-like", None],
        "loss": [StrOptions(set(LOSSES))],
        "sparsity": [StrOptions({"batchtopk", "topk"})],
        "scaling": [StrOptions(set(SCALINGS))],
        "bias_init": [StrOptions(set(BIAS_INITS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warmup_fraction": [Interval(Real, 0, 1, closed="both")],
        "decay_fraction": [Interval(Real, 0, 1, closed="both")],
        "grad_clip": [Interval(Real, 0, None, closed="left"), None],
        "aux_k": [Interval(Integral, 1, None, closed="left"), None],
        "aux_coef": [Interval(Real, 0, None, closed="left")],
        "dead_window": [Interval(Real, 0, None, closed="neither")],
        "sparse_output": ["boolean"],
        "code_refit": [StrOptions({"auto", "none", "nnls", "pursuit"})],
        "device": [str],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_latents=256,
        *,
        k=8,
        level_sizes=None,
        level_weights=None,
        loss="mse",
        sparsity="batchtopk",
        scaling="center",
        bias_init="geometric_median",
        batch_size=1024,
        learning_rate=1e-2,
        max_iter=200,
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
        sparse_output=False,
        code_refit="auto",
        device="auto",
        n_threads=None,
        random_state=None,
        verbose=0,
    ):
        self.n_latents = n_latents
        self.k = k
        self.level_sizes = level_sizes
        self.level_weights = level_weights
        self.loss = loss
        self.sparsity = sparsity
        self.scaling = scaling
        self.bias_init = bias_init
        self.batch_size = batch_size
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
        self.sparse_output = sparse_output
        self.code_refit = code_refit
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # --------------------------------------------------------------- fitting
    @_with_fit_thread_limit
    def _fit_core(self, X, Y):
        """Fit the coder that encodes ``X`` and reconstructs ``Y``.

        ``Y is X`` for the autoencoder (tied input and output bias). With
        ``n_threads`` set, the whole fit runs under ``limit_threads``.
        """
        autoencoder = Y is X
        sizes, weights = self._check_fit_arguments(Y, autoencoder)
        rng = check_random_state(self.random_state)

        input_mean, input_scale, target_mean, target_scale = self._scaling_statistics(
            X, Y, autoencoder)
        X_in, Y_target = self._scaled(
            X, Y, autoencoder, input_mean, input_scale, target_mean, target_scale
        )
        tied = autoencoder and self.loss not in NONNEGATIVE_LOSSES

        held_out = None
        if self.early_stopping:
            held_out = validation_rows(X.shape[0], self.validation_fraction, rng)
        if held_out is None:
            X_train, Y_train, X_val, Y_val = X_in, Y_target, None, None
        else:
            X_train, X_val = X_in[~held_out], X_in[held_out]
            if Y_target is X_in:
                Y_train, Y_val = X_train, X_val
            else:
                Y_train, Y_val = Y_target[~held_out], Y_target[held_out]

        init = self._initial_parameters(X_train, Y_train, autoencoder, tied, rng)
        input_bias = init["input_bias"]
        n_train = X_train.shape[0]
        config = self._training_config(
            sizes, weights, tied, n_train, has_validation=X_val is not None
        )

        from . import _training  # torch is needed for fitting only

        device = _training.resolve_device(self.device)
        trainer = _training.MatryoshkaTrainer(init, config, device)
        callback_ctx = self._init_callback_context(max_subtasks=self.max_iter)
        callback_ctx.call_on_fit_task_begin(estimator=self, X=X, y=None if autoencoder else Y)

        def on_epoch_end(epoch):
            epoch_ctx = callback_ctx.subcontext(task_name="epoch")
            epoch_ctx.call_on_fit_task_begin(estimator=self)
            return bool(epoch_ctx.call_on_fit_task_end(estimator=self))

        result = _training.with_quiet_sparse_warnings(
            _training.train, trainer, X_train, Y_train, X_val, Y_val, target_scale,
            config, rng, on_epoch_end=on_epoch_end, verbose=self.verbose,
        )
        if self.sparsity == "batchtopk":
            threshold = _training.calibrate_threshold(trainer, X_train, self.k)
        else:
            threshold = 0.0
        self._store_fit(
            trainer.state(), result, device,
            parameters=(input_bias, tied, threshold, sizes, weights),
            scaling=(input_mean, input_scale, target_mean, target_scale),
        )
        codes = self._encode(X, sparse_output=True, dtype=np.float32)
        self._store_latent_counts(np.bincount(codes.indices, minlength=self.n_latents),
                                  X.shape[0])
        callback_ctx.call_on_fit_task_end(estimator=self, X=X)
        return self

    def _store_fit(self, state, result, device, *, parameters, scaling):
        """The fitted attributes of ``fit`` (in memory or out of core).

        ``state``: the trainer's ``state()``; ``result``: ``n_iter``,
        ``best_epoch``, ``n_steps``, ``stop_reason`` and ``history`` of the
        epoch loop; ``parameters``: ``(input_bias, tied, threshold, sizes,
        weights)``; ``scaling``: input and target ``(mean, scale)``.
        """
        self._set_parameters(state, *parameters)
        self.input_mean_, self.input_scale_, self.target_mean_, self.target_scale_ = scaling
        self.n_iter_ = result["n_iter"]
        self.best_iter_ = result["best_epoch"]
        self.n_steps_ = result["n_steps"]
        self.stop_reason_ = result["stop_reason"]
        self.history_ = result["history"]
        self.device_ = str(device)
        # a fit starts over: nothing of an earlier partial_fit carries on
        self.__dict__.pop("_partial_state", None)

    def _store_latent_counts(self, counts, n_rows):
        """``latent_frequency_`` and ``dead_latents_`` from per-latent counts."""
        self.latent_frequency_ = counts / max(n_rows, 1)
        self.dead_latents_ = np.flatnonzero(counts == 0)

    # ---------------------------------------------------------- out of core
    #: rows read at a time by ``fit``, ``transform`` and ``score`` on a
    #: memmap or HDF5 dataset (rounded down to a multiple of ``batch_size``
    #: for training)
    _out_of_core_chunk_rows = _out_of_core.DEFAULT_CHUNK_ROWS

    @_with_fit_thread_limit
    def _fit_out_of_core(self, X, Y=None):
        """``fit`` on a memmap or HDF5 dataset, chunk by chunk (``Y=None``: the
        autoencoder; see ``_out_of_core.fit_out_of_core``)."""
        sizes, weights = self._check_fit_arguments(None, Y is None)
        return _out_of_core.fit_out_of_core(self, X, Y, sizes, weights)

    def _check_fit_arguments(self, Y, autoencoder):
        """Resolved levels; errors for negative counts (``Y`` not None) and
        undefined refits."""
        sizes, weights = resolve_levels(
            self.n_latents, self.k, self.level_sizes, self.level_weights
        )
        if Y is not None:  # out-of-core targets are checked chunk by chunk
            check_nonnegative(Y, "y" if not autoencoder else "X", self.loss)
        if self.code_refit in ("nnls", "pursuit") and (not autoencoder or self.loss != "mse"):
            raise ValueError(
                f"code_refit={self.code_refit!r} needs a linear decoder of the input: "
                f"it is defined for MatryoshkaSAE with loss='mse' only (got "
                f"{type(self).__name__} with loss={self.loss!r}); use code_refit='none'."
            )
        return sizes, weights

    def _scaling_statistics(self, X, Y, autoencoder):
        """Input and target ``(mean, scale)``: counts losses leave the target
        unscaled, the mse autoencoder's target is its scaled input."""
        input_mean, input_scale = scaling_statistics(X, self.scaling)
        if self.loss in NONNEGATIVE_LOSSES:
            target_mean, target_scale = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        elif autoencoder:
            target_mean, target_scale = input_mean, input_scale
        else:
            target_mean, target_scale = scaling_statistics(Y, self.scaling)
        return input_mean, input_scale, target_mean, target_scale

    def _scaled(self, X, Y, autoencoder, input_mean, input_scale, target_mean, target_scale):
        """Input and target as the trainer sees them (float32)."""
        X_in = _out_of_core.scaled_float32(X, input_mean, input_scale)
        if self.loss in NONNEGATIVE_LOSSES:
            Y_target = Y.astype(np.float32)
        elif autoencoder:
            Y_target = X_in
        else:
            Y_target = _out_of_core.scaled_float32(Y, target_mean, target_scale)
        return X_in, Y_target

    def _initial_parameters(self, X_train, Y_train, autoencoder, tied, rng):
        """Random unit dictionary, tied encoder, biases from the data."""
        n_outputs = Y_train.shape[1]
        decoder_weight = random_unit_rows(self.n_latents, n_outputs, rng)
        if autoencoder:
            encoder_weight = decoder_weight.T.copy()
        else:
            encoder_weight = random_unit_rows(self.n_latents, X_train.shape[1], rng).T.copy()
        if self.loss in NONNEGATIVE_LOSSES:
            decoder_bias = inverse_link_numpy(Y_train.mean(axis=0, dtype=np.float64), self.loss)
        else:
            decoder_bias = bias_from_data(Y_train, self.bias_init, rng)
        input_bias = decoder_bias if tied else bias_from_data(X_train, self.bias_init, rng)
        return {
            "encoder_weight": encoder_weight,
            "encoder_bias": np.zeros(self.n_latents),
            "decoder_weight": decoder_weight,
            "decoder_bias": decoder_bias,
            "input_bias": input_bias,
        }

    def _set_parameters(self, state, input_bias, tied, threshold, sizes, weights):
        """The fitted arrays from a trainer's ``state()``."""
        self.components_ = state["decoder_weight"]
        self.encoder_weight_ = state["encoder_weight"]
        self.encoder_bias_ = state["encoder_bias"]
        self.decoder_bias_ = state["decoder_bias"]
        self.input_bias_ = (
            state["decoder_bias"].copy() if tied else np.asarray(input_bias).astype(np.float32)
        )
        self.threshold_ = threshold
        self.level_sizes_ = np.asarray(sizes, dtype=np.int64)
        self.level_weights_ = np.asarray(weights, dtype=np.float64) / sum(weights)

    # ------------------------------------------------------------ streaming
    @_with_fit_thread_limit
    def _partial_fit_core(self, X, Y):
        """One pass over a chunk, continuing from the stored state."""
        from . import _training  # torch is needed for fitting only

        autoencoder = Y is X
        tied = autoencoder and self.loss not in NONNEGATIVE_LOSSES
        n_rows = X.shape[0]
        partial = getattr(self, "_partial_state", None)
        fitted = hasattr(self, "components_")
        if fitted and Y.shape[1] != self.decoder_bias_.shape[0]:
            raise ValueError(
                f"y has {Y.shape[1]} targets but {type(self).__name__} was fitted with "
                f"{self.decoder_bias_.shape[0]}; every chunk needs the same targets."
            )
        if partial is not None:
            sizes, weights = partial["levels"]
            check_nonnegative(Y, "y" if not autoencoder else "X", self.loss)
        else:
            sizes, weights = self._check_fit_arguments(Y, autoencoder)
        if not fitted:
            # first call: initialise exactly as fit does, statistics from this chunk
            rng = check_random_state(self.random_state)
            input_mean, input_scale, target_mean, target_scale = self._scaling_statistics(
                X, Y, autoencoder)
        else:
            input_mean, input_scale = self.input_mean_, self.input_scale_
            target_mean, target_scale = self.target_mean_, self.target_scale_
        X_in, Y_target = self._scaled(
            X, Y, autoencoder, input_mean, input_scale, target_mean, target_scale
        )
        config = self._training_config(sizes, weights, tied, n_rows, has_validation=False)
        config["early_stopping"] = False
        device = _training.resolve_device(self.device)
        if not fitted:
            init = self._initial_parameters(X_in, Y_target, autoencoder, tied, rng)
            trainer = _training.MatryoshkaTrainer(init, config, device)
        elif partial is None:
            # after fit: continue from the fitted weights with a fresh optimiser
            rng = check_random_state(self.random_state)
            init = {
                "encoder_weight": self.encoder_weight_,
                "encoder_bias": self.encoder_bias_,
                "decoder_weight": self.components_,
                "decoder_bias": self.decoder_bias_,
                "input_bias": self.input_bias_,
            }
            trainer = _training.MatryoshkaTrainer(init, config, device)
        else:
            rng = np.random.RandomState()
            rng.set_state(partial["rng"])
            trainer = _training.MatryoshkaTrainer.from_exported(
                partial["trainer"], config, device
            )
        if partial is None:
            steps = max(1, n_rows // min(self.batch_size, n_rows))
            warmup_steps = max(1, int(self.warmup_fraction * self.max_iter * steps))
            n_calls = 0
            history = {}
            threshold_weight = 0.0 if not fitted else np.inf
            threshold_stat = 0.0 if not fitted else float(self.threshold_)
        else:
            warmup_steps = partial["warmup_steps"]
            n_calls = int(self.n_iter_)
            history = self.history_
            threshold_stat, threshold_weight = partial["threshold"]
        config["warmup_steps"] = warmup_steps

        entry = _training.with_quiet_sparse_warnings(
            _training.train_pass, trainer, X_in, Y_target, config, rng
        )
        if self.sparsity == "batchtopk":
            # running estimate: this chunk's exact calibration under the new
            # weights, averaged with the earlier estimate, which weighs at most
            # _THRESHOLD_MEMORY times this chunk (older chunks fade out)
            chunk_threshold = _training.calibrate_threshold(trainer, X_in, self.k)
            previous_weight = min(threshold_weight, _THRESHOLD_MEMORY * n_rows)
            threshold_stat = (previous_weight * threshold_stat + n_rows * chunk_threshold) / (
                previous_weight + n_rows
            )
            threshold_weight += n_rows
            threshold = float(np.float32(threshold_stat))
        else:
            threshold = 0.0
        exported = trainer.export_state()
        self._set_parameters(exported, exported["input_bias"], tied, threshold, sizes, weights)
        self.input_bias_ = self.input_bias_.copy()
        for name in ("components_", "encoder_weight_", "encoder_bias_", "decoder_bias_"):
            setattr(self, name, getattr(self, name).copy())
        self.input_mean_, self.input_scale_ = input_mean, input_scale
        self.target_mean_, self.target_scale_ = target_mean, target_scale
        self.n_iter_ = n_calls + 1
        self.best_iter_ = self.n_iter_
        self.n_steps_ = int(exported["step_count"])
        self.stop_reason_ = "partial_fit"
        self.history_ = {
            name: np.concatenate(
                [history[name], np.asarray([value], dtype=np.float64)]
            ) if name in history else np.asarray([value], dtype=np.float64)
            for name, value in entry.items()
        }
        self.device_ = str(device)
        codes = self._encode(X, sparse_output=True, dtype=np.float32)
        self._store_latent_counts(np.bincount(codes.indices, minlength=self.n_latents), n_rows)
        self._partial_state = {
            "trainer": exported,
            "rng": rng.get_state(),
            "warmup_steps": warmup_steps,
            "threshold": (threshold_stat, threshold_weight),
            "levels": (sizes, weights),
        }
        return self

    def _training_config(self, sizes, weights, tied, n_train, has_validation):
        """Hyper-parameters of the training loop, resolved against the data."""
        return {
            "level_sizes": sizes,
            "level_weights": weights,
            "k": self.k,
            "sparsity": self.sparsity,
            "loss": self.loss,
            "tie_input_bias": tied,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "max_iter": self.max_iter,
            "early_stopping": self.early_stopping and has_validation,
            "n_iter_no_change": self.n_iter_no_change,
            "tol": self.tol,
            "warmup_fraction": self.warmup_fraction,
            "decay_fraction": self.decay_fraction,
            "grad_clip": self.grad_clip,
            "aux_k": self.aux_k if self.aux_k is not None else self.k,
            "aux_coef": self.aux_coef,
            "dead_window": max(self.dead_window * n_train, min(self.batch_size, n_train)),
        }

    # --------------------------------------------------------------- coding
    @property
    def _n_features_out(self):
        return self.n_latents

    def _encode(self, X, *, sparse_output, dtype):
        weight, offset = _inference.fold_encoder(
            self.encoder_weight_, self.encoder_bias_, self.input_bias_,
            self.input_mean_, self.input_scale_,
        )
        mode = self._code_refit_mode()
        refit = None
        decoder = (self.components_, self.decoder_bias_, self.input_mean_, self.input_scale_)
        if mode == "pursuit":
            refit = _inference.NonNegativePursuit(*decoder, k=self.k)
        elif mode == "nnls":
            refit = _inference.NonNegativeRefit(*decoder)
        return _inference.encode(
            X, weight, offset, threshold=self.threshold_, k=self.k,
            sparsity=self.sparsity, sparse_output=sparse_output, dtype=dtype, refit=refit,
            n_threads=getattr(self, "n_threads", None),
        )

    def _code_refit_mode(self):
        """``code_refit`` resolved: ``"auto"`` is ``"nnls"`` for the
        squared-error autoencoder, where a refit is defined, else ``"none"``."""
        if self.code_refit == "auto":
            return "nnls" if self._is_autoencoder and self.loss == "mse" else "none"
        return self.code_refit

    def _validate_for_coding(self, X):
        check_is_fitted(self)
        if _out_of_core.is_out_of_core(X):
            # read in chunks by the coder; never converted whole
            n_features = _out_of_core.check_out_of_core(X)[1]
            if n_features != self.n_features_in_:
                raise ValueError(
                    f"X has {n_features} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
            return _out_of_core.CheckedRows(X)
        check_2d_not_empty(X)
        return validate_data(
            self, X, reset=False, dtype=[np.float64, np.float32], order="C"
        )

    @_with_thread_limit
    def transform(self, X):
        """Sparse codes of ``X``: one row per sample, one column per latent.

        Each row is coded alone (the BatchTopK threshold calibrated at fit
        time, or per-row top-k), so a row's code never depends on the others
        (its values may differ in the last bit of float32 with the row's
        position, as BLAS rounds; the active latents do not). Rows are processed in chunks: memory beyond the output is bounded.
        A NumPy memmap or an HDF5 dataset is read chunk by chunk (each chunk
        checked for NaN and infinity), never converted whole; with
        ``sparse_output=True`` the CSR codes are assembled from the chunks,
        so only the non-zero codes are held in memory.

        Parameters
        ----------
        X : array-like, memmap or HDF5 dataset of shape (n_samples, n_features)

        Returns
        -------
        codes : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_latents)
            Non-negative activations, in the dtype of ``X`` (float32 or
            float64); CSR when ``sparse_output=True``.
        """
        X = self._validate_for_coding(X)
        return self._encode(X, sparse_output=self.sparse_output, dtype=X.dtype)

    def _level_index(self, level):
        if level is None:
            return len(self.level_sizes_) - 1
        n_levels = len(self.level_sizes_)
        if not isinstance(level, Integral) or not -n_levels <= level < n_levels:
            raise ValueError(
                f"level={level!r} is not a valid level; expected an integer in "
                f"[{-n_levels}, {n_levels - 1}] (level_sizes_={tuple(self.level_sizes_.tolist())})."
            )
        return int(level) % n_levels

    def _decode(self, codes, level):
        n_used = int(self.level_sizes_[self._level_index(level)])
        return _inference.decode(
            codes, self.components_, self.decoder_bias_, n_used=n_used, loss=self.loss,
            target_mean=self.target_mean_, target_scale=self.target_scale_,
        )

    @_with_thread_limit
    def inverse_transform(self, X, level=None):
        """Reconstruct from codes, using the latents of one level.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_latents)
            Codes, as returned by ``transform``.
        level : int, default=None
            Index into ``level_sizes_``: reconstruct from latents
            ``[0, level_sizes_[level])`` only. None uses every latent.

        Returns
        -------
        reconstruction : ndarray of shape (n_samples, n_outputs)
            In the original units of the target (scaling undone).
        """
        check_is_fitted(self)
        codes = check_array(
            X, accept_sparse="csr", dtype=[np.float64, np.float32], input_name="X"
        )
        if codes.shape[1] != self.n_latents:
            raise ValueError(
                f"X has {codes.shape[1]} columns but {type(self).__name__} has "
                f"n_latents={self.n_latents}; expected codes from transform."
            )
        return self._decode(codes, level)

    @_with_thread_limit
    def _score_out_of_core(self, X, Y):
        """Explained variance of ``Y`` (``X`` for the autoencoder) by chunks of ``X``."""
        return _out_of_core.explained_variance_out_of_core(
            self, X, Y, chunk_rows=self._out_of_core_chunk_rows)

    @_with_thread_limit
    def _reconstruct(self, X, level):
        X = self._validate_for_coding(X)
        codes = self._encode(X, sparse_output=True, dtype=np.float32)
        return self._decode(codes, level)

    def __setstate__(self, state):
        # models pickled before ``n_threads`` existed load with the default
        state.setdefault("n_threads", None)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = False
        return tags


def explained_variance(Y, Y_pred):
    """``1 - sum((Y - Y_pred)^2) / sum((Y - mean(Y))^2)`` over all entries."""
    Y = np.asarray(Y, dtype=np.float64)
    total = np.square(Y - Y.mean(axis=0)).sum()
    residual = np.square(Y - Y_pred).sum()
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return float(1.0 - residual / total)


__all__ = [
    "_BaseMatryoshka", "_fit_context", "with_callbacks", "explained_variance",
    "limit_threads", "_with_thread_limit",
]
