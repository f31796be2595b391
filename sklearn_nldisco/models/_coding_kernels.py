"""Compiled per-row kernels of the code refit (non-negative least squares).

The refit solves one small problem per row (its support is a handful of
latents), which NumPy can only batch with many passes over padded arrays.
These kernels do each row in one pass, in compiled code that releases the
GIL, so the chunks of :func:`._inference.encode` run on several threads.

Every row is computed by the same sequence of floating-point operations
whatever its neighbours, so these kernels make a row's code depend on that
row alone (its pre-activations, from BLAS, may differ in the last bit with
the row's position in a chunk: see ``_inference.encode``).
"""

import numpy as np
from numba import njit

from ._topk_kernels import insert_descending, sort_by_index

# Iteration caps of the active-set solver, per latent of the support: the
# method terminates in theory; the caps only guard against rounding loops.
_MAX_PASSES_PER_LATENT = 3


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _dot(a, b, n):
    # float32 with a vectorised reduction: the decoder stays in cache; the
    # same order of operations for every row keeps rows independent
    total = np.float32(0.0)
    for i in range(n):
        total += a[i] * b[i]
    return np.float64(total)


@njit(nogil=True, cache=True)
def _gather_gram(gram, chosen, size, sub_gram):
    """``sub_gram = gram[chosen][:, chosen]``, one triangle read (symmetric)."""
    for a in range(size):
        row = chosen[a]
        for b in range(a, size):
            value = np.float64(gram[row, chosen[b]])
            sub_gram[a, b] = value
            sub_gram[b, a] = value


@njit(nogil=True, cache=True)
def _solve_on_passive(gram, correlation, passive, size, ridge, factor, solution, order):
    """Least squares ``G_PP y = c_P`` (ridge-regularised), by Cholesky.

    Writes ``y`` into ``solution`` at the passive positions, 0 elsewhere.
    """
    m = 0
    for a in range(size):
        if passive[a]:
            order[m] = a
            m += 1
    for p in range(m):
        row = order[p]
        for q in range(p + 1):
            value = gram[row, order[q]]
            if p == q:
                value *= 1.0 + ridge
            for r in range(q):
                value -= factor[p, r] * factor[q, r]
            if p == q:
                factor[p, p] = np.sqrt(value) if value > 0.0 else 1e-150
            else:
                factor[p, q] = value / factor[q, q]
    # forward then backward substitution; solution used as scratch in order
    for p in range(m):
        value = correlation[order[p]]
        for r in range(p):
            value -= factor[p, r] * solution[r]
        solution[p] = value / factor[p, p]
    for p in range(m - 1, -1, -1):
        value = solution[p]
        for r in range(p + 1, m):
            value -= factor[r, p] * solution[r]
        solution[p] = value / factor[p, p]
    # scatter back to support positions
    for p in range(m - 1, -1, -1):
        value = solution[p]
        solution[p] = 0.0
        solution[order[p]] = value
    for a in range(size):
        if not passive[a]:
            solution[a] = 0.0


@njit(nogil=True, cache=True)
def nonnegative_least_squares(gram, correlation, size, codes, passive, ridge,
                              factor, solution, order):
    """``argmin_{z >= 0} z G z / 2 - c z`` over the first ``size`` positions.

    Active-set method (Lawson and Hanson) in the Gram form, warm-started
    from ``codes`` (non-negative), whose positive entries form the starting
    passive set. ``codes`` is updated in place.
    """
    scale = 0.0
    for a in range(size):
        scale = max(scale, abs(correlation[a]))
        passive[a] = codes[a] > 0.0
    tolerance = 1e-10 * (1.0 + scale)
    for _ in range(_MAX_PASSES_PER_LATENT * size + 2):
        # make the passive set optimal, stepping back to feasibility
        for _ in range(_MAX_PASSES_PER_LATENT * size + 2):
            _solve_on_passive(gram, correlation, passive, size, ridge, factor, solution, order)
            step = 1.0
            blocking = -1
            for a in range(size):
                if passive[a] and solution[a] <= 0.0:
                    ratio = codes[a] / (codes[a] - solution[a])
                    if ratio < step:
                        step = ratio
                        blocking = a
            if blocking < 0:
                for a in range(size):
                    codes[a] = solution[a] if passive[a] else 0.0
                break
            # step towards the solution until the first code reaches zero
            for a in range(size):
                if passive[a]:
                    codes[a] += step * (solution[a] - codes[a])
            codes[blocking] = 0.0
            for a in range(size):
                if passive[a] and codes[a] <= 0.0:
                    codes[a] = 0.0
                    passive[a] = False
        # the most violated optimality condition joins the passive set
        best = -1
        best_gradient = tolerance
        for a in range(size):
            if not passive[a]:
                gradient = correlation[a]
                for b in range(size):
                    gradient -= gram[a, b] * codes[b]
                if gradient > best_gradient:
                    best_gradient = gradient
                    best = a
        if best < 0:
            break
        passive[best] = True
    return codes


