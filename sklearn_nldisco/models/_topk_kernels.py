"""The per-row top-k bookkeeping shared by the coding and training kernels.

A row's best ``k`` values are kept in a short list in descending order
(``insert_descending``), then put back in ascending index order
(``sort_by_index``), so that selections are CSR-ordered and ties keep the
lower index, in training and at inference alike.
"""

from numba import njit


@njit(nogil=True, cache=True, inline="always")
def insert_descending(best_values, best_index, count, k, value, index):
    """Insert ``value`` (at ``index``) into the descending list of the best
    ``count`` so far (at most ``k``); returns the new count. The caller
    only offers values above the current k-th best once the list is full."""
    position = count if count < k else k - 1
    while position > 0 and best_values[position - 1] < value:
        if position < k:
            best_values[position] = best_values[position - 1]
            best_index[position] = best_index[position - 1]
        position -= 1
    best_values[position] = value
    best_index[position] = index
    return count + 1 if count < k else count


@njit(nogil=True, cache=True, inline="always")
def sort_by_index(best_index, best_values, count):
    """The first ``count`` entries in ascending index order (insertion sort:
    ``count`` is small)."""
    for a in range(1, count):
        index = best_index[a]
        value = best_values[a]
        b = a - 1
        while b >= 0 and best_index[b] > index:
            best_index[b + 1] = best_index[b]
            best_values[b + 1] = best_values[b]
            b -= 1
        best_index[b + 1] = index
        best_values[b + 1] = value
