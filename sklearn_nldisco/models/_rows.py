"""Row sources: where training rows come from, in memory or in chunks.

A row source hands the training driver the rows of ``X`` (and of the target
``Y``) a chunk at a time, with the exact scaling statistics of all its rows.
An in-memory array is one chunk (``ArrayRows``); a NumPy memmap or an HDF5
dataset is many (``ChunkedRows``), read and checked for NaN, infinity and
(for counts losses) negative values as they are read, with a memmap's pages
released once copied, so the resident memory does not grow with the file.
``Scaling`` and ``scale_rows`` are the one definition of what the trainer
sees: scaled float32 inputs and targets. ``explained_variance_out_of_core``
scores a fitted model chunk by chunk. See "Out-of-core input" in
``docs/scaling.md``.
"""

from dataclasses import dataclass

import numpy as np

from ._initialisation import scaling_statistics
from ._losses import check_nonnegative

#: rows read at a time from a memmap or HDF5 dataset by ``fit``, ``transform``
#: and ``score`` (the coder then works through them in smaller blocks)
READ_CHUNK_ROWS = 65_536


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
        step = READ_CHUNK_ROWS
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

    def update(self, block, weights=None):
        """Add the rows of ``block``; a float64 ``block`` that owns its
        memory is overwritten (the deviations are computed in place).

        ``weights`` (one per row, non-negative): weighted moments, ``count``
        then the sum of the weights.
        """
        n_block = block.shape[0] if weights is None else float(np.sum(weights))
        if n_block == 0:
            return
        block = block.astype(np.float64, copy=False)
        if weights is None:
            block_mean = block.mean(axis=0)
        else:
            block_mean = weights @ block / n_block
        if block.base is not None:
            block = block.copy()  # a view of the caller's rows: never written
        block -= block_mean
        np.square(block, out=block)
        block_m2 = block.sum(axis=0) if weights is None else weights @ block
        del block
        delta = block_mean - self.mean
        total = self.count + n_block
        self.mean = self.mean + delta * (n_block / total)
        self.m2 = self.m2 + block_m2 + np.square(delta) * (self.count * n_block / total)
        self.count = total

    def scaling(self, scaling):
        """``(mean, scale)`` as ``scaling_statistics`` gives them."""
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


def explained_variance_out_of_core(model, X, Y, chunk_rows=READ_CHUNK_ROWS,
                                   sample_weight=None):
    """``explained_variance(Y, model's reconstruction from X)`` by chunks.

    ``Y is X`` for the autoencoder. Only one chunk of ``X``, ``Y`` and the
    reconstruction is in memory at a time. ``sample_weight`` (in memory,
    one per row, checked): each row's squared errors and deviations weigh
    by it.
    """
    n_rows = X.shape[0]
    moments = None
    residual = 0.0
    for start, stop in chunk_bounds(n_rows, chunk_rows):
        block = read_rows(X, start, stop, "X")
        target = block if Y is X else read_rows(Y, start, stop, "y")
        weights = None if sample_weight is None else sample_weight[start:stop]
        codes = model._encode(block, sparse_output=True, dtype=np.float32)
        prediction = model._decode(codes, None)
        prediction -= target
        if weights is None:
            residual += float(np.einsum("ij,ij->", prediction, prediction))
        else:
            residual += float(weights @ np.einsum("ij,ij->i", prediction, prediction))
        del prediction
        if moments is None:
            moments = RunningMoments(target.shape[1])
        moments.update(target, weights)
    total = float(moments.m2.sum())
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return float(1.0 - residual / total)


@dataclass(frozen=True)
class Scaling:
    """Per-column ``(mean, scale)`` of the input and of the target."""

    input_mean: np.ndarray
    input_scale: np.ndarray
    target_mean: np.ndarray
    target_scale: np.ndarray