@njit(nogil=True, cache=True)
def _largest_positive(values, offset, count, chosen, chosen_values):
    """The ``count`` largest positive ``values + offset`` of one row.

    Fills ``chosen`` (latent indices, ascending) and returns how many there
    are. Ties keep the lower index, so the selection is deterministic.
    """
    n = 0
    for j in range(values.shape[0]):
        value = values[j] + offset[j]
        if value <= 0.0 or (n == count and value <= chosen_values[n - 1]):
            continue
        n = insert_descending(chosen_values, chosen, n, count, value, j)
    sort_by_index(chosen, chosen_values, n)
    return n


@njit(nogil=True, cache=True)
def _row_target(block_row, inv_scale, target_offset, target):
    for i in range(target.shape[0]):
        target[i] = np.float32(block_row[i] * inv_scale[i] - target_offset[i])


@njit(nogil=True, cache=True)
def select_topk_chunk(pre, offset, k):
    """The ``k`` largest positive ``pre + offset`` of each row of a chunk.

    Returns CSR parts ``(counts, latents, values)``, latents ascending in
    each row (ties keep the lower index).
    """
    n_rows, n_latents = pre.shape
    k = max(1, min(k, n_latents))
    counts = np.zeros(n_rows, np.int64)
    latents = np.empty(n_rows * k, np.int32)
    values = np.empty(n_rows * k, np.float32)
    chosen = np.empty(k, np.int64)
    chosen_values = np.empty(k, np.float64)
    written = 0
    for r in range(n_rows):
        size = _largest_positive(pre[r], offset, k, chosen, chosen_values)
        for a in range(size):
            latents[written + a] = chosen[a]
            # the float32 sum, as in the dense path
            values[written + a] = pre[r, chosen[a]] + offset[chosen[a]]
        counts[r] = size
        written += size
    return counts, latents[:written], values[:written]


@njit(nogil=True, cache=True)
def refit_entries(block, counts, latents, values, decoder, gram, inv_scale, target_offset,
                  ridge):
    """NNLS refit of the encoder's values on each row's selected latents.

    ``(counts, latents, values)`` are the CSR parts of one chunk's encoder
    codes. Returns the same parts for the refitted codes, with latents
    refitted to zero dropped.
    """
    n_rows = counts.shape[0]
    n_inputs = block.shape[1]
    width = 1
    for r in range(n_rows):
        width = max(width, counts[r])
    out_counts = np.zeros(n_rows, np.int64)
    out_latents = np.empty(latents.shape[0], np.int32)
    out_values = np.empty(latents.shape[0], np.float64)
    chosen = np.empty(width, np.int64)
    target = np.empty(n_inputs, np.float32)
    correlation = np.empty(width, np.float64)
    sub_gram = np.empty((width, width), np.float64)
    codes = np.empty(width, np.float64)
    passive = np.empty(width, np.bool_)
    factor = np.empty((width, width), np.float64)
    solution = np.empty(width, np.float64)
    order = np.empty(width, np.int64)
    start = 0
    written = 0
    for r in range(n_rows):
        size = counts[r]
        if size == 0:
            continue
        _row_target(block[r], inv_scale, target_offset, target)
        for a in range(size):
            latent = latents[start + a]
            chosen[a] = latent
            correlation[a] = _dot(target, decoder[latent], n_inputs)
            codes[a] = max(np.float64(values[start + a]), 0.0)
        _gather_gram(gram, chosen, size, sub_gram)
        nonnegative_least_squares(sub_gram, correlation, size, codes, passive, ridge,
                                  factor, solution, order)
        kept = 0
        for a in range(size):
            if codes[a] > 0.0:
                out_latents[written + kept] = chosen[a]
                out_values[written + kept] = codes[a]
                kept += 1
        out_counts[r] = kept
        written += kept
        start += size
    return out_counts, out_latents[:written], out_values[:written]


