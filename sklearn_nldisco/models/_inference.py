"""NumPy-only encoding and decoding of a fitted Matryoshka coder.

Nothing here imports torch: a fitted model transforms and reconstructs in a
process without it. Rows are processed in chunks, so memory stays bounded
whatever the number of rows, and the codes can be returned as a
``scipy.sparse`` CSR matrix.
"""

import numpy as np
import scipy.sparse as sp

from ._losses import link_numpy

# Rows per chunk: the pre-activation block (chunk x n_latents float32) stays
# small enough to live in cache-friendly sizes for typical dictionaries.
DEFAULT_CHUNK_ROWS = 2048


def fold_encoder(encoder_weight, encoder_bias, input_bias, input_mean, input_scale):
    """Fold input scaling and centring into one affine map ``x W + c``.

    ``((x - mean) / scale - b_pre) W + b`` equals ``x (W / scale) + c`` with
    ``c = b - (mean / scale + b_pre) W``.
    """
    weight = encoder_weight.astype(np.float64) / input_scale[:, None]
    offset = encoder_bias - (input_mean / input_scale + input_bias) @ encoder_weight
    return np.ascontiguousarray(weight, dtype=np.float32), offset.astype(np.float32)


def _select_inplace(pre, threshold, k, sparsity):
    """Zero every entry of ``pre`` that the inference rule does not keep."""
    if sparsity == "batchtopk":
        pre[pre <= threshold] = 0.0
        return pre
    k = min(k, pre.shape[1])
    if k < pre.shape[1]:
        cut = pre.shape[1] - k
        # the k largest of each row sit right of position `cut`
        order = np.argpartition(pre, cut, axis=1)
        np.put_along_axis(pre, order[:, :cut], 0.0, axis=1)
    np.maximum(pre, 0.0, out=pre)
    return pre


def encode(X, weight, offset, *, threshold, k, sparsity, sparse_output=False,
           dtype=np.float64, chunk_rows=DEFAULT_CHUNK_ROWS):
    """Codes of ``X`` (n_rows, n_inputs) under a fitted, folded encoder.

    Returns a dense ndarray of ``dtype`` or, with ``sparse_output``, a CSR
    matrix of ``dtype``. Each row's code depends on that row only.
    """
    n_rows = X.shape[0]
    n_latents = weight.shape[1]
    threshold = np.float32(threshold)
    buffer = np.empty((min(chunk_rows, max(n_rows, 1)), n_latents), dtype=np.float32)
    if not sparse_output:
        codes = np.empty((n_rows, n_latents), dtype=dtype)
    else:
        data, indices, counts = [], [], []
    for start in range(0, n_rows, chunk_rows):
        stop = min(start + chunk_rows, n_rows)
        pre = buffer[: stop - start]
        np.matmul(np.asarray(X[start:stop], dtype=np.float32), weight, out=pre)
        pre += offset
        _select_inplace(pre, threshold, k, sparsity)
        if not sparse_output:
            codes[start:stop] = pre
            continue
        rows, cols = np.nonzero(pre)
        data.append(pre[rows, cols].astype(dtype, copy=False))
        indices.append(cols.astype(np.int32, copy=False))
        counts.append(np.bincount(rows, minlength=stop - start))
    if not sparse_output:
        return codes
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=indptr[1:])
    data = np.concatenate(data) if data else np.empty(0, dtype=dtype)
    indices = np.concatenate(indices) if indices else np.empty(0, dtype=np.int32)
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
