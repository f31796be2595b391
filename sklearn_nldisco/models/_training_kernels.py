"""Compiled CPU kernels of the training step: selection and backward pass.

On the CPU, the sparse part of a step written with torch operations is about
a hundred small operations (sparse-dense products, index arithmetic,
cumulative sums), each with its own dispatch and pass over memory. These
kernels do the same work in a few compiled passes over NumPy views of the
CPU tensors, following the selected entries in CSR order: row by row,
latents ascending within a row, so that the bands of the Matryoshka levels
come in order too.

Every kernel runs on the calling thread in a fixed order of operations, so a
fixed ``random_state`` gives bitwise-identical training runs. (A second
thread does not pay: right after torch's parallel encoder product, torch's
OpenMP workers still busy-wait on the other cores.) The dense encoder
product, the count losses and Adam stay in torch.
"""

import numpy as np
from numba import njit

from ._topk_kernels import insert_descending, sort_by_index

# Reassociation lets the compiler vectorise the dot products; the order of
# operations is still fixed on a given machine, so results are reproducible.
_FAST = {"reassoc", "contract"}

# The index of the lowest set bit of a 64-bit word, by de Bruijn
# multiplication (numba has no count-trailing-zeros intrinsic).
_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DE_BRUIJN_INDEX = np.array(
    [0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4,
     62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
     63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11,
     46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6],
    dtype=np.int64,
)