@njit(nogil=True, cache=True)
def pursuit_chunk(block, pre, offset, k, n_candidates, decoder, gram, inv_scale,
                  target_offset, ridge):
    """Greedy non-negative pursuit among each row's strongest candidates.

    Candidates: the ``n_candidates`` largest positive ``pre + offset``.
    Then up to ``k`` times, the candidate most correlated with the residual
    (if positively) joins the support and the support is refitted by
    non-negative least squares. Returns CSR parts like :func:`refit_entries`.
    """
    n_rows, n_latents = pre.shape
    n_inputs = block.shape[1]
    n_candidates = max(1, min(n_candidates, n_latents))
    k = min(k, n_candidates)
    counts = np.zeros(n_rows, np.int64)
    latents = np.empty(n_rows * k, np.int32)
    values = np.empty(n_rows * k, np.float64)
    candidates = np.empty(n_candidates, np.int64)
    candidate_values = np.empty(n_candidates, np.float64)
    target = np.empty(n_inputs, np.float32)
    correlation = np.empty(n_candidates, np.float64)
    residual_correlation = np.empty(n_candidates, np.float64)
    allowed = np.empty(n_candidates, np.bool_)
    candidate_gram = np.empty((n_candidates, n_candidates), np.float64)
    support = np.empty(k, np.int64)
    sub_gram = np.empty((k, k), np.float64)
    sub_correlation = np.empty(k, np.float64)
    codes = np.empty(k, np.float64)
    passive = np.empty(k, np.bool_)
    factor = np.empty((k, k), np.float64)
    solution = np.empty(k, np.float64)
    order = np.empty(k, np.int64)
    written = 0
    for r in range(n_rows):
        n = _largest_positive(pre[r], offset, n_candidates, candidates, candidate_values)
        if n == 0 or k == 0:
            continue
        _row_target(block[r], inv_scale, target_offset, target)
        for a in range(n):
            correlation[a] = _dot(target, decoder[candidates[a]], n_inputs)
            residual_correlation[a] = correlation[a]
            allowed[a] = True
        _gather_gram(gram, candidates, n, candidate_gram)
        size = 0
        for _ in range(k):
            best = -1
            best_value = 0.0
            for a in range(n):
                if allowed[a] and residual_correlation[a] > best_value:
                    best_value = residual_correlation[a]
                    best = a
            if best < 0:
                break
            allowed[best] = False
            support[size] = best
            codes[size] = 0.0
            size += 1
            for a in range(size):
                sub_correlation[a] = correlation[support[a]]
                for b in range(size):
                    sub_gram[a, b] = candidate_gram[support[a], support[b]]
            nonnegative_least_squares(sub_gram, sub_correlation, size, codes, passive, ridge,
                                      factor, solution, order)
            for a in range(n):
                value = correlation[a]
                for b in range(size):
                    value -= candidate_gram[a, support[b]] * codes[b]
                residual_correlation[a] = value
        # entries of the row in ascending latent order
        kept = 0
        for a in range(n):
            for b in range(size):
                if support[b] == a and codes[b] > 0.0:
                    latents[written + kept] = candidates[a]
                    values[written + kept] = codes[b]
                    kept += 1
        counts[r] = kept
        written += kept
    return counts, latents[:written], values[:written]