def resolve_scaling(spec, input_statistics, target_statistics, n_outputs):
    """The ``Scaling`` of a fit: counts losses leave the target unscaled, the
    mse autoencoder's target is its scaled input, the transcoder's target is
    scaled by ``target_statistics()`` (a callable, so that only this case
    computes them). ``n_outputs``: the number of target columns."""
    input_mean, input_scale = input_statistics
    if spec.counts_loss:
        target_mean, target_scale = np.zeros(n_outputs), np.ones(n_outputs)
    elif spec.autoencoder:
        target_mean, target_scale = input_mean, input_scale
    else:
        target_mean, target_scale = target_statistics()
    return Scaling(input_mean, input_scale, target_mean, target_scale)


def scale_rows(spec, scaling, X, Y=None):
    """Input and target of some rows as the trainer sees them (float32).

    ``Y`` is None for the autoencoder; its mse target is then the scaled
    input itself (the same array).
    """
    X_in = scaled_float32(X, scaling.input_mean, scaling.input_scale)
    if spec.counts_loss:
        return X_in, (X if Y is None else Y).astype(np.float32, copy=False)
    if Y is None:
        return X_in, X_in
    return X_in, scaled_float32(Y, scaling.target_mean, scaling.target_scale)


class ArrayRows:
    """An in-memory ``X`` (and target ``Y``; None: the autoencoder), one chunk.

    The arrays were validated by the estimator; counts losses check ``Y``
    (or ``X``) for negative values here, once.
    """

    def __init__(self, X, Y=None, *, loss=None):
        check_nonnegative(X if Y is None else Y, "X" if Y is None else "y", loss)
        self.X, self.Y = X, Y
        self.n_rows = X.shape[0]
        self.bounds = [(0, self.n_rows)]

    def statistics(self, spec):
        return resolve_scaling(
            spec, scaling_statistics(self.X, spec.scaling),
            lambda: scaling_statistics(self.Y, spec.scaling),
            (self.X if self.Y is None else self.Y).shape[1],
        )

    def rows(self, index, keep=None):
        """``(X, Y)`` of chunk ``index`` (the only one), the ``keep`` rows."""
        if keep is None:
            return self.X, self.Y
        return self.X[keep], None if self.Y is None else self.Y[keep]

    def inputs(self):
        """The raw input, chunk by chunk (for the latent frequencies)."""
        yield self.X


class ChunkedRows:
    """A memmap or HDF5 ``X`` (and ``Y``; None: the autoencoder) in chunks.

    ``Y`` may be an ordinary array and may be 1-D (one target). Chunks of
    ``chunk_rows`` rows, rounded down to a multiple of ``batch_size`` so that
    every optimiser step but the last of a chunk is a full batch.
    """

    def __init__(self, X, Y=None, *, chunk_rows, batch_size, loss=None):
        self.X, self.Y, self.loss = X, Y, loss
        self.n_rows = X.shape[0]
        chunk_rows = max(1, chunk_rows // batch_size) * batch_size
        self.bounds = chunk_bounds(self.n_rows, chunk_rows)

    def statistics(self, spec):
        """Exact statistics from one streaming pass that checks every chunk."""
        autoencoder = self.Y is None
        input_moments = RunningMoments(self.X.shape[1])
        target_moments = None
        for start, stop in self.bounds:
            block = read_rows(self.X, start, stop, "X", loss=self.loss if autoencoder else None)
            input_moments.update(block)
            if not autoencoder:
                target = read_rows(self.Y, start, stop, "y", loss=self.loss)
                if target_moments is None:
                    target_moments = RunningMoments(target.shape[1])
                target_moments.update(target)
                del target
            del block
        moments = input_moments if autoencoder else target_moments
        return resolve_scaling(
            spec, input_moments.scaling(spec.scaling),
            lambda: target_moments.scaling(spec.scaling), moments.mean.shape[0],
        )

    def rows(self, index, keep=None):
        """``(X, Y)`` of chunk ``index``, the ``keep`` rows (a mask of all rows)."""
        start, stop = self.bounds[index]
        X = read_rows(self.X, start, stop, "X")
        Y = None if self.Y is None else read_rows(self.Y, start, stop, "y")
        if keep is not None:
            X = X[keep[start:stop]]
            Y = None if Y is None else Y[keep[start:stop]]
        return X, Y

    def inputs(self):
        for start, stop in self.bounds:
            yield read_rows(self.X, start, stop)
