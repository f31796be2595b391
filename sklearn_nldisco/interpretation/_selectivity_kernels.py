"""Compiled per-latent kernels of the selectivity scorer.

Each latent's statistics only need the bins where it is active (or non-zero),
so the kernels walk the columns of a CSC matrix. One thread computes one
latent from start to end, and every latent sees the same null draws, so
results never depend on the number of threads.

The kernels are serial and release the GIL; ``_over_blocks`` runs them on
contiguous blocks of latents in as many Python threads as
``numba.get_num_threads()`` (so ``n_threads`` limits apply). They replace
``parallel=True`` kernels, whose compilation took two to three times as
long and was paid by the first run of the command (see
``benchmarks/bench_cold_start.py``). ``error_model="numpy"`` is what the
body of a ``prange`` loop was compiled with: no zero-division checks in
the loops, which kept the serial kernels about 15 % slower without it.
"""

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

CIRCULAR = 0
TRIAL = 1
_BLOCKS_PER_THREAD = 16


@njit(nogil=True, cache=True)
def _selectivity(count_during, n_active_valid, n_during, n_valid):
    # P(active | c) / (P(active | c) + P(active | not c)); 0.5 when the
    # latent is never active in the variable's valid bins
    frac_during = count_during / n_during
    frac_outside = (n_active_valid - count_during) / (n_valid - n_during)
    total = frac_during + frac_outside
    if total <= 0.0:
        return 0.5
    return frac_during / total


