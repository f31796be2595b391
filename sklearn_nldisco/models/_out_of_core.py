"""Inputs read in chunks: a NumPy memmap or an HDF5 dataset, never loaded whole.

``fit_out_of_core`` fits the autoencoder (``Y is None``) or the transcoder
chunk by chunk: exact scaling statistics from one streaming pass, then
``max_iter`` passes that visit the chunks in a shuffled order (rows shuffled
inside each chunk), the exact BatchTopK threshold from one more pass, and
the latent frequencies from a last one. ``explained_variance_out_of_core``
scores a fitted model the same way. The row readers check every chunk for
NaN, infinity and (for counts losses) negative values as it is read, and
release a memmap's pages once they are copied, so the resident memory does
not grow with the file. See "Out-of-core input" in ``docs/scaling.md``.
"""

import time

import numpy as np
from sklearn.utils import check_random_state

from ._init import validation_rows
from ._losses import NONNEGATIVE_LOSSES, check_nonnegative

#: rows read at a time by ``fit``, ``transform`` and ``score``
DEFAULT_CHUNK_ROWS = 65_536


def is_out_of_core(X):
    """Whether ``X`` is read in chunks: a NumPy memmap or an HDF5 dataset."""
    return isinstance(X, np.memmap) or type(X).__module__.startswith("h5py")


def check_out_of_core(X, name="X", ndim=(2,)):
    """Shape checks of an out-of-core input, without reading it."""
    shape = tuple(getattr(X, "shape", ()))
    if len(shape) not in ndim:
        expected = " or ".join(f"{n}D" for n in ndim)
        raise ValueError(f"Expected a {expected} {name}, got an input of shape {shape}.")
    if shape[0] < 1 or (len(shape) == 2 and shape[1] < 1):
        raise ValueError(
            f"Found array with {shape[0]} sample(s) and "
            f"{shape[1] if len(shape) == 2 else 1} feature(s) "
            f"(shape={shape}) while a minimum of 1 is required."
        )
    dtype = np.dtype(getattr(X, "dtype", np.float64))
    if dtype.kind not in "fiu":
        raise ValueError(f"{name} has dtype {dtype}; expected a numeric dtype.")
    return shape


def release_pages(X):
    """Drop the resident pages of a memmap (they are re-read from disk on demand)."""
    mapping = getattr(X, "_mmap", None)
    if getattr(X, "mode", "c") in ("c", "copyonwrite"):
        return  # private pages may hold changes that exist nowhere else
    if mapping is None or not hasattr(mapping, "madvise"):
        return
    import mmap

    try:
        mapping.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - platform
        pass


def read_rows(X, start, stop, name="X", loss=None):
    """Rows ``[start, stop)`` of ``X`` as a 2-D float ndarray, checked finite.

    ``X`` is a memmap, an HDF5 dataset or an ndarray; a 1-D input gives one
    column. With a counts ``loss``, negative values are an error too.
    """
    block = np.asarray(X[start:stop])
    if isinstance(X, np.memmap):
        block = np.array(block)  # a private copy, so the mapped pages can go
        release_pages(X)
    if block.ndim == 1:
        block = block[:, None]
    if block.dtype.kind != "f":
        block = block.astype(np.float64)
    if not np.isfinite(block).all():
        raise ValueError(
            f"{name} contains NaN or infinity in rows {start} to {stop - 1} "
            f"(the chunk read from rows [{start}, {stop})); expected finite values."
        )
    check_nonnegative(block, f"{name} (rows {start} to {stop - 1})", loss)
    return block


class CheckedRows:
    """Row slices of an out-of-core input, each checked when it is read."""

    def __init__(self, X, name="X"):
        self.X = X
        self.name = name
        self.shape = tuple(X.shape)
        self.dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, dtype=dtype or self.dtype)
        step = DEFAULT_CHUNK_ROWS
        for start in range(0, self.shape[0], step):
            out[start : start + step] = self[start : start + step]
        return out

    def __getitem__(self, key):
        start, stop, _ = key.indices(self.shape[0])
        return read_rows(self.X, start, stop, self.name)


class RunningMoments:
    """Exact per-column mean and sum of squared deviations, chunk by chunk.

    float64, merged with the pairwise update of Chan et al., so the result
    matches the statistics of the whole array up to rounding.
    """

    def __init__(self, n_columns):
        self.count = 0
        self.mean = np.zeros(n_columns)
        self.m2 = np.zeros(n_columns)

    def update(self, block):
        """Add the rows of ``block``; a float64 ``block`` that owns its
        memory is overwritten (the deviations are computed in place)."""
        n_block = block.shape[0]
        if n_block == 0:
            return
        block = block.astype(np.float64, copy=False)
        block_mean = block.mean(axis=0)
        if block.base is not None:
            block = block.copy()  # a view of the caller's rows: never written
        block -= block_mean
        np.square(block, out=block)
        block_m2 = block.sum(axis=0)
        del block
        delta = block_mean - self.mean
        total = self.count + n_block
        self.mean = self.mean + delta * (n_block / total)
        self.m2 = self.m2 + block_m2 + np.square(delta) * (self.count * n_block / total)
        self.count = total

    def scaling(self, scaling):
        """``(mean, scale)`` as ``_init.scaling_statistics`` gives them."""
        n_columns = self.mean.shape[0]
        mean, scale = np.zeros(n_columns), np.ones(n_columns)
        if scaling in ("standard", "center"):
            mean = self.mean
        if scaling in ("standard", "scale"):
            std = np.sqrt(self.m2 / max(self.count, 1))
            scale = np.where(std > np.finfo(np.float32).eps, std, 1.0)
        return mean, scale