@njit(nogil=True, cache=True)
def _bit_count(word):
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + (
        (word >> np.uint64(2)) & np.uint64(0x3333333333333333)
    )
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((word * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(nogil=True, cache=True)
def _above_masks(pre, cut, masks):
    """Bit masks of ``pre > cut`` (64 latents a word); returns their count.

    The fixed-length comparison loop vectorises, so the pass costs little
    more than reading ``pre``; the candidates are then visited set bit by
    set bit.
    """
    n_latents = pre.shape[1]
    n_words = masks.shape[1]
    cut = np.float32(cut)
    count = 0
    for r in range(pre.shape[0]):
        row = pre[r]
        for word in range(n_words):
            start = 64 * word
            mask = np.uint64(0)
            if start + 64 <= n_latents:
                for t in range(64):
                    mask |= np.uint64(row[start + t] > cut) << np.uint64(t)
            else:
                for t in range(n_latents - start):
                    mask |= np.uint64(row[start + t] > cut) << np.uint64(t)
            masks[r, word] = mask
            count += _bit_count(mask)
    return count


@njit(nogil=True, cache=True)
def _radix_pass(bits, rank, counts, select_shift, selected, shift, mask):
    """One counting pass of the radix selection; returns (bucket, rank in it)."""
    counts[:] = 0
    for i in range(bits.shape[0]):
        pattern = bits[i]
        if (pattern >> select_shift) == selected:
            counts[(pattern >> shift) & mask] += 1
    bucket = 0
    while counts[bucket] <= rank:
        rank -= counts[bucket]
        bucket += 1
    return np.uint32(bucket), rank


@njit(nogil=True, cache=True)
def _smallest(values, rank):
    """The ``rank``-th smallest (from 0) of positive float32 ``values``.

    Radix selection on the bit patterns, which order positive floats like
    their values: three counting passes, on bits 21-31, 10-20 and 0-9.
    """
    bits = values.view(np.uint32)
    counts = np.empty(2048, np.int64)
    # a shift by 32 is undefined: the first pass selects every value by
    # comparing its sign bit (0 for positive floats) with 0
    high, rank = _radix_pass(bits, rank, counts, np.uint32(31), np.uint32(0),
                             np.uint32(21), np.uint32(2047))
    middle, rank = _radix_pass(bits, rank, counts, np.uint32(21), high,
                               np.uint32(10), np.uint32(2047))
    prefix = (high << np.uint32(11)) | middle
    low, rank = _radix_pass(bits, rank, counts, np.uint32(10), prefix,
                            np.uint32(0), np.uint32(1023))
    result = np.empty(1, np.uint32)
    result[0] = (prefix << np.uint32(10)) | low
    return result.view(np.float32)[0]


@njit(nogil=True, cache=True)
def batch_topk(pre, budget, guess):
    """CSR selection of the ``budget`` largest positive entries of ``pre``.

    ``guess`` (a cut below the expected one, e.g. from the previous step)
    only pre-selects candidates: it is halved until at least ``budget``
    entries exceed it, down to 0. Among the candidates, the extra smallest
    are dropped with the same tie rule as the torch path: with fewer extras
    than kept entries, everything above the largest extra is kept, otherwise
    everything at or above the smallest kept value.

    Returns ``(row_pointers, rows, latents, values, smallest_kept)``: the
    CSR row pointers, then the row, latent and value of every kept entry,
    latents ascending within each row; ``smallest_kept`` is -1 when nothing
    is kept.
    """
    batch, n_latents = pre.shape
    masks = np.empty((batch, (n_latents + 63) // 64), np.uint64)
    if not guess < np.inf:
        # a cut that is not finite (diverged training) tells nothing
        guess = 0.0
    while True:
        count = _above_masks(pre, guess, masks)
        if count >= budget or guess <= 0.0:
            break
        guess = 0.0 if guess < 1e-6 else guess * 0.5
    row_pointers = np.empty(batch + 1, np.int64)
    rows = np.empty(count, np.int64)
    latents = np.empty(count, np.int64)
    values = np.empty(count, np.float32)
    n = 0
    for r in range(batch):
        row_pointers[r] = n
        for word in range(masks.shape[1]):
            mask = masks[r, word]
            while mask:
                lowest = mask & (~mask + np.uint64(1))
                latent = 64 * word + _DE_BRUIJN_INDEX[(lowest * _DE_BRUIJN) >> np.uint64(58)]
                rows[n] = r
                latents[n] = latent
                values[n] = pre[r, latent]
                n += 1
                mask ^= lowest
    row_pointers[batch] = n
    n_extra = count - budget
    if n_extra > 0:
        strict = n_extra < budget
        cut = _smallest(values, n_extra - 1 if strict else n_extra)
        n = 0
        start = 0
        for r in range(batch):
            end = row_pointers[r + 1]
            row_pointers[r] = n
            for e in range(start, end):
                value = values[e]
                if value > cut or (not strict and value == cut):
                    rows[n] = r
                    latents[n] = latents[e]
                    values[n] = value
                    n += 1
            start = end
        row_pointers[batch] = n
    smallest = -1.0
    if n:
        smallest = np.float64(values[:n].min())
    return row_pointers, rows[:n], latents[:n], values[:n], smallest


@njit(nogil=True, cache=True)
def row_topk(pre, columns, k):
    """CSR selection of each row's ``k`` largest positive ``pre[:, columns]``.

    ``columns`` is ascending. Returns ``(row_pointers, rows, latents,
    values)`` like :func:`batch_topk`; the latents are entries of
    ``columns``, ascending within each row. Ties keep the lower column.
    """
    batch = pre.shape[0]
    n_columns = columns.shape[0]
    k = min(k, n_columns)
    row_pointers = np.empty(batch + 1, np.int64)
    rows = np.empty(batch * k, np.int64)
    latents = np.empty(batch * k, np.int64)
    values = np.empty(batch * k, np.float32)
    best = np.empty(k, np.float32)
    best_at = np.empty(k, np.int64)
    n = 0
    for r in range(batch):
        row_pointers[r] = n
        count = 0
        # only values above the k-th best so far (or 0) can enter
        floor = np.float32(0.0)
        for i in range(n_columns):
            value = pre[r, columns[i]]
            if value > floor:
                count = insert_descending(best, best_at, count, k, value, i)
                if count == k:
                    floor = best[k - 1]
        sort_by_index(best_at, best, count)
        for a in range(count):
            rows[n] = r
            latents[n] = columns[best_at[a]]
            values[n] = best[a]
            n += 1
    row_pointers[batch] = n
    return row_pointers, rows[:n], latents[:n], values[:n]


@njit(nogil=True, cache=True)
def update_firing(samples_since_fired, batch, latents, dead_window):
    """Advance the silence counters, reset the fired ones; the dead latents."""
    for j in range(samples_since_fired.shape[0]):
        samples_since_fired[j] += batch
    for e in range(latents.shape[0]):
        samples_since_fired[latents[e]] = 0.0
    n_dead = 0
    for j in range(samples_since_fired.shape[0]):
        n_dead += samples_since_fired[j] > dead_window
    dead = np.empty(n_dead, np.int64)
    n = 0
    for j in range(samples_since_fired.shape[0]):
        if samples_since_fired[j] > dead_window:
            dead[n] = j
            n += 1
    return dead


@njit(nogil=True, cache=True, fastmath=_FAST)
def _accumulate_entries(row_pointers, latents, values, decoder_weight, r, end_latent,
                        entry, accumulated):
    """Add ``value * decoder row`` of the entries of row ``r`` from ``entry``
    on whose latent is below ``end_latent``; returns the next entry."""
    end = row_pointers[r + 1]
    while entry < end and latents[entry] < end_latent:
        row = decoder_weight[latents[entry]]
        value = values[entry]
        for o in range(accumulated.shape[0]):
            accumulated[o] += value * row[o]
        entry += 1
    return entry


@njit(nogil=True, cache=True, fastmath=_FAST)
def _accumulate_level_entries(row_pointers, latents, values, level_bits, level,
                              decoder_weight, r, accumulated):
    """Add ``value * decoder row`` of the entries of row ``r`` that level
    ``level`` selected (bit ``level`` of ``level_bits``)."""
    for entry in range(row_pointers[r], row_pointers[r + 1]):
        if (level_bits[entry] >> level) & 1:
            row = decoder_weight[latents[entry]]
            value = values[entry]
            for o in range(accumulated.shape[0]):
                accumulated[o] += value * row[o]


@njit(nogil=True, cache=True, fastmath=_FAST)
def decode_level_bits(row_pointers, latents, values, level_bits, decoder_weight,
                      decoder_bias, out):
    """``decode_levels`` for a per-level ``k``: level ``l`` adds the decoder
    rows of the entries it selected (bit ``l`` of ``level_bits``)."""
    n_levels, batch, n_outputs = out.shape
    accumulated = np.empty(n_outputs, np.float32)
    for r in range(batch):
        for level in range(n_levels):
            for o in range(n_outputs):
                accumulated[o] = decoder_bias[o]
            _accumulate_level_entries(row_pointers, latents, values, level_bits, level,
                                      decoder_weight, r, accumulated)
            for o in range(n_outputs):
                out[level, r, o] = accumulated[o]


@njit(nogil=True, cache=True)
def merge_level_selections(level_row_pointers, level_latents, level_values, level_offsets,
                           n_latents):
    """The union of the levels' CSR selections of one batch, latents ascending
    within each row, with each entry's ``level_bits`` (bit ``l``: level ``l``
    selected it).

    Level ``l``'s selection is ``level_row_pointers[l]`` (relative to
    ``level_offsets[l]``) into ``level_latents`` and ``level_values``.
    Returns ``(row_pointers, rows, latents, values, level_bits)``.
    """
    n_levels, n_pointers = level_row_pointers.shape
    batch = n_pointers - 1
    bits_of = np.zeros(n_latents, np.int64)
    value_of = np.empty(n_latents, np.float32)
    capacity = level_offsets[n_levels]
    row_pointers = np.empty(batch + 1, np.int64)
    rows = np.empty(capacity, np.int64)
    latents = np.empty(capacity, np.int64)
    values = np.empty(capacity, np.float32)
    level_bits = np.empty(capacity, np.int64)
    n = 0
    for r in range(batch):
        row_pointers[r] = n
        for level in range(n_levels):
            offset = level_offsets[level]
            for e in range(offset + level_row_pointers[level, r],
                           offset + level_row_pointers[level, r + 1]):
                latent = level_latents[e]
                bits_of[latent] |= np.int64(1) << level
                value_of[latent] = level_values[e]
        for latent in range(n_latents):
            if bits_of[latent]:
                rows[n] = r
                latents[n] = latent
                values[n] = value_of[latent]
                level_bits[n] = bits_of[latent]
                bits_of[latent] = 0
                n += 1
    row_pointers[batch] = n
    return row_pointers, rows[:n], latents[:n], values[:n], level_bits[:n]


@njit(nogil=True, cache=True, fastmath=_FAST)
def decode_levels(row_pointers, latents, values, level_sizes, decoder_weight,
                  decoder_bias, out):
    """Linear predictor of every level from the selected entries only.

    Level ``l`` adds the decoder rows of the selected latents below
    ``level_sizes[l]`` to the decoder bias; levels are cumulative, so each
    entry is added once.
    """
    n_levels, batch, n_outputs = out.shape
    accumulated = np.empty(n_outputs, np.float32)
    for r in range(batch):
        # element loops, not slice copies: a slice copy compiles numba's
        # shape-mismatch error message, seconds of the first run's time
        for o in range(n_outputs):
            accumulated[o] = decoder_bias[o]
        entry = row_pointers[r]
        for level in range(n_levels):
            entry = _accumulate_entries(row_pointers, latents, values, decoder_weight,
                                        r, level_sizes[level], entry, accumulated)
            for o in range(n_outputs):
                out[level, r, o] = accumulated[o]


@njit(nogil=True, cache=True, fastmath=_FAST)
def _entry_gradients(gradient, r, start, end, latents, values, decoder_weight,
                     centred, grad_decoder_weight, grad_encoder_weight_t, grad_encoder_bias,
                     scale, encoder_weight_t, row_input):
    """Parameter gradients through the entries ``start:end`` of row ``r``,
    whose block (band or auxiliary selection) has the output gradient
    ``gradient * scale``.

    With ``row_input`` not empty (tied centring of a masked input), the
    gradient of row ``r``'s encoder input is accumulated there too:
    ``row_input += d loss / d pre[r, latent] * encoder_weight_t[latent]``.
    """
    n_outputs = gradient.shape[0]
    n_inputs = centred.shape[1]
    with_input = row_input.shape[0] > 0
    for e in range(start, end):
        latent = latents[e]
        row = decoder_weight[latent]
        grad_row = grad_decoder_weight[latent]
        weighted = values[e] * scale
        # d loss / d value = block gradient . decoder row, in the same pass
        # as the decoder-row gradient, which reads the same block gradient
        grad_value = np.float32(0.0)
        for o in range(n_outputs):
            grad_value += gradient[o] * row[o]
            grad_row[o] += weighted * gradient[o]
        grad_value *= scale
        grad_row = grad_encoder_weight_t[latent]
        for i in range(n_inputs):
            grad_row[i] += grad_value * centred[r, i]
        grad_encoder_bias[latent] += grad_value
        if with_input:
            encoder_row = encoder_weight_t[latent]
            for i in range(n_inputs):
                row_input[i] += grad_value * encoder_row[i]


@njit(nogil=True, cache=True, fastmath=_FAST)
def _rows_pass(mse, grad_linear, target, factors, level_sizes, row_pointers, latents,
               values, decoder_weight, decoder_bias, centred, deviation,
               grad_decoder_weight, grad_encoder_weight_t, grad_encoder_bias,
               grad_decoder_bias, level_sums, keep, keep_scale, hidden_loss, masked_centring,
               encoder_weight_t, level_bits):
    """The gradient sums over the selected entries, row by row; returns the
    sum of squared ``deviation`` (0 without it).

    ``level_bits`` (not empty: a per-level ``k``) says which levels selected
    each entry (bit ``l`` for level ``l``); otherwise an entry of band ``b``
    serves every level from ``b`` on.

    Masked training (``keep``, True where an input entry was kept): with
    ``hidden_loss`` the ``mse`` error counts on the hidden entries only;
    with ``masked_centring`` the gradient through a tied centring of the
    masked input (kept entries times ``keep_scale``) goes to
    ``grad_decoder_bias`` row by row.
    """
    n_levels = level_sizes.shape[0]
    batch, n_outputs = target.shape
    last = n_levels - 1
    band_gradient = np.empty((n_levels, n_outputs), np.float32)
    accumulated = np.empty(n_outputs, np.float32)
    with_deviation = deviation.shape[0] > 0
    weighted = hidden_loss
    row_input = np.zeros(keep.shape[1] if masked_centring else 0, np.float32)
    per_level = level_bits.shape[0] > 0
    entry_gradient = np.empty(n_outputs if per_level else 0, np.float32)
    energy = 0.0
    for r in range(batch):
        # weighted gradient of each level's loss, then the reverse cumulative
        # sum over levels (the gradient of each band)
        if mse:
            # the residual of each level, decoded onto the bias minus the target
            for o in range(n_outputs):
                accumulated[o] = decoder_bias[o] - target[r, o]
            entry = row_pointers[r]
            for level in range(n_levels):
                if per_level:
                    # each level from its own selection
                    if level > 0:
                        for o in range(n_outputs):
                            accumulated[o] = decoder_bias[o] - target[r, o]
                    _accumulate_level_entries(row_pointers, latents, values, level_bits,
                                              level, decoder_weight, r, accumulated)
                else:
                    entry = _accumulate_entries(row_pointers, latents, values,
                                                decoder_weight, r, level_sizes[level],
                                                entry, accumulated)
                factor = factors[level]
                squares = np.float32(0.0)
                if weighted:
                    for o in range(n_outputs):
                        if keep[r, o]:
                            band_gradient[level, o] = 0.0
                        else:
                            band_gradient[level, o] = accumulated[o] * factor
                            squares += accumulated[o] * accumulated[o]
                else:
                    for o in range(n_outputs):
                        band_gradient[level, o] = accumulated[o] * factor
                        squares += accumulated[o] * accumulated[o]
                level_sums[level] += squares
            if with_deviation:
                for o in range(n_outputs):
                    deviation[r, o] = accumulated[o]
        else:
            for level in range(n_levels):
                factor = factors[level]
                for o in range(n_outputs):
                    band_gradient[level, o] = grad_linear[level, r, o] * factor
            if with_deviation:
                squares = np.float32(0.0)
                for o in range(n_outputs):
                    squares += deviation[r, o] * deviation[r, o]
                energy += squares
        if per_level:
            # an entry's output gradient: the sum over the levels that selected it
            for level in range(n_levels):
                for o in range(n_outputs):
                    grad_decoder_bias[o] += band_gradient[level, o]
            for e in range(row_pointers[r], row_pointers[r + 1]):
                bits = level_bits[e]
                for o in range(n_outputs):
                    entry_gradient[o] = 0.0
                for level in range(n_levels):
                    if (bits >> level) & 1:
                        for o in range(n_outputs):
                            entry_gradient[o] += band_gradient[level, o]
                _entry_gradients(
                    entry_gradient, r, e, e + 1, latents, values, decoder_weight,
                    centred, grad_decoder_weight, grad_encoder_weight_t, grad_encoder_bias,
                    np.float32(1.0), encoder_weight_t, row_input,
                )
            if masked_centring:
                _centring_gradient(r, keep, keep_scale, row_input, grad_decoder_bias)
            continue
        for level in range(last - 1, 0, -1):
            for o in range(n_outputs):
                band_gradient[level, o] += band_gradient[level + 1, o]
        if last > 0:
            for o in range(n_outputs):
                band_gradient[0, o] += band_gradient[1, o]
                grad_decoder_bias[o] += band_gradient[0, o]
        else:
            for o in range(n_outputs):
                grad_decoder_bias[o] += band_gradient[0, o]
        entry = row_pointers[r]
        end = row_pointers[r + 1]
        for level in range(n_levels):
            start = entry
            while entry < end and latents[entry] < level_sizes[level]:
                entry += 1
            _entry_gradients(
                band_gradient[level], r, start, entry, latents, values, decoder_weight,
                centred, grad_decoder_weight, grad_encoder_weight_t, grad_encoder_bias,
                np.float32(1.0), encoder_weight_t, row_input,
            )
        if masked_centring:
            _centring_gradient(r, keep, keep_scale, row_input, grad_decoder_bias)
    if mse and with_deviation:
        if weighted:
            # the deviation's own energy (the level sums are weighted)
            energy = 0.0
            for r in range(batch):
                squares = np.float32(0.0)
                for o in range(n_outputs):
                    squares += deviation[r, o] * deviation[r, o]
                energy += squares
        else:
            # the same sum as the last level's
            energy = level_sums[last]
    return energy


@njit(nogil=True, cache=True, fastmath=_FAST)
def _centring_gradient(r, keep, keep_scale, row_input, grad_decoder_bias):
    """Tied centring of a masked input: row ``r``'s encoder input is
    ``(x - b_dec) * keep_scale`` where kept, 0 where hidden, so ``b_dec``
    receives minus the input gradient ``row_input`` times that factor (and
    ``row_input`` is reset)."""
    for i in range(row_input.shape[0]):
        if keep[r, i]:
            grad_decoder_bias[i] -= keep_scale * row_input[i]
        row_input[i] = 0.0


@njit(nogil=True, cache=True, fastmath=_FAST)
def masked_centred(x, bias, keep, keep_scale, out):
    """``out = (x - bias) * keep_scale`` where ``keep``, 0 elsewhere; returns
    the number of hidden entries (one pass, for masked training)."""
    hidden = 0
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            if keep[r, i]:
                out[r, i] = (x[r, i] - bias[i]) * keep_scale
            else:
                out[r, i] = 0.0
                hidden += 1
    return hidden


@njit(nogil=True, cache=True, fastmath=_FAST)
def _aux_pass(aux_row_pointers, aux_latents, aux_values, deviation, aux_factor,
              decoder_weight, centred, grad_decoder_weight, grad_encoder_weight_t,
              grad_encoder_bias, keep, keep_scale, masked_centring, encoder_weight_t,
              grad_decoder_bias):
    """The AuxK gradient sums; returns the sum of squared errors.

    The auxiliary entries decode a reconstruction of the residual
    ``-deviation`` of the full model (a constant): the error of a row is
    ``reconstruction + deviation``, its output gradient ``aux_factor * error``.
    """
    batch, n_outputs = deviation.shape
    error = np.empty(n_outputs, np.float32)
    row_input = np.zeros(keep.shape[1] if masked_centring else 0, np.float32)
    total = 0.0
    for r in range(batch):
        start = aux_row_pointers[r]
        end = aux_row_pointers[r + 1]
        for o in range(n_outputs):
            error[o] = deviation[r, o]
        _accumulate_entries(aux_row_pointers, aux_latents, aux_values, decoder_weight,
                            r, decoder_weight.shape[0], start, error)
        squares = np.float32(0.0)
        for o in range(n_outputs):
            squares += error[o] * error[o]
        total += squares
        _entry_gradients(
            error, r, start, end, aux_latents, aux_values, decoder_weight, centred,
            grad_decoder_weight, grad_encoder_weight_t, grad_encoder_bias, aux_factor,
            encoder_weight_t, row_input,
        )
        if masked_centring:
            _centring_gradient(r, keep, keep_scale, row_input, grad_decoder_bias)
    return total


@njit(nogil=True, cache=True, fastmath=_FAST)
def backward(mse, grad_linear, target, level_factors, level_sizes,
             row_pointers, latents, values,
             aux_row_pointers, aux_latents, aux_values, aux_scale, deviation,
             decoder_weight, decoder_bias, encoder_weight, centred, tied,
             grad_encoder_weight, grad_encoder_bias, grad_decoder_weight,
             grad_decoder_bias, level_sums, keep, keep_scale, hidden_loss, level_bits):
    """Gradients of all parameters, in one pass over the rows of the batch.

    The gradient of the weighted loss of level ``l`` with respect to its
    linear predictor is ``g_l * level_factors[l]``. With ``mse``, the levels
    are decoded here and ``g_l`` is their residual (``grad_linear`` is not
    read); the sums of their squares go to ``level_sums``. Otherwise
    ``g_l = grad_linear[l]``. Band ``b`` feeds every level ``l >= b``, so
    its gradient is the reverse cumulative sum of those.

    With auxiliary entries (``aux_row_pointers`` not empty), their decoding
    reconstructs the residual ``-deviation`` of the full model (a constant),
    with the loss ``aux_scale * ||error||^2 / ||deviation||^2``.
    ``deviation`` (full-model output minus target) is written with ``mse``
    and read otherwise. The decoder-weight gradient is returned without its
    component along each (unit-norm) decoder row. The gradient arrays and
    ``level_sums`` are overwritten.

    Masked training: ``keep`` (empty, or shaped like ``centred``: True where
    an input entry was kept, its centred value multiplied by
    ``keep_scale``, 0 where hidden; ``centred`` is that masked input). With
    ``hidden_loss`` (an autoencoder) and ``mse``, only the hidden entries'
    squared errors count, and ``level_sums`` sum those (the count losses
    carry their weights in ``grad_linear``). A tied centring gets its
    gradient through the mask.

    A per-level ``k``: ``level_bits`` (empty, or one per entry) says which
    levels selected each entry; each level decodes its own entries.

    Returns the auxiliary loss and the squared norm of all the gradients.
    """
    n_latents, n_outputs = decoder_weight.shape
    n_inputs = centred.shape[1]
    use_aux = aux_row_pointers.shape[0] > 0
    # tied centring of a masked input: the centring gradient row by row
    masked_centring = tied and keep.shape[0] > 0
    if masked_centring:
        encoder_weight_t = np.ascontiguousarray(encoder_weight.T)
    else:
        encoder_weight_t = np.empty((0, 0), np.float32)
    grad_decoder_weight[:] = 0.0
    grad_encoder_weight_t = np.zeros((n_latents, n_inputs), np.float32)
    encoder_bias_sum = np.zeros(n_latents, np.float64)
    decoder_bias_sum = np.zeros(n_outputs, np.float64)
    level_sums[:] = 0.0
    energy = _rows_pass(
        mse, grad_linear, target, level_factors.astype(np.float32), level_sizes,
        row_pointers, latents, values, decoder_weight, decoder_bias, centred,
        deviation, grad_decoder_weight,
        grad_encoder_weight_t, encoder_bias_sum, decoder_bias_sum, level_sums,
        keep, keep_scale, hidden_loss and mse, masked_centring, encoder_weight_t,
        level_bits,
    )
    aux_loss = 0.0
    if use_aux:
        # the auxiliary loss is normalised by the energy of the residual, so
        # its entries come in a second pass
        energy = max(energy, 1e-12)
        squares = _aux_pass(
            aux_row_pointers, aux_latents, aux_values, deviation,
            np.float32(2.0 * aux_scale / energy), decoder_weight, centred,
            grad_decoder_weight, grad_encoder_weight_t, encoder_bias_sum,
            keep, keep_scale, masked_centring, encoder_weight_t, decoder_bias_sum,
        )
        aux_loss = aux_scale * squares / energy

    # the squared norm of all the gradients, for clipping
    squared_norm = 0.0
    for j in range(n_latents):
        grad_encoder_bias[j] = encoder_bias_sum[j]
        squares = np.float32(grad_encoder_bias[j]) ** 2
        for i in range(n_inputs):
            squares += grad_encoder_weight_t[j, i] * grad_encoder_weight_t[j, i]
        squared_norm += squares
    for i in range(n_inputs):
        for j in range(n_latents):
            grad_encoder_weight[i, j] = grad_encoder_weight_t[j, i]
    if tied and not masked_centring:
        # x - b_dec feeds the encoder: chain rule through the centring
        for o in range(n_outputs):
            total = 0.0
            for j in range(n_latents):
                total += encoder_weight[o, j] * encoder_bias_sum[j]
            decoder_bias_sum[o] -= total
    for o in range(n_outputs):
        grad_decoder_bias[o] = decoder_bias_sum[o]
        squared_norm += np.float64(grad_decoder_bias[o]) ** 2
    # unit-norm decoder rows: drop the gradient component along each row
    for j in range(n_latents):
        radial = np.float32(0.0)
        for o in range(n_outputs):
            radial += grad_decoder_weight[j, o] * decoder_weight[j, o]
        squares = np.float32(0.0)
        for o in range(n_outputs):
            value = grad_decoder_weight[j, o] - radial * decoder_weight[j, o]
            grad_decoder_weight[j, o] = value
            squares += value * value
        squared_norm += squares
    return aux_loss, squared_norm


@njit(nogil=True, cache=True, fastmath=_FAST)
def normalise_rows(matrix):
    """Divide every row by its Euclidean norm (at least 1e-12), in place."""
    for j in range(matrix.shape[0]):
        squares = np.float32(0.0)
        for o in range(matrix.shape[1]):
            squares += matrix[j, o] * matrix[j, o]
        norm = max(np.sqrt(squares), np.float32(1e-12))
        for o in range(matrix.shape[1]):
            matrix[j, o] /= norm


@njit(nogil=True, cache=True)
def append_above(values, floor, buffer, fill):
    """Append the ``values`` above ``floor`` to ``buffer[fill:]`` in order.

    Stops when the buffer is full; returns the new fill and how many of the
    ``values`` were visited (all of them unless the buffer filled up).
    """
    capacity = buffer.shape[0]
    for i in range(values.shape[0]):
        value = values[i]
        if value > floor:
            if fill == capacity:
                return fill, i
            buffer[fill] = value
            fill += 1
    return fill, values.shape[0]
