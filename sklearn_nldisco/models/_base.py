"""Shared scikit-learn face of the Matryoshka autoencoder and transcoder.

``_BaseMatryoshka`` validates parameters and data, turns its parameters
into a ``TrainingSpec`` and its data into a row source, hands both to the
training driver (``_driver.train``; torch, imported only inside ``fit``) and
stores the ``Fitted`` result as NumPy arrays. Encoding and decoding use
``_inference`` (NumPy only), so a fitted model needs no torch.
"""

import functools
import sys
from contextlib import ExitStack, contextmanager
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)
from threadpoolctl import threadpool_limits

from . import _inference, _rows
from ._initialisation import BIAS_INITS, SCALINGS
from ._losses import LOSSES
from ._spec import Carried, TrainingSpec

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


def _unchanged_on_failure(method):
    """A fitting ``method`` that raises leaves the estimator as it was.

    Whatever stops it (a parameter or data error found late, a divergence
    with no usable epoch, an interrupt before the first epoch is complete or
    during a ``partial_fit`` pass), the attributes come back as they were
    before the call: a fitted model stays fitted with its earlier state, an
    unfitted one stays unfitted. The fitted attributes are replaced, never
    changed in place, so a shallow copy is the whole earlier state.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        before = dict(self.__dict__)
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return wrapper


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


#: the constraints of the optimisation parameters that every trained model shares
OPTIMISATION_CONSTRAINTS = {
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
}


class _BaseMatryoshka(
    CallbackSupportMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Common parameters, fitting and coding of the Matryoshka models."""

    _is_autoencoder = True

    _parameter_constraints = {
        "n_latents": [Interval(Integral, 1, None, closed="left")],
        # a dict (a budget per level) is checked by check_level_k; hidden so
        # that the message for a bad int k is unchanged
        "k": [Interval(Integral, 1, None, closed="left"), Hidden(dict)],
        "level_sizes": ["array-like", None],
        "level_weights": ["array-like", None],
        "loss": [StrOptions(set(LOSSES))],
        "sparsity": [StrOptions({"batchtopk", "topk"})],
        "scaling": [StrOptions(set(SCALINGS))],
        "bias_init": [StrOptions(set(BIAS_INITS))],
        **OPTIMISATION_CONSTRAINTS,
        "aux_k": [Interval(Integral, 1, None, closed="left"), None],
        "aux_coef": [Interval(Real, 0, None, closed="left")],
        "dead_window": [Interval(Real, 0, None, closed="neither")],
        "mask_fraction": [Interval(Real, 0, 1, closed="left")],
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
        mask_fraction=0.25,
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
        self.mask_fraction = mask_fraction
        self.sparse_output = sparse_output
        self.code_refit = code_refit
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # --------------------------------------------------------------- fitting
    #: rows read at a time by ``fit``, ``transform`` and ``score`` on a
    #: memmap or HDF5 dataset (rounded down to a multiple of ``batch_size``
    #: for training)
    _out_of_core_chunk_rows = _rows.READ_CHUNK_ROWS

    def _training_spec(self, autoencoder):
        """The checked settings of a fit; errors for undefined refits."""
        spec = TrainingSpec.from_estimator(self, autoencoder=autoencoder)
        if spec.per_level_k and self.sparsity != "batchtopk":
            raise ValueError(
                f"k={self.k!r} (a budget per level) needs sparsity='batchtopk' (got "
                f"sparsity={self.sparsity!r}); use an int k with sparsity='topk'."
            )
        if spec.per_level_k and self.code_refit == "pursuit":
            raise ValueError(
                f"code_refit='pursuit' chooses k latents per row and needs an int k "
                f"(got k={self.k!r}); use code_refit='auto', 'nnls' or 'none'."
            )
        if self.code_refit in ("nnls", "pursuit") and (not autoencoder or self.loss != "mse"):
            raise ValueError(
                f"code_refit={self.code_refit!r} needs a linear decoder of the input: "
                f"it is defined for MatryoshkaSAE with loss='mse' only (got "
                f"{type(self).__name__} with loss={self.loss!r}); use code_refit='none'."
            )
        return spec

    def _row_source(self, X, Y):
        """``X`` and the target ``Y`` (None: the autoencoder) as a row source."""
        if _rows.is_out_of_core(X) or (Y is not None and _rows.is_out_of_core(Y)):
            return _rows.ChunkedRows(X, Y, chunk_rows=self._out_of_core_chunk_rows,
                                     batch_size=self.batch_size, loss=self.loss)
        return _rows.ArrayRows(X, Y, loss=self.loss)

    @_with_fit_thread_limit
    def _fit(self, X, Y=None):
        """Fit the coder that encodes ``X`` and reconstructs ``Y`` (None: ``X``).

        In memory or out of core (a memmap or HDF5 ``X`` or ``Y``), through
        the one training driver; with ``n_threads`` set, under
        ``limit_threads``.
        """
        spec = self._training_spec(autoencoder=Y is None)
        source = self._row_source(X, Y)
        from . import _driver  # torch is needed for fitting only

        callback_ctx = self._init_callback_context(max_subtasks=self.max_iter)
        callback_ctx.call_on_fit_task_begin(estimator=self, X=X, y=Y)

        def on_epoch_end(epoch):
            epoch_ctx = callback_ctx.subcontext(task_name="epoch")
            epoch_ctx.call_on_fit_task_begin(estimator=self)
            return bool(epoch_ctx.call_on_fit_task_end(estimator=self))

        fitted = _driver.train(source, spec, random_state=self.random_state,
                               on_epoch_end=on_epoch_end)
        self._store(fitted, spec, source)
        callback_ctx.call_on_fit_task_end(estimator=self, X=X)
        return self

    @_with_fit_thread_limit
    def _partial_fit(self, X, Y=None):
        """One pass over a chunk, continuing from the carried (or fitted) state."""
        target = X if Y is None else Y
        fitted_before = hasattr(self, "components_")
        if fitted_before and target.shape[1] != self.decoder_bias_.shape[0]:
            raise ValueError(
                f"y has {target.shape[1]} targets but {type(self).__name__} was fitted with "
                f"{self.decoder_bias_.shape[0]}; every chunk needs the same targets."
            )
        spec = self._training_spec(autoencoder=Y is None)
        if spec.per_level_k:
            raise ValueError(
                f"partial_fit needs an int k (got k={self.k!r}): the running threshold "
                "of streamed chunks is one value; use fit for a budget per level."
            )
        source = _rows.ArrayRows(X, Y, loss=self.loss)
        carried = getattr(self, "_partial_state", None)
        if carried is None and fitted_before:
            # after fit: continue from the fitted weights with a fresh optimiser
            carried = Carried(
                trainer={
                    "encoder_weight": self.encoder_weight_,
                    "encoder_bias": self.encoder_bias_,
                    "decoder_weight": self.components_,
                    "decoder_bias": self.decoder_bias_,
                    "input_bias": self.input_bias_,
                },
                scaling=_rows.Scaling(self.input_mean_, self.input_scale_,
                                      self.target_mean_, self.target_scale_),
                threshold=(float(self.threshold_), np.inf),
            )
        from . import _driver  # torch is needed for fitting only

        fitted = _driver.train(source, spec, random_state=self.random_state,
                               carried=carried, streaming=True)
        self._store(fitted, spec, source)
        return self

    def _store(self, fitted, spec, source):
        """The fitted attributes from the driver's result, and the latent
        frequencies on the rows of ``source`` (held-out rows included)."""
        parameters = fitted.parameters
        self.components_ = parameters["decoder_weight"]
        self.encoder_weight_ = parameters["encoder_weight"]
        self.encoder_bias_ = parameters["encoder_bias"]
        self.decoder_bias_ = parameters["decoder_bias"]
        self.input_bias_ = (
            parameters["decoder_bias"].copy() if spec.tied
            else parameters["input_bias"].astype(np.float32)
        )
        # a per-level k: one threshold per level, as an array
        self.threshold_ = (np.asarray(fitted.threshold, dtype=np.float64)
                           if spec.per_level_k else fitted.threshold)
        sizes, weights = fitted.levels
        self.level_sizes_ = np.asarray(sizes, dtype=np.int64)
        self.level_weights_ = np.asarray(weights, dtype=np.float64) / sum(weights)
        scaling = fitted.scaling
        self.input_mean_, self.input_scale_ = scaling.input_mean, scaling.input_scale
        self.target_mean_, self.target_scale_ = scaling.target_mean, scaling.target_scale
        self.n_iter_ = fitted.n_iter
        self.best_iter_ = fitted.best_iter
        self.n_steps_ = fitted.n_steps
        self.stop_reason_ = fitted.stop_reason
        self.history_ = fitted.history
        self.device_ = fitted.device
        if fitted.carried is None:
            # a fit starts over: nothing of an earlier partial_fit carries on
            self.__dict__.pop("_partial_state", None)
        else:
            self._partial_state = fitted.carried

        def latent_counts():
            counts = np.zeros(self.n_latents, dtype=np.int64)
            for block in source.inputs():
                codes = self._encode(block, sparse_output=True, dtype=np.float32)
                counts += np.bincount(codes.indices, minlength=self.n_latents)
            return counts

        if fitted.carried is None:
            # a fit keeps its completed epochs through an interrupt here
            from ._driver import finish_despite_interrupt

            counts, interrupted = finish_despite_interrupt(
                latent_counts, "counting how often each latent is active")
            if interrupted:
                self.stop_reason_ = "interrupted"
        else:  # a partial_fit pass is abandoned whole, as documented
            counts = latent_counts()
        self.latent_frequency_ = counts / max(source.n_rows, 1)
        self.dead_latents_ = np.flatnonzero(counts == 0)

    # --------------------------------------------------------------- coding
    @property
    def _n_features_out(self):
        return self.n_latents

    def _column_threshold(self, level):
        """The inference threshold: ``threshold_`` for an int ``k``; for a
        per-level ``k``, one per latent: with ``level`` None the lowest
        threshold of the levels that contain the latent (the union of the
        levels' selections), else the level's own over its latents and
        infinity beyond them."""
        if np.ndim(self.threshold_) == 0:
            return self.threshold_
        cuts = np.maximum(self.threshold_, 0.0)
        sizes = self.level_sizes_
        if level is not None:
            index = self._level_index(level)
            column = np.full(self.n_latents, np.inf)
            column[: sizes[index]] = cuts[index]
            return column
        # the levels are prefixes: latent j is in every level i with sizes[i] > j
        level_of_latent = np.searchsorted(sizes, np.arange(self.n_latents), side="right")
        lowest_from = np.minimum.accumulate(cuts[::-1])[::-1]
        return lowest_from[level_of_latent]

    def _encode(self, X, *, sparse_output, dtype, level=None):
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
            X, weight, offset, threshold=self._column_threshold(level), k=self.k,
            sparsity=self.sparsity, sparse_output=sparse_output, dtype=dtype, refit=refit,
            n_threads=getattr(self, "n_threads", None),
        )

    def _code_refit_mode(self):
        """``code_refit`` resolved: ``"auto"`` is ``"nnls"`` for the
        squared-error autoencoder trained without masking, where a refit is
        defined, else ``"none"`` (a masked model predicts each unit from the
        others; refitting its codes to the unit itself would undo that)."""
        if self.code_refit == "auto":
            refit = self._is_autoencoder and self.loss == "mse" and not self.mask_fraction
            return "nnls" if refit else "none"
        return self.code_refit

    def _validate_for_coding(self, X):
        check_is_fitted(self)
        if _rows.is_out_of_core(X):
            # read in chunks by the coder; never converted whole
            n_features = _rows.check_out_of_core(X)[1]
            if n_features != self.n_features_in_:
                raise ValueError(
                    f"X has {n_features} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
            return _rows.CheckedRows(X)
        check_2d_not_empty(X)
        return validate_data(
            self, X, reset=False, dtype=[np.float64, np.float32], order="C"
        )

    @_with_thread_limit
    def transform(self, X, level=None):
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
        level : int, default=None
            Index into ``level_sizes_``: the codes that level's
            reconstruction uses, zero beyond its latents
            ``[0, level_sizes_[level])``; with a per-level ``k``, the
            level's own selection (its own threshold), so
            ``inverse_transform(transform(X, level=i), level=i)`` is
            ``reconstruct(X, level=i)``. None: every latent (with a
            per-level ``k``, the union of the levels' selections).

        Returns
        -------
        codes : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_latents)
            Non-negative activations, in the dtype of ``X`` (float32 or
            float64); CSR when ``sparse_output=True``.
        """
        X = self._validate_for_coding(X)
        if level is None:
            return self._encode(X, sparse_output=self.sparse_output, dtype=X.dtype)
        index = self._level_index(level)
        if np.ndim(self.threshold_) > 0:
            # the level's own threshold over its latents, infinite beyond
            return self._encode(X, sparse_output=self.sparse_output, dtype=X.dtype,
                                level=index)
        codes = self._encode(X, sparse_output=self.sparse_output, dtype=X.dtype)
        size = int(self.level_sizes_[index])
        if sp.issparse(codes):
            codes.data[codes.indices >= size] = 0
            codes.eliminate_zeros()
        else:
            codes[:, size:] = 0
        return codes

    def _level_index(self, level):
        if level is None:
            return len(self.level_sizes_) - 1
        n_levels = len(self.level_sizes_)
        if (not isinstance(level, Integral) or isinstance(level, (bool, np.bool_))
                or not -n_levels <= level < n_levels):
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
    def _score_out_of_core(self, X, Y, sample_weight=None):
        """Explained variance of ``Y`` (``X`` for the autoencoder) by chunks of ``X``."""
        return _rows.explained_variance_out_of_core(
            self, X, Y, chunk_rows=self._out_of_core_chunk_rows, sample_weight=sample_weight)

    def _reconstruct(self, X, level):
        return self._reconstruct_validated(self._validate_for_coding(X), level)

    @_with_thread_limit
    def _reconstruct_validated(self, X, level):
        """The reconstruction of an ``X`` that ``_validate_for_coding`` returned
        (validated once: a second validation of the array would warn that the
        DataFrame's feature names are gone)."""
        per_level = np.ndim(self.threshold_) > 0
        if per_level and level is None:
            level = -1  # the full model decodes its last level's own selection
        codes = self._encode(X, sparse_output=True, dtype=np.float32,
                             level=level if per_level else None)
        return self._decode(codes, level)

    def __setstate__(self, state):
        # models pickled before ``n_threads`` existed load with the default
        state.setdefault("n_threads", None)
        # and models pickled before masked-unit training were trained without it
        state.setdefault("mask_fraction", 0.0)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = False
        return tags


def explained_variance(Y, Y_pred, sample_weight=None):
    """Explained variance pooled over all entries: the models' ``score``.

    ``1 - sum((Y - Y_pred)^2) / sum((Y - mean(Y))^2)``, with column means,
    so each column weighs by its variance (``r2_score(Y, Y_pred,
    multioutput="variance_weighted")``). Use it to compare any model's
    reconstruction (PCA, NMF, ...) with the Matryoshka models' ``score``.

    Parameters
    ----------
    Y : array-like of shape (n_samples, n_outputs)
        The data.
    Y_pred : array-like of shape (n_samples, n_outputs)
        Its reconstruction or prediction.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights: each row's squared errors and squared
        deviations from the weighted column means count ``sample_weight``
        times (``r2_score(..., sample_weight=sample_weight,
        multioutput="variance_weighted")``; integer weights equal repeating
        rows). None: every row once.

    Returns
    -------
    score : float
        1.0 when both are equal; 0.0 for constant data not reconstructed exactly.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.models import explained_variance
    >>> Y = np.array([[0.0, 1.0], [2.0, 3.0]])
    >>> explained_variance(Y, Y)
    1.0
    >>> explained_variance(Y, np.ones_like(Y) * Y.mean(axis=0))
    0.0
    """
    Y = np.asarray(Y, dtype=np.float64)
    if sample_weight is None:
        total = np.square(Y - Y.mean(axis=0)).sum()
        residual = np.square(Y - Y_pred).sum()
    else:
        weights = check_sample_weight(sample_weight, Y)
        mean = weights @ Y / weights.sum()
        total = weights @ np.square(Y - mean).sum(axis=1)
        residual = weights @ np.square(Y - Y_pred).sum(axis=1)
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return float(1.0 - residual / total)


def check_sample_weight(sample_weight, X):
    """``sample_weight`` of ``score`` as float64 of one per row of ``X``: finite,
    non-negative, not all zero (a ValueError otherwise)."""
    weights = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                   ensure_non_negative=True)
    if not weights.sum() > 0:
        raise ValueError("sample_weight sums to zero; expected at least one positive weight.")
    return weights


def check_target_shape(shape, n_rows, n_targets, estimator_name):
    """A transcoder's ``y`` of ``shape``: one or two dimensions, one row per
    row of ``X`` and, unless ``n_targets`` is None (at fit time), the
    targets of ``fit`` (a 1-D ``y`` is one target); a ValueError otherwise."""
    if len(shape) not in (1, 2):
        raise ValueError(
            f"y has shape {tuple(shape)}; expected (n_samples, n_targets) or "
            "(n_samples,)."
        )
    if shape[0] != n_rows:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"X has {n_rows} rows but y has {shape[0]}."
        )
    got = shape[1] if len(shape) == 2 else 1
    if n_targets is not None and got != n_targets:
        raise ValueError(
            f"y has {got} target(s) but {estimator_name} was fitted with "
            f"{n_targets}; expected y of shape ({n_rows}, {n_targets})"
            + (f" or ({n_rows},)." if n_targets == 1 else ".")
        )


__all__ = [
    "_BaseMatryoshka", "_fit_context", "with_callbacks", "explained_variance",
    "check_sample_weight", "check_target_shape",
    "limit_threads", "_with_thread_limit", "check_2d_not_empty", "_unchanged_on_failure",
]
