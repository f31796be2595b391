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
DEFAULT_CHUNK_ROWS = 512
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


def _topk_inplace(pre, k):
    """Keep the k largest positive entries of each row of ``pre``, zero the rest."""
    k = min(k, pre.shape[1])
    if k < pre.shape[1]:
        cut = pre.shape[1] - k
        order = np.argpartition(pre, cut, axis=1)
        np.put_along_axis(pre, order[:, :cut], 0.0, axis=1)
    np.maximum(pre, 0.0, out=pre)
    return pre


class NonNegativeRefit:
    """Refit the codes of a chosen support by non-negative least squares.

    The encoder picks which latents are active; their values are then
    replaced by ``argmin_{z >= 0} ||t - z D_S||^2`` where ``t`` is the scaled,
    bias-removed input and ``D_S`` the active decoder rows. Per row:
    least squares on the support (a batched solve of the small Gram system),
    latents with negative coefficients dropped and the rest solved again
    until none is negative, then ``n_sweeps`` sweeps of cyclic coordinate
    descent over the whole support to settle the remaining KKT conditions.
    Valid for the squared-error autoencoder, whose decoder is linear.
    """

    def __init__(self, decoder_weight, decoder_bias, input_mean, input_scale, n_sweeps=3):
        # float64 inside, so that rounding does not depend on the chunk's shape
        self.decoder = np.ascontiguousarray(decoder_weight, dtype=np.float64)
        self.gram = self.decoder @ self.decoder.T
        self.target_offset = input_mean / input_scale + decoder_bias
        self.input_scale = np.asarray(input_scale, dtype=np.float64)
        self.n_sweeps = n_sweeps

    def entries(self, block, pre, offset, encoder_entries):
        """Rows, latents and values (row-major) of one chunk's codes.

        ``encoder_entries(pre)`` gives the encoder's own selection; its
        values are refitted and latents refitted to zero are dropped.
        """
        rows, cols, values = encoder_entries(pre)
        values = self(block, rows, cols, values, pre.shape[0])
        keep = values > 0
        return rows[keep], cols[keep], values[keep]

    def __call__(self, block, rows, cols, values, n_rows):
        """Refitted values of the entries ``(rows, cols)`` (row-major order)."""
        if values.size == 0:
            return values
        target = block / self.input_scale - self.target_offset
        counts = np.bincount(rows, minlength=n_rows)
        # Rows are solved in groups of similar support size (padded to a
        # multiple of 4), so that a few busy rows do not make every row pay
        # for their padding, and a row's result depends on its own support.
        width_of_row = -(-counts // 4) * 4
        width_of_entry = width_of_row[rows]
        refitted = np.empty(values.shape, dtype=np.float64)
        for width in np.unique(width_of_entry):
            in_group = width_of_entry == width
            group_rows, local_rows = np.unique(rows[in_group], return_inverse=True)
            refitted[in_group] = self._solve(
                target[group_rows], local_rows, cols[in_group], values[in_group],
                len(group_rows), int(width),
            )
        return refitted.astype(values.dtype)

    def _solve(self, target, rows, cols, values, n_rows, width):
        counts = np.bincount(rows, minlength=n_rows)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        position = np.arange(rows.size) - starts[rows]
        support = np.zeros((n_rows, width), dtype=np.intp)
        support[rows, position] = cols
        in_support = np.zeros((n_rows, width), dtype=bool)
        in_support[rows, position] = True
        correlation = np.zeros((n_rows, width))
        correlation[rows, position] = np.einsum(
            "en,en->e", target[rows], self.decoder[cols]
        )
        gram = self.gram[support[:, :, None], support[:, None, :]]
        codes = _nonnegative_least_squares(gram, correlation, in_support, self.n_sweeps)
        return codes[rows, position]


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
                 candidate_factor=4, n_sweeps=3):
        super().__init__(decoder_weight, decoder_bias, input_mean, input_scale, n_sweeps)
        self.k = k
        self.candidate_factor = candidate_factor

    def entries(self, block, pre, offset, encoder_entries):
        """Rows, latents and values (row-major) of one chunk's codes.

        The encoder's own selection rule is not used: the candidates come
        from the pre-activations ``pre + offset`` directly.
        """
        pre += offset
        n_rows, n_latents = pre.shape
        n_candidates = min(self.candidate_factor * self.k, n_latents)
        if n_candidates < n_latents:
            candidates = np.argpartition(-pre, n_candidates - 1, axis=1)[:, :n_candidates]
        else:
            candidates = np.broadcast_to(np.arange(n_latents), (n_rows, n_latents)).copy()
        allowed = np.take_along_axis(pre, candidates, axis=1) > 0
        target = block / self.input_scale - self.target_offset
        correlation = np.einsum("rn,rcn->rc", target, self.decoder[candidates])
        gram = self.gram[candidates[:, :, None], candidates[:, None, :]]
        row_index = np.arange(n_rows)
        support = np.zeros((n_rows, self.k), dtype=np.intp)  # positions in candidates
        in_support = np.zeros((n_rows, self.k), dtype=bool)
        codes = np.zeros((n_rows, self.k))
        residual_correlation = correlation.copy()
        for step in range(self.k):
            score = np.where(allowed, residual_correlation, -np.inf)
            best = np.argmax(score, axis=1)
            grows = score[row_index, best] > 0
            if not grows.any():
                break
            support[grows, step] = best[grows]
            in_support[grows, step] = True
            allowed[row_index[grows], best[grows]] = False
            rows = row_index[grows]
            width = step + 1
            chosen = support[rows, :width]
            row_gram = gram[rows[:, None, None], chosen[:, :, None], chosen[:, None, :]]
            codes[rows, :width] = _nonnegative_least_squares(
                row_gram, correlation[rows[:, None], chosen], in_support[rows, :width],
                self.n_sweeps,
            )
            # correlation of each candidate with the new residual
            chosen_rows = np.take_along_axis(gram[rows], chosen[:, :, None], axis=1)
            residual_correlation[rows] = correlation[rows] - np.einsum(
                "rsc,rs->rc", chosen_rows, codes[rows, :width]
            )
        kept = in_support & (codes > 0)
        rows, slots = np.nonzero(kept)
        latents = candidates[rows, support[rows, slots]]
        values = codes[rows, slots].astype(pre.dtype)
        order = np.lexsort((latents, rows))
        return rows[order], latents[order], values[order]