def chunk_bounds(n_rows, chunk_rows):
    return [(start, min(start + chunk_rows, n_rows)) for start in range(0, n_rows, chunk_rows)]


def _scaled(block, mean, scale):
    # ``((block - mean) / scale)`` in float64, rounded to float32; in place
    # on one float64 copy of the block
    scaled = block.astype(np.float64)
    scaled -= mean
    scaled /= scale
    return scaled.astype(np.float32)


def scaled_float32(X, mean, scale, chunk_rows=1024):
    """``((X - mean) / scale).astype(np.float32)`` a block of rows at a time.

    The same float64 arithmetic, element for element, in one reused float64
    buffer of ``chunk_rows`` rows instead of two float64 temporaries of the
    whole array (4 and 8 times the memory of a float32 input, and the time
    to fault their pages in).
    """
    out = np.empty(X.shape, dtype=np.float32)
    buffer = np.empty((min(chunk_rows, X.shape[0]), X.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], chunk_rows):
        block = X[start : start + chunk_rows]
        work = buffer[: block.shape[0]]
        np.subtract(block, mean, out=work)
        work /= scale
        out[start : start + block.shape[0]] = work
    return out


def explained_variance_out_of_core(model, X, Y, chunk_rows=DEFAULT_CHUNK_ROWS):
    """``explained_variance(Y, model's reconstruction from X)`` by chunks.

    ``Y is X`` for the autoencoder. Only one chunk of ``X``, ``Y`` and the
    reconstruction is in memory at a time.
    """
    n_rows = X.shape[0]
    moments = None
    residual = 0.0
    for start, stop in chunk_bounds(n_rows, chunk_rows):
        block = read_rows(X, start, stop, "X")
        target = block if Y is X else read_rows(Y, start, stop, "y")
        codes = model._encode(block, sparse_output=True, dtype=np.float32)
        prediction = model._decode(codes, None)
        prediction -= target
        residual += float(np.einsum("ij,ij->", prediction, prediction))
        del prediction
        if moments is None:
            moments = RunningMoments(target.shape[1])
        moments.update(target)
    total = float(moments.m2.sum())
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return float(1.0 - residual / total)