def _over_blocks(kernel, n_items, *args):
    """Call ``kernel(start, stop, *args)`` on contiguous blocks of ``range(n_items)``
    in ``numba.get_num_threads()`` threads.

    Several blocks per thread, taken in turn by whichever thread is free,
    since latents differ in work (active bins, open pairs). Each latent is
    computed by one thread, so results do not depend on the split.
    """
    n_threads = max(1, min(numba.get_num_threads(), n_items))
    if n_threads == 1:
        kernel(0, n_items, *args)
        return
    n_blocks = min(n_items, _BLOCKS_PER_THREAD * n_threads)
    bounds = [n_items * block // n_blocks for block in range(n_blocks + 1)]
    with ThreadPoolExecutor(n_threads) as pool:
        futures = [pool.submit(kernel, bounds[block], bounds[block + 1], *args)
                   for block in range(n_blocks)]
        for future in futures:
            future.result()


def observed_active_counts(indptr, indices, labels, condition_offset, n_conditions):
    """Active bins of each unit in each condition, and in each variable's valid bins.

    Parameters
    ----------
    indptr, indices : ndarray of int
        CSC structure of the activity indicator (n_samples, n_units).
    labels : ndarray of shape (n_samples, n_variables), small int
        Condition of each bin within each variable, -1 where the variable
        is not defined.
    condition_offset : ndarray of shape (n_variables,)
        First condition of each variable.
    n_conditions : int

    Returns
    -------
    counts : ndarray of shape (n_units, n_conditions)
    active_valid : ndarray of shape (n_units, n_variables)
    """
    n_units = indptr.shape[0] - 1
    counts = np.zeros((n_units, n_conditions), dtype=np.int64)
    active_valid = np.zeros((n_units, labels.shape[1]), dtype=np.int64)
    _over_blocks(_observed_active_counts, n_units, indptr, indices, labels,
                 condition_offset, counts, active_valid)
    return counts, active_valid


@njit(nogil=True, cache=True, error_model="numpy")
def _observed_active_counts(unit_start, unit_stop, indptr, indices, labels,
                            condition_offset, counts, active_valid):
    """``observed_active_counts`` of the units ``unit_start:unit_stop``, in place."""
    n_variables = labels.shape[1]
    for unit in range(unit_start, unit_stop):
        for pointer in range(indptr[unit], indptr[unit + 1]):
            source = indices[pointer]
            for variable in range(n_variables):
                label = labels[source, variable]
                if label >= 0:
                    counts[unit, condition_offset[variable] + label] += 1
                    active_valid[unit, variable] += 1


def null_exceedances(indptr, indices, units, labels, condition_variable, condition_offset,
                     condition_sizes, valid_sizes, observed, active_valid, null_mode,
                     coordinates, positions, null_labels, label_start, shifts,
                     permutations, trial_offset, trial_start, trial_length, first_draw,
                     min_draws, max_draws, stop_exceedances, is_open, exceedances,
                     n_draws, with_moments, null_sums, null_sum_squares):
    """Run one chunk of null draws for the open pairs of some units, in place.

    The null of a variable is restricted to the bins where it is defined:
    a unit's active bins that are valid for the variable keep being valid,
    so the number of active valid bins is the same in every draw and a
    draw's selectivity exceeds the observed one exactly when its count in
    the condition does. A pair (unit, condition) takes draws until it has
    ``stop_exceedances`` draws at least as extreme as observed (after
    ``min_draws``) or ``max_draws`` draws; then it closes.

    Parameters
    ----------
    indptr, indices : ndarray of int
        CSC structure of the activity indicator (n_samples, n_units).
    units : ndarray of int
        The units to run (those with an open pair).
    labels : ndarray of shape (n_samples, n_variables), small int
        Condition of each bin within each variable, -1 where undefined.
    condition_variable : ndarray of shape (n_conditions,)
        Variable of each condition.
    condition_offset : ndarray of shape (n_variables + 1,)
        First condition of each variable, then the number of conditions.
    condition_sizes : ndarray of shape (n_conditions,)
        Bins in each condition.
    valid_sizes : ndarray of shape (n_variables,)
        Bins where each variable is defined.
    observed : ndarray of shape (n_units, n_conditions)
        Observed active bins in each condition.
    active_valid : ndarray of shape (n_units, n_variables)
        Active bins where each variable is defined.
    null_mode : int
        ``CIRCULAR`` or ``TRIAL``.
    coordinates : ndarray of shape (n_samples, n_variables), int32
        Circular: rank of the bin among the variable's valid bins. Trial:
        the bin's trial among the variable's trials. -1 where the variable
        is undefined (circular) or the bin is outside the variable's trials
        (trial: it keeps its own label).
    positions : ndarray of shape (n_samples, n_variables), int32
        Trial: rank of the bin among its trial's valid bins. Unused for the
        circular null.
    null_labels : ndarray of int
        Per variable, the labels of its valid bins in the order of
        ``coordinates`` (circular: in time; trial: trial after trial).
    label_start : ndarray of shape (n_variables + 1,)
        Where each variable's labels start in ``null_labels``.
    shifts : ndarray of shape (n_chunk, n_variables)
        Circular: the shift of each draw, in ``[0, valid_sizes[variable])``.
    permutations : ndarray of shape (n_chunk, n_trial_columns), int32
        Trial: for each draw and variable, its trials permuted (columns
        ``trial_offset[v]:trial_offset[v + 1]``).
    trial_offset : ndarray of shape (n_variables + 1,)
    trial_start, trial_length : ndarray of int
        Per variable and trial: first index of its labels within the
        variable's labels in ``null_labels``, and their number.
    first_draw : int
        Draws each open pair has taken before this chunk.
    min_draws, stop_exceedances : int
    max_draws : ndarray of shape (n_variables,)
        The stopping rule: a pair stops after ``max_draws`` of its variable,
        or after ``min_draws`` once it has ``stop_exceedances``.
    is_open : ndarray of shape (n_units, n_conditions), bool
        Updated in place.
    exceedances, n_draws : ndarray of shape (n_units, n_conditions), int64
        Draws at least as extreme as observed, draws taken; updated in place.
    with_moments : bool
        Whether to accumulate ``null_sums`` and ``null_sum_squares``.
    null_sums, null_sum_squares : ndarray of shape (n_units, n_conditions)
        Sum and sum of squares of the null selectivities; updated in place.
    """
    _over_blocks(_null_exceedances, units.shape[0], indptr, indices, units, labels,
                 condition_variable, condition_offset, condition_sizes, valid_sizes,
                 observed, active_valid, null_mode, coordinates, positions, null_labels,
                 label_start, shifts, permutations, trial_offset, trial_start,
                 trial_length, first_draw, min_draws, max_draws, stop_exceedances,
                 is_open, exceedances, n_draws, with_moments, null_sums, null_sum_squares)


@njit(nogil=True, cache=True, error_model="numpy")
def _null_exceedances(index_start, index_stop, indptr, indices, units, labels,
                      condition_variable, condition_offset, condition_sizes, valid_sizes,
                      observed, active_valid, null_mode, coordinates, positions,
                      null_labels, label_start, shifts, permutations, trial_offset,
                      trial_start, trial_length, first_draw, min_draws, max_draws,
                      stop_exceedances, is_open, exceedances, n_draws, with_moments,
                      null_sums, null_sum_squares):
    """``null_exceedances`` of ``units[index_start:index_stop]``, in place."""
    n_variables = labels.shape[1]
    n_conditions = condition_variable.shape[0]
    n_chunk = max(shifts.shape[0], permutations.shape[0])
    for index in range(index_start, index_stop):
        unit = units[index]
        start = indptr[unit]
        n_active = indptr[unit + 1] - start
        variable_open = np.zeros(n_variables, dtype=np.bool_)
        for condition in range(n_conditions):
            if is_open[unit, condition]:
                variable_open[condition_variable[condition]] = True
        # the active bins' coordinates in each open variable, read once
        unit_coordinates = np.empty((n_variables, n_active), dtype=np.int32)
        unit_positions = np.empty((n_variables, n_active), dtype=np.int32)
        n_moving = np.zeros(n_variables, dtype=np.int64)
        fixed = np.zeros(n_conditions, dtype=np.int64)
        for variable in range(n_variables):
            if not variable_open[variable]:
                continue
            for pointer in range(n_active):
                source = indices[start + pointer]
                coordinate = coordinates[source, variable]
                if coordinate >= 0:
                    unit_coordinates[variable, n_moving[variable]] = coordinate
                    unit_positions[variable, n_moving[variable]] = positions[source, variable]
                    n_moving[variable] += 1
                elif null_mode == TRIAL:
                    label = labels[source, variable]
                    if label >= 0:  # outside the trials: keeps its label
                        fixed[condition_offset[variable] + label] += 1
        counts = np.zeros(n_conditions, dtype=np.int64)
        for draw in range(n_chunk):
            draw_number = first_draw + draw + 1
            any_open = False
            for variable in range(n_variables):
                if not variable_open[variable]:
                    continue
                first = condition_offset[variable]
                last = condition_offset[variable + 1]
                for condition in range(first, last):
                    counts[condition] = fixed[condition]
                base = label_start[variable]
                if null_mode == CIRCULAR:
                    shift = shifts[draw, variable]
                    n_valid = valid_sizes[variable]
                    for pointer in range(n_moving[variable]):
                        source = unit_coordinates[variable, pointer] + shift
                        if source >= n_valid:
                            source -= n_valid
                        counts[first + null_labels[base + source]] += 1
                else:
                    offset = trial_offset[variable]
                    for pointer in range(n_moving[variable]):
                        other = offset + permutations[draw, offset
                                                      + unit_coordinates[variable, pointer]]
                        position = unit_positions[variable, pointer]
                        length = trial_length[other]
                        if position >= length:
                            position = position % length
                        counts[first + null_labels[base + trial_start[other] + position]] += 1
                still_open = False
                for condition in range(first, last):
                    if not is_open[unit, condition]:
                        continue
                    if counts[condition] >= observed[unit, condition]:
                        exceedances[unit, condition] += 1
                    if with_moments:
                        value = _selectivity(counts[condition], active_valid[unit, variable],
                                             condition_sizes[condition], valid_sizes[variable])
                        null_sums[unit, condition] += value
                        null_sum_squares[unit, condition] += value * value
                    n_draws[unit, condition] = draw_number
                    if draw_number >= max_draws[variable] or (
                            draw_number >= min_draws
                            and exceedances[unit, condition] >= stop_exceedances):
                        is_open[unit, condition] = False
                    else:
                        still_open = True
                variable_open[variable] = still_open
                any_open = any_open or still_open
            if not any_open:
                break


def magnitude_rank_sums(indptr, indices, values, labels, condition_offset, n_conditions):
    """Per condition: non-zero bins, their rank sum among non-zero bins, their sum.

    Ranks are mid-ranks among the non-zero values of the bins with a label
    in the condition's variable, so that with the zeros (all tied below) they
    give the Mann-Whitney statistic.

    Returns
    -------
    nonzero_counts, rank_sums, value_sums : ndarray of shape (n_units, n_conditions)
    nonzero_valid : ndarray of shape (n_units, n_variables)
    """
    n_units = indptr.shape[0] - 1
    nonzero_counts = np.zeros((n_units, n_conditions), dtype=np.int64)
    rank_sums = np.zeros((n_units, n_conditions), dtype=np.float64)
    value_sums = np.zeros((n_units, n_conditions), dtype=np.float64)
    nonzero_valid = np.zeros((n_units, labels.shape[1]), dtype=np.int64)
    _over_blocks(_magnitude_rank_sums, n_units, indptr, indices, values, labels,
                 condition_offset, nonzero_counts, rank_sums, value_sums, nonzero_valid)
    return nonzero_counts, rank_sums, value_sums, nonzero_valid


@njit(nogil=True, cache=True, error_model="numpy")
def _magnitude_rank_sums(unit_start, unit_stop, indptr, indices, values, labels,
                         condition_offset, nonzero_counts, rank_sums, value_sums,
                         nonzero_valid):
    """``magnitude_rank_sums`` of the units ``unit_start:unit_stop``, in place."""
    n_variables = labels.shape[1]
    for unit in range(unit_start, unit_stop):
        start = indptr[unit]
        stop = indptr[unit + 1]
        unit_values = values[start:stop]
        order = np.argsort(unit_values, kind="mergesort")
        ranks_so_far = np.zeros(n_variables, dtype=np.int64)
        in_group = np.zeros(n_variables, dtype=np.int64)
        group_start = 0
        n_values = stop - start
        while group_start < n_values:
            group_stop = group_start + 1
            value = unit_values[order[group_start]]
            while group_stop < n_values and unit_values[order[group_stop]] == value:
                group_stop += 1
            in_group[:] = 0
            for position in range(group_start, group_stop):
                bin_index = indices[start + order[position]]
                for variable in range(n_variables):
                    if labels[bin_index, variable] >= 0:
                        in_group[variable] += 1
            for position in range(group_start, group_stop):
                bin_index = indices[start + order[position]]
                for variable in range(n_variables):
                    label = labels[bin_index, variable]
                    if label >= 0:
                        condition = condition_offset[variable] + label
                        nonzero_counts[unit, condition] += 1
                        rank_sums[unit, condition] += (
                            ranks_so_far[variable] + (in_group[variable] + 1) / 2.0
                        )
                        value_sums[unit, condition] += value
            for variable in range(n_variables):
                ranks_so_far[variable] += in_group[variable]
            group_start = group_stop
        for variable in range(n_variables):
            nonzero_valid[unit, variable] = ranks_so_far[variable]
