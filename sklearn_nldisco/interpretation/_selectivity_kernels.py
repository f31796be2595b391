"""Compiled per-latent kernels of the selectivity scorer.

Each latent's statistics only need the bins where it is active (or non-zero),
so the kernels walk the columns of a CSC matrix. One thread computes one
latent from start to end, so results never depend on the number of threads.
"""

import numpy as np
from numba import njit, prange

# Relative tolerance under which a null selectivity counts as equal to the
# observed one: equal counts must tie whatever the rounding.
_TIE_TOLERANCE = 1e-12


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


@njit(parallel=True, cache=True)
def active_counts_and_exceedances(indptr, indices, labels, condition_variable,
                                  condition_offset, condition_sizes, valid_sizes,
                                  null_mode, shifts, permutations, trial_and_position,
                                  trial_layout, trial_bins, contiguous_trials):
    """Observed active counts per condition and how often the null matches them.

    Parameters
    ----------
    indptr, indices : ndarray of int
        CSC structure of the activity indicator (n_samples, n_units).
    labels : ndarray of shape (n_samples, n_variables), small int
        Condition of each bin within each variable, -1 where excluded.
    condition_variable, condition_offset : ndarray of int
        Variable of each condition, first condition of each variable.
    condition_sizes : ndarray of shape (n_conditions,)
        Bins in each condition.
    valid_sizes : ndarray of shape (n_variables,)
        Bins with a label in each variable.
    null_mode : int
        0: circular shifts (``shifts``); 1: trial permutations.
    shifts : ndarray of shape (n_draws,)
    permutations : ndarray of shape (n_draws, n_trials)
    trial_and_position : ndarray of shape (n_samples, 2), int32
        Trial of each bin (-1 outside trials) and rank of the bin in its
        trial, side by side so that one cache line holds both.
    trial_layout : ndarray of shape (n_trials, 3), int64
        Per trial: offset of its bins in ``trial_bins``, number of bins, and
        first bin (used when the trials are contiguous).
    trial_bins : ndarray of int
        The bins of each trial, trial after trial.
    contiguous_trials : bool
        Whether the bins of each trial are consecutive, which spares reading
        ``trial_bins``.

    Returns
    -------
    counts : ndarray of shape (n_units, n_conditions)
        Active bins in each condition.
    active_valid : ndarray of shape (n_units, n_variables)
        Active bins with a label in each variable.
    exceedances : ndarray of shape (n_units, n_conditions)
        Null draws whose selectivity is at least the observed one.
    null_means, null_stds : ndarray of shape (n_units, n_conditions)
        Mean and standard deviation of the null selectivities.
    """
    n_units = indptr.shape[0] - 1
    n_samples, n_variables = labels.shape
    n_conditions = condition_variable.shape[0]
    n_draws = max(shifts.shape[0], permutations.shape[0])
    counts_out = np.zeros((n_units, n_conditions), dtype=np.int64)
    active_valid_out = np.zeros((n_units, n_variables), dtype=np.int64)
    exceedances = np.zeros((n_units, n_conditions), dtype=np.int64)
    null_means = np.zeros((n_units, n_conditions), dtype=np.float64)
    null_stds = np.zeros((n_units, n_conditions), dtype=np.float64)
    for unit in prange(n_units):
        counts = np.zeros(n_conditions, dtype=np.int64)
        active_valid = np.zeros(n_variables, dtype=np.int64)
        observed = np.zeros(n_conditions, dtype=np.float64)
        n_exceed = np.zeros(n_conditions, dtype=np.int64)
        null_sum = np.zeros(n_conditions, dtype=np.float64)
        null_sum_squares = np.zeros(n_conditions, dtype=np.float64)
        start = indptr[unit]
        stop = indptr[unit + 1]
        unit_bins = indices[start:stop]
        if null_mode == 1:
            # read once, not once per draw: the layout of the active bins
            unit_trials = np.empty(stop - start, dtype=np.int32)
            unit_positions = np.empty(stop - start, dtype=np.int32)
            for pointer in range(stop - start):
                unit_trials[pointer] = trial_and_position[unit_bins[pointer], 0]
                unit_positions[pointer] = trial_and_position[unit_bins[pointer], 1]
        else:
            unit_trials = np.empty(0, dtype=np.int32)
            unit_positions = np.empty(0, dtype=np.int32)
        # one draw at a time: the active bins are sorted, so the labels are
        # read in increasing order, and the counts stay in the L1 cache
        for draw in range(n_draws):
            counts[:] = 0
            active_valid[:] = 0
            if null_mode == 0:
                shift = shifts[draw]
                for pointer in range(start, stop):
                    source = indices[pointer] + shift
                    if source >= n_samples:
                        source -= n_samples
                    for variable in range(n_variables):
                        label = labels[source, variable]
                        if label >= 0:
                            counts[condition_offset[variable] + label] += 1
                            active_valid[variable] += 1
            else:
                permutation = permutations[draw]
                for pointer in range(stop - start):
                    source = unit_bins[pointer]
                    trial = unit_trials[pointer]
                    if draw > 0 and trial >= 0:
                        # the bin at the same position of the trial drawn in its place
                        other = permutation[trial]
                        length = trial_layout[other, 1]
                        position = unit_positions[pointer]
                        if position >= length:
                            position = position % length
                        if contiguous_trials:
                            source = trial_layout[other, 2] + position
                        else:
                            source = trial_bins[trial_layout[other, 0] + position]
                    for variable in range(n_variables):
                        label = labels[source, variable]
                        if label >= 0:
                            counts[condition_offset[variable] + label] += 1
                            active_valid[variable] += 1
            for condition in range(n_conditions):
                variable = condition_variable[condition]
                value = _selectivity(counts[condition], active_valid[variable],
                                     condition_sizes[condition], valid_sizes[variable])
                if draw == 0:
                    observed[condition] = value
                    counts_out[unit, condition] = counts[condition]
                else:
                    if value >= observed[condition] * (1.0 - _TIE_TOLERANCE):
                        n_exceed[condition] += 1
                    null_sum[condition] += value
                    null_sum_squares[condition] += value * value
            if draw == 0:
                for variable in range(n_variables):
                    active_valid_out[unit, variable] = active_valid[variable]
        for condition in range(n_conditions):
            exceedances[unit, condition] = n_exceed[condition]
            if n_draws > 1:
                mean = null_sum[condition] / (n_draws - 1)
                variance = null_sum_squares[condition] / (n_draws - 1) - mean * mean
                null_means[unit, condition] = mean
                null_stds[unit, condition] = np.sqrt(max(variance, 0.0))
    return counts_out, active_valid_out, exceedances, null_means, null_stds


@njit(parallel=True, cache=True)
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
    n_variables = labels.shape[1]
    nonzero_counts = np.zeros((n_units, n_conditions), dtype=np.int64)
    rank_sums = np.zeros((n_units, n_conditions), dtype=np.float64)
    value_sums = np.zeros((n_units, n_conditions), dtype=np.float64)
    nonzero_valid = np.zeros((n_units, n_variables), dtype=np.int64)
    for unit in prange(n_units):
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
    return nonzero_counts, rank_sums, value_sums, nonzero_valid