def fit_out_of_core(model, X, Y, sizes, weights):
    """Fit ``model`` on chunks of ``X`` (and of the target ``Y``; None: ``X``).

    ``X`` and ``Y`` are memmaps, HDF5 datasets or arrays with the same
    number of rows (``Y`` may be 1-D). Sets the fitted attributes of
    ``model`` as its in-memory fit does.
    """
    from . import _training  # torch is needed for fitting only

    autoencoder = Y is None
    counts_loss = model.loss in NONNEGATIVE_LOSSES
    n_rows, n_features = X.shape[0], X.shape[1]
    rng = check_random_state(model.random_state)
    batch_size = model.batch_size
    chunk_rows = max(1, model._out_of_core_chunk_rows // batch_size) * batch_size
    bounds = chunk_bounds(n_rows, chunk_rows)

    # one streaming pass: exact statistics, every chunk checked
    input_moments = RunningMoments(n_features)
    target_moments = None
    for start, stop in bounds:
        block = read_rows(X, start, stop, "X", loss=model.loss if autoencoder else None)
        input_moments.update(block)
        if not autoencoder:
            target = read_rows(Y, start, stop, "y", loss=model.loss)
            if target_moments is None:
                target_moments = RunningMoments(target.shape[1])
            target_moments.update(target)
            del target
        del block
    input_mean, input_scale = input_moments.scaling(model.scaling)
    n_outputs = n_features if autoencoder else target_moments.mean.shape[0]
    if counts_loss:
        target_mean, target_scale = np.zeros(n_outputs), np.ones(n_outputs)
    elif autoencoder:
        target_mean, target_scale = input_mean, input_scale
    else:
        target_mean, target_scale = target_moments.scaling(model.scaling)
    tied = autoencoder and not counts_loss

    def scaled_chunk(start, stop, keep=None):
        block = read_rows(X, start, stop, "X")
        target = None if autoencoder else read_rows(Y, start, stop, "y")
        if keep is not None:
            block = block[keep[start:stop]]
            target = None if target is None else target[keep[start:stop]]
        X_in = _scaled(block, input_mean, input_scale)
        if counts_loss:
            source = block if autoencoder else target
            return X_in, source.astype(np.float32, copy=False)
        if autoencoder:
            return X_in, X_in
        return X_in, _scaled(target, target_mean, target_scale)

    held_out = None
    if model.early_stopping:
        held_out = validation_rows(n_rows, model.validation_fraction, rng)
    keep = None if held_out is None else ~held_out
    X_val = Y_val = None
    if held_out is not None:
        parts = [
            scaled_chunk(start, stop, held_out)
            for start, stop in bounds
            if held_out[start:stop].any()
        ]
        X_val = np.concatenate([p[0] for p in parts])
        Y_val = X_val if parts[0][1] is parts[0][0] else np.concatenate(
            [p[1] for p in parts]
        )
        del parts
    train_counts = [
        stop - start if keep is None else int(keep[start:stop].sum())
        for start, stop in bounds
    ]
    n_train = int(sum(train_counts))

    # initial parameters from the first chunk's training rows
    first = int(np.flatnonzero(np.asarray(train_counts) > 0)[0])
    X_first, Y_first = scaled_chunk(*bounds[first], keep)
    init = model._initial_parameters(X_first, Y_first, autoencoder, tied, rng)
    del X_first, Y_first
    input_bias = init["input_bias"]
    config = model._training_config(
        sizes, weights, tied, n_train, has_validation=X_val is not None
    )
    steps_per_epoch = sum(
        max(1, n // min(batch_size, n)) for n in train_counts if n > 0
    )
    total_steps = steps_per_epoch * model.max_iter

    def schedule(config, step):
        return _training._learning_rate(config, step, total_steps)

    device = _training.resolve_device(model.device)
    trainer = _training.MatryoshkaTrainer(init, config, device)
    callback_ctx = model._init_callback_context(max_subtasks=model.max_iter)
    callback_ctx.call_on_fit_task_begin(estimator=model, X=X, y=Y)
    validation = None
    if X_val is not None:
        torch = _training.torch
        x_val = torch.as_tensor(X_val).to(device)
        y_val = x_val if Y_val is X_val else torch.as_tensor(Y_val).to(device)
        scale_t = torch.as_tensor(target_scale, dtype=torch.float32).to(device)
        validation = (x_val, y_val, scale_t)
        del X_val, Y_val

    log = _training.EpochLog(trainer, config, model.verbose)
    stop_reason = "max_iter"
    for _ in range(model.max_iter):
        epoch_start = time.perf_counter()
        level_sum, aux_sum, l0_sum, n_steps = 0.0, 0.0, 0.0, 0
        entry = None
        for index in rng.permutation(len(bounds)):
            if train_counts[index] == 0:
                continue
            X_in, Y_target = scaled_chunk(*bounds[index], keep)
            entry = _training.with_quiet_sparse_warnings(
                _training.train_pass, trainer, X_in, Y_target, config, rng,
                learning_rate=schedule,
            )
            del X_in, Y_target
            steps = max(1, train_counts[index] // min(batch_size, train_counts[index]))
            level_sum = level_sum + entry["train_loss"] * steps
            aux_sum += entry["aux_loss"] * steps
            l0_sum += entry["l0"] * steps
            n_steps += steps
        log.end_epoch(
            {
                "train_loss": level_sum / n_steps,
                "aux_loss": aux_sum / n_steps,
                "l0": l0_sum / n_steps,
                "dead_fraction": entry["dead_fraction"],
                "learning_rate": entry["learning_rate"],
            },
            validation, epoch_start,
        )
        epoch_ctx = callback_ctx.subcontext(task_name="epoch")
        epoch_ctx.call_on_fit_task_begin(estimator=model)
        if epoch_ctx.call_on_fit_task_end(estimator=model):
            stop_reason = "callback"
            break
        if log.stops_early():
            stop_reason = "early_stopping"
            break
    history = log.finish()
    del validation

    if model.sparsity == "batchtopk":
        threshold = _training.calibrate_threshold_streaming(
            trainer,
            (scaled_chunk(start, stop, keep)[0] for start, stop in bounds),
            model.k, n_train,
        )
    else:
        threshold = 0.0
    result = {"n_iter": log.epochs_done, "best_epoch": log.best_epoch,
              "n_steps": trainer.step_count, "stop_reason": stop_reason, "history": history}
    model._store_fit(
        trainer.state(), result, device,
        parameters=(input_bias, tied, threshold, sizes, weights),
        scaling=(input_mean, input_scale, target_mean, target_scale),
    )
    counts = np.zeros(model.n_latents, dtype=np.int64)
    for start, stop in bounds:
        codes = model._encode(read_rows(X, start, stop), sparse_output=True, dtype=np.float32)
        counts += np.bincount(codes.indices, minlength=model.n_latents)
    model._store_latent_counts(counts, n_rows)
    callback_ctx.call_on_fit_task_end(estimator=model, X=X)
    return model