def _nonnegative_least_squares(gram, correlation, in_support, n_sweeps):
    """Batched ``argmin_{z >= 0} z G z / 2 - c z`` on each row's support.

    ``gram`` (rows, w, w), ``correlation`` (rows, w); entries outside
    ``in_support`` are padding. Least squares on the support, negative
    coefficients dropped and the rest solved again until none is negative
    (only unsettled rows are solved again), then ``n_sweeps`` sweeps of
    cyclic coordinate descent over the whole support.
    """
    n_rows, width = in_support.shape
    gram = gram * (in_support[:, :, None] & in_support[:, None, :])
    diagonal = np.where(in_support, np.einsum("rjj->rj", gram), 1.0)
    eye = np.eye(width, dtype=bool)
    active = in_support.copy()
    codes = np.zeros((n_rows, width))
    pending = np.arange(n_rows)  # rows whose active set is not settled yet
    while pending.size:
        row_active = active[pending]
        system = np.where(row_active[:, :, None] & row_active[:, None, :], gram[pending], 0.0)
        # inactive coordinates become decoupled identity rows; a tiny ridge
        # keeps supports larger than the number of units solvable
        system[:, eye] = np.where(row_active, diagonal[pending] * (1.0 + _RIDGE), 1.0)
        rhs = np.where(row_active, correlation[pending], 0.0)[..., None]
        solution = np.linalg.solve(system, rhs)[..., 0]
        codes[pending] = solution
        negative = row_active & (solution < 0)
        active[pending] = row_active & ~negative
        pending = pending[negative.any(axis=1)]
    codes = np.where(active, np.maximum(codes, 0.0), 0.0)
    # coordinate descent on the full support: may bring dropped latents back
    for _ in range(n_sweeps):
        for j in range(width):
            gradient = np.einsum("rk,rk->r", gram[:, j, :], codes) - correlation[:, j]
            codes[:, j] = np.maximum(codes[:, j] - gradient / diagonal[:, j], 0.0)
    return codes


class _ChunkEncoder:
    """Encodes one chunk of rows; one instance is shared by the worker threads."""

    def __init__(self, X, weight, offset, threshold, k, sparsity, sparse_output, out,
                 refit=None, chunk_rows=DEFAULT_CHUNK_ROWS):
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

    def _entries(self, pre):
        """Rows, latents and values kept by the inference rule (row-major)."""
        if self.sparsity == "topk":
            pre += self.offset
            _topk_inplace(pre, self.k)
            rows, cols = np.nonzero(pre)
            return rows, cols, pre[rows, cols]
        flat = np.flatnonzero(np.greater(pre, self.column_threshold))
        rows, cols = np.divmod(flat, pre.shape[1])
        return rows, cols, pre.ravel()[flat] + self.offset[cols]

    def __call__(self, bounds):
        start, stop = bounds
        block = np.asarray(self.X[start:stop], dtype=np.float32)
        if stop - start < self.chunk_rows:
            # Same product shape for every chunk: BLAS picks its kernel from
            # the shape, so a short chunk (or a single row) would otherwise be
            # rounded differently from the same rows inside a full chunk.
            padded = np.zeros((self.chunk_rows, block.shape[1]), dtype=np.float32)
            padded[: stop - start] = block
            pre = (padded @ self.weight)[: stop - start]
        else:
            pre = block @ self.weight
        if self.refit is None and not self.sparse_output:
            # dense fast path: no index arrays at all
            target = self.out[start:stop]
            if self.sparsity == "topk":
                pre += self.offset
                target[...] = _topk_inplace(pre, self.k)
                return None
            mask = np.greater(pre, self.column_threshold)
            pre += self.offset
            target[...] = 0.0
            np.copyto(target, pre, casting="unsafe", where=mask)
            return None
        if self.refit is None:
            rows, cols, values = self._entries(pre)
        else:
            rows, cols, values = self.refit.entries(block, pre, self.offset, self._entries)
        if not self.sparse_output:
            target = self.out[start:stop]
            target[...] = 0.0
            target[rows, cols] = values
            return None
        return values, cols, np.bincount(rows, minlength=stop - start)


def encode(X, weight, offset, *, threshold, k, sparsity, sparse_output=False,
           dtype=np.float64, chunk_rows=DEFAULT_CHUNK_ROWS, n_threads=None, refit=None):
    """Codes of ``X`` (n_rows, n_inputs) under a fitted, folded encoder.

    Returns a dense ndarray of ``dtype`` or, with ``sparse_output``, a CSR
    matrix of ``dtype``. Each row's code depends on that row only. ``refit``
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
