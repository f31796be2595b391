"""NumPy-only encoding and decoding of a fitted Matryoshka coder.

Nothing here imports torch: a fitted model transforms and reconstructs in a
process without it. Rows are processed in chunks, so memory stays bounded
whatever the number of rows, and the codes can be returned as a
``scipy.sparse`` CSR matrix.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ._losses import link_numpy

# Rows per chunk: the pre-activation block (chunk x n_latents float32) stays
# near cache size for typical dictionaries, and two chunks are in flight.
CODING_CHUNK_ROWS = 512
# Relative ridge of the refit's Gram systems (rank-deficient when a row has
# more active latents than there are units).
_RIDGE = 1e-6

def fold_encoder(encoder_weight, encoder_bias, input_bias, input_mean, input_scale):
    """Fold input scaling and centring into one affine map ``x W + c``.

    ``((x - mean) / scale - b_pre) W + b`` equals ``x (W / scale) + c`` with
    ``c = b - (mean / scale + b_pre) W``.
    """
    weight = encoder_weight.astype(np.float64) / input_scale[:, None]
    offset = encoder_bias - (input_mean / input_scale + input_bias) @ encoder_weight
    return np.ascontiguousarray(weight, dtype=np.float32), offset.astype(np.float32)


class NonNegativeRefit:
    """Refit the codes of a chosen support by non-negative least squares.

    The encoder picks which latents are active; their values are then
    replaced by ``argmin_{z >= 0} ||t - z D_S||^2`` where ``t`` is the scaled,
    bias-removed input and ``D_S`` the active decoder rows, solved exactly
    per row by an active-set method warm-started from the encoder's values
    (compiled kernels in ``_coding_kernels``). Valid for the squared-error
    autoencoder, whose decoder is linear.
    """

    def __init__(self, decoder_weight, decoder_bias, input_mean, input_scale):
        # float32 products (the decoder and its Gram matrix stay in cache),
        # float64 solves of the small systems
        decoder = np.asarray(decoder_weight, dtype=np.float64)
        self.decoder = np.ascontiguousarray(decoder, dtype=np.float32)
        self.gram = np.ascontiguousarray(decoder @ decoder.T, dtype=np.float32)
        self.target_offset = np.ascontiguousarray(
            input_mean / input_scale + decoder_bias, dtype=np.float64
        )
        self.inverse_scale = np.ascontiguousarray(1.0 / np.asarray(input_scale, dtype=np.float64))

    def code(self, block, pre, encoder):
        """CSR parts ``(counts, latents, values)`` of one chunk's codes.

        ``pre`` are the chunk's pre-activations without the offset;
        ``encoder`` the ``_ChunkEncoder`` whose selection is refitted.
        """
        from ._coding_kernels import refit_entries

        counts, latents, values = encoder.select(pre)
        return refit_entries(
            block, counts, latents, values, self.decoder, self.gram, self.inverse_scale,
            self.target_offset, _RIDGE,
        )


class NonNegativePursuit(NonNegativeRefit):
    """Greedy non-negative pursuit among the encoder's strongest candidates.

    For each row, the ``candidate_factor * k`` largest positive
    pre-activations are the candidates. Then, ``k`` times: the candidate
    most correlated with the current residual joins the support (if that
    correlation is positive) and the whole support is refitted by
    non-negative least squares. A row ends with at most ``k`` active
    latents, chosen with explaining-away as in orthogonal matching pursuit,
    but searched among a few encoder candidates only. Works in the Gram
    space of the candidates; no step depends on the other rows.
    """

    def __init__(self, decoder_weight, decoder_bias, input_mean, input_scale, k,
                 candidate_factor=4):
        super().__init__(decoder_weight, decoder_bias, input_mean, input_scale)
        self.k = k
        self.candidate_factor = candidate_factor

    def code(self, block, pre, encoder):
        """CSR parts ``(counts, latents, values)`` of one chunk's codes.

        The encoder's own selection rule is not used: the candidates come
        from the pre-activations ``pre + offset`` directly.
        """
        from ._coding_kernels import pursuit_chunk

        return pursuit_chunk(
            block, pre, encoder.offset, self.k, self.candidate_factor * self.k,
            self.decoder, self.gram, self.inverse_scale, self.target_offset, _RIDGE,
        )


class _ChunkEncoder:
    """Encodes one chunk of rows; one instance is shared by the worker threads."""

    def __init__(self, X, weight, offset, threshold, k, sparsity, sparse_output, out,
                 refit=None, chunk_rows=CODING_CHUNK_ROWS):
        self.X = X
        self.chunk_rows = chunk_rows
        self.weight = weight
        self.offset = offset
        # "pre + offset > threshold" tested as "pre > threshold - offset",
        # so the offset is only added to the kept entries.
        self.column_threshold = (np.float32(threshold) - offset).astype(np.float32)
        self.k = k
        self.sparsity = sparsity
        self.sparse_output = sparse_output
        self.out = out
        self.refit = refit

    def select(self, pre):
        """CSR parts ``(counts, latents, values)`` of the encoder's own codes.

        ``pre`` (without the offset) may be modified in place.
        """
        if self.sparsity == "topk":
            from ._coding_kernels import select_topk_chunk

            return select_topk_chunk(pre, self.offset, self.k)
        # vectorised: one comparison pass, then only the selected entries
        flat = np.flatnonzero(np.greater(pre, self.column_threshold))
        rows, latents = np.divmod(flat, pre.shape[1])
        values = pre.ravel()[flat] + self.offset[latents]
        return np.bincount(rows, minlength=pre.shape[0]), latents.astype(np.int32), values

    def __call__(self, bounds):
        start, stop = bounds
        block = np.asarray(self.X[start:stop], dtype=np.float32)
        if stop - start < self.chunk_rows:
            # Same product shape for every chunk: BLAS picks its kernel from
            # the shape, so a short chunk (or a single row) would otherwise go
            # through another kernel than the same rows inside a full chunk
            # (the position inside the chunk can still change the last bit).
            padded = np.zeros((self.chunk_rows, block.shape[1]), dtype=np.float32)
            padded[: stop - start] = block
            pre = (padded @ self.weight)[: stop - start]
        else:
            pre = block @ self.weight
        if self.refit is None and not self.sparse_output and self.sparsity == "batchtopk":
            # dense fast path: no index arrays at all
            target = self.out[start:stop]
            mask = np.greater(pre, self.column_threshold)
            pre += self.offset
            target[...] = 0.0
            np.copyto(target, pre, casting="unsafe", where=mask)
            return None
        if self.refit is None:
            # one top-k selection rule (select) for dense and sparse output
            counts, cols, values = self.select(pre)
        else:
            counts, cols, values = self.refit.code(block, pre, self)
        values = values.astype(np.float32)
        if not self.sparse_output:
            target = self.out[start:stop]
            target[...] = 0.0
            target[np.repeat(np.arange(stop - start), counts), cols] = values
            return None
        return values, cols, counts


def encode(X, weight, offset, *, threshold, k, sparsity, sparse_output=False,
           dtype=np.float64, chunk_rows=CODING_CHUNK_ROWS, n_threads=None, refit=None):
    """Codes of ``X`` (n_rows, n_inputs) under a fitted, folded encoder.

    Returns a dense ndarray of ``dtype`` or, with ``sparse_output``, a CSR
    matrix of ``dtype``. Each row's code depends on that row only, up to
    the float32 rounding of the product: some BLAS kernels round a row by
    its position in their tile, so the same row at another position (in
    another chunk, order or subset) may differ in the last bit. ``refit``
    (a ``NonNegativeRefit`` or ``NonNegativePursuit``) replaces the
    encoder's values, or its selection too, by a non-negative
    least-squares fit. Chunks are
    spread over ``n_threads`` threads (default: the number of cores, at most
    4) with single-threaded BLAS inside each, so the selection work of one
    chunk overlaps the matrix product of the next.
    """
    n_rows = X.shape[0]
    n_latents = weight.shape[1]
    out = None if sparse_output else np.empty((n_rows, n_latents), dtype=dtype)
    worker = _ChunkEncoder(
        X, weight, offset, threshold, k, sparsity, sparse_output, out, refit, chunk_rows
    )
    bounds = [(start, min(start + chunk_rows, n_rows)) for start in range(0, n_rows, chunk_rows)]
    if n_threads is None:
        n_threads = min(os.cpu_count() or 1, 4)
    if n_threads > 1 and len(bounds) > 1:
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_threads) as pool:
            parts = list(pool.map(worker, bounds))
    else:
        parts = [worker(b) for b in bounds]
    if not sparse_output:
        return out
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    if parts:
        np.cumsum(np.concatenate([p[2] for p in parts]), out=indptr[1:])
    data = np.concatenate([p[0] for p in parts]).astype(dtype, copy=False) if parts else np.empty(0, dtype)
    indices = np.concatenate([p[1] for p in parts]).astype(np.int32) if parts else np.empty(0, np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_latents))


def decode(codes, decoder_weight, decoder_bias, *, n_used, loss, target_mean,
           target_scale, chunk_rows=8192):
    """Reconstruction (original units) from the first ``n_used`` latents."""
    weight = decoder_weight[:n_used]
    n_rows = codes.shape[0]
    out = np.empty((n_rows, weight.shape[1]), dtype=np.float64)
    for start in range(0, n_rows, chunk_rows):
        block = codes[start : start + chunk_rows, :n_used]
        linear = np.asarray(block @ weight, dtype=np.float64)
        linear += decoder_bias
        link_numpy(linear, loss)
        out[start : start + chunk_rows] = linear * target_scale + target_mean
    return out
