"""Selectivity of latents for behavioural conditions, with a null model that respects time."""

import numbers

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import false_discovery_control, norm
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ._conditions import discretise
from ._selectivity_kernels import active_counts_and_exceedances, magnitude_rank_sums
from ..models import check_level_sizes
from ._validation import _check_activity_threshold, _check_n_top

# Columns of ``bin_metadata`` that describe the bins rather than the behaviour.
_BOOKKEEPING_COLUMNS = ("bin_start", "bin_stop", "interval_id", "trial_id", "split", "event")


class SelectivityScorer(BaseEstimator):
    """Which latents fire selectively for which behavioural conditions.

    For every latent and every condition ``c`` (a value of a discrete
    variable, a quantile bin of a continuous one, or an angular sector) it
    computes the selectivity

        ``selectivity = P(active | c) / (P(active | c) + P(active | not c))``

    (0.5: no preference, 1: active only in ``c``), a magnitude-aware effect
    (the AUROC of the activation for ``c`` against not ``c``), and a
    p-value from a null model that keeps the time structure of both the
    latent and the behaviour, with Benjamini-Hochberg q-values over every
    pair tested.

    The same object is a scikit-learn scorer: ``scorer(estimator, X, y)``
    with ``y`` the per-bin metadata returns the fraction of selective
    latents, so that a grid search can select models by interpretability.

    **Active.** For non-negative codes (sparse autoencoders, NMF) a latent is
    active where its value exceeds ``activity_threshold`` (0: non-zero). For
    signed codes (PCA, ICA) each latent ``i`` is split into two tested
    units, ``sign=+1`` (its positive part ``max(z, 0)``) and ``sign=-1``
    (``max(-z, 0)``); the unit is active where that part exceeds the
    latent's ``signed_quantile`` quantile of ``|z|`` over all bins (0.9:
    roughly the 10 % of bins where the latent is strongest, split between
    the two signs).

    **Null model.** ``null="circular"`` shifts the latent's time course
    against the metadata by a random offset in ``[min_shift, n - min_shift]``
    bins, wrapping around the end of the concatenated bins: each latent keeps
    its autocorrelation, each variable its own. ``null="trial"`` permutes
    whole trials (``trial_column``): the bins of trial ``i`` take the labels
    of trial ``pi(i)`` at the same position within the trial (wrapping when
    ``pi(i)`` is shorter), which for a trial-level variable is exactly a
    permutation of the trials' labels; bins outside trials keep their labels.
    The null statistic is the selectivity. The p-value is one-sided, for
    "more active in ``c`` than outside":
    ``p = (1 + #{draws with selectivity >= observed}) / (1 + n_permutations)``.
    The AUROC is computed on the observed data only.

    **Resolution.** An empirical p-value is at least ``1 / (1 +
    n_permutations)``, so with ``m`` tests Benjamini-Hochberg can only
    reach ``q < alpha`` when more than ``m / (alpha (1 + n_permutations))``
    pairs are discoveries (with 1,024 latents x 50 conditions and 200
    draws: more than 5,000). The default, ``p_value="gaussian"``, therefore
    extrapolates the tail: ``p = P(N(mu, sigma) >= observed)`` with ``mu``
    and ``sigma`` the mean and standard deviation of the null selectivities
    (the empirical p where the null has no spread). It resolves small
    p-values with few draws, at the price of assuming a normal tail; the
    tests check that it stays calibrated under the null (uniform p-values,
    false discoveries within the FDR). ``p_value="empirical"`` makes no
    assumption and needs many more draws.

    **Conditions.** Discrete variables (object, categorical, boolean or
    integer columns with at most ``max_categories`` values) give one
    condition per value. Other numeric columns are cut at their quantiles
    into ``n_bins`` bins ``[low, high)`` (the last closed; tied quantiles
    merge bins), computed from the metadata being scored. Angle variables
    (``angle_variables``, in degrees) are cut into ``n_bins`` equal sectors
    of the circle starting at -180. A bin whose value is missing counts
    neither in ``c`` nor in not ``c`` for that variable. Conditions without
    bins (e.g. empty sectors) are dropped; a variable with fewer than two
    conditions is not tested.
    :func:`~sklearn_nldisco.interpretation.plot_feature_card` draws the same
    conditions.

    Parameters
    ----------
    variables : sequence of str, default=None
        Metadata columns to test. None tests every column but ``bin_start``,
        ``bin_stop``, ``interval_id``, ``trial_id``, ``split``, ``event`` and
        ``trial_column``.
    angle_variables : sequence of str, default=("direction_deg",)
        Columns that hold angles in degrees.
    n_bins : int or dict of str to int, default=10
        Bins per continuous or angle variable; a dict gives them per column
        (10 for the others).
    max_categories : int, default=64
        Integer columns with more distinct values are binned as continuous.
        Non-numeric columns with more raise a ``ValueError``.
    n_permutations : int, default=200
        Null draws per latent.
    null : {"circular", "trial"}, default="circular"
        The null model (see above).
    trial_column : str, default="trial_id"
        Column of trial ids for ``null="trial"``; missing values and
        negative ids (``bin_metadata`` gives -1) mark bins outside trials.
    min_shift : int, default=None
        Smallest circular shift in bins. None uses a tenth of the bins.
    activity_threshold : float, default=0.0
        Non-negative codes: a latent is active where its value exceeds it.
    signed : {"auto", True, False}, default="auto"
        Whether the codes are signed; "auto" is True when any value is negative.
    signed_quantile : float, default=0.9
        Signed codes: quantile of ``|z|`` above which a part is active.
    alpha : float, default=0.05
        q-value below which a pair counts as significant for the score.
    min_selectivity : float, default=0.6
        Selectivity from which a significant pair counts for the score.
    min_activation_frac : float, default=0.1
        ``frac_during`` from which a pair counts for the score (the
        published method drops pairs below 0.1).
    p_value : {"gaussian", "empirical"}, default="gaussian"
        How the p-value is read from the null draws (see above).
    level_sizes : sequence of int, default=None
        Nested level sizes; adds a ``level`` column (the first level that
        contains the latent). In a grid search, None uses the estimator's
        ``level_sizes_`` when it has one.
    random_state : int, RandomState instance or None, default=None
        Seeds the null draws; a fixed value gives identical results.

    See Also
    --------
    top_selective_latents : Filter and rank the result table.

    Notes
    -----
    The score returned by ``scorer(estimator, X, y)`` is the fraction of
    latents (original latents, not signed parts; dead latents included) that
    have at least one condition with ``q < alpha``, ``selectivity >=
    min_selectivity`` and ``frac_during >= min_activation_frac``. Being a
    fraction it does not grow with the number of latents. q-values are
    computed over every tested pair, before any filtering.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn_nldisco.interpretation._selectivity import SelectivityScorer
    >>> phase = np.where(np.sin(np.arange(2000) / 7.0) > 0, "move", "rest")
    >>> metadata = pd.DataFrame({"phase": phase})
    >>> codes = np.zeros((2000, 2))
    >>> codes[phase == "move", 0] = 1.0      # latent 0 fires during movement
    >>> codes[::7, 1] = 1.0                  # latent 1 ignores the phase
    >>> scorer = SelectivityScorer(n_permutations=99, random_state=0)
    >>> results = scorer.score_latents(codes, metadata)
    >>> results[["latent", "condition", "selectivity", "frac_during", "frac_outside"]].round(2)
       latent condition  selectivity  frac_during  frac_outside
    0       0      move          1.0         1.00          0.00
    1       0      rest          0.0         0.00          1.00
    2       1      move          0.5         0.14          0.14
    3       1      rest          0.5         0.14          0.14
    >>> bool(results["p"][0] < 0.05), bool(results["p"][2] < 0.05)
    (True, False)
    >>> float(scorer.score_from_results(results, n_latents=2))
    0.5
    """

    def __init__(self, variables=None, *, angle_variables=("direction_deg",), n_bins=10,
                 max_categories=64, n_permutations=200, null="circular",
                 trial_column="trial_id", min_shift=None, activity_threshold=0.0,
                 signed="auto", signed_quantile=0.9, alpha=0.05, min_selectivity=0.6,
                 min_activation_frac=0.1, p_value="gaussian", level_sizes=None,
                 random_state=None):
        self.variables = variables
        self.angle_variables = angle_variables
        self.n_bins = n_bins
        self.max_categories = max_categories
        self.n_permutations = n_permutations
        self.null = null
        self.trial_column = trial_column
        self.min_shift = min_shift
        self.activity_threshold = activity_threshold
        self.signed = signed
        self.signed_quantile = signed_quantile
        self.alpha = alpha
        self.min_selectivity = min_selectivity
        self.min_activation_frac = min_activation_frac
        self.p_value = p_value
        self.level_sizes = level_sizes
        self.random_state = random_state

    def score_latents(self, codes, metadata, level_sizes=None):
        """Selectivity, effect and significance of every latent for every condition.

        Parameters
        ----------
        codes : array-like or sparse matrix of shape (n_bins, n_latents)
            Latent activations, one row per bin.
        metadata : DataFrame of shape (n_bins, n_columns)
            Per-bin metadata in the same order as ``codes`` (e.g. from
            ``bin_metadata``); its index is ignored.
        level_sizes : sequence of int, default=None
            Overrides the ``level_sizes`` parameter.

        Returns
        -------
        results : DataFrame
            One row per (latent, sign, variable, condition), by latent, sign
            (+1 first), then variables and their conditions in order, with
            columns ``latent``, ``sign`` (+1, or -1 for the negative part of a signed
            latent), ``variable``, ``condition`` (the value, or ``"[low,
            high)"`` for a bin), ``selectivity``, ``effect`` (AUROC of the
            activation for ``c`` against not ``c``; 0.5 = none),
            ``mean_during``, ``mean_outside`` (mean activation over the bins
            in and out of ``c``, zeros included; for a signed latent, of the
            part ``max(sign * z, 0)``), ``frac_during``,
            ``frac_outside`` (fraction of those bins where the latent is
            active), ``n_during`` (bins in ``c``), ``p``, ``q`` (NaN for a
            latent never active in the variable's bins, which is not tested)
            and ``level`` when level sizes are given.
        """
        self._check_parameters()
        magnitude, active, n_latents, is_signed = _activity(
            codes, self.signed, self.signed_quantile, self.activity_threshold)
        metadata = _check_metadata(metadata, magnitude.shape[0])
        labels, condition_variable, condition_offset, table = self._conditions(metadata)
        n_samples = labels.shape[0]
        condition_sizes = np.zeros(len(table), dtype=np.int64)
        valid_sizes = np.zeros(labels.shape[1], dtype=np.int64)
        for variable in range(labels.shape[1]):
            column = labels[:, variable]
            counts = np.bincount(column[column >= 0], minlength=_n_conditions_of(
                condition_variable, variable))
            condition_sizes[condition_variable == variable] = counts
            valid_sizes[variable] = counts.sum()

        null_arrays = self._null_arrays(metadata, n_samples)
        null_statistics = active_counts_and_exceedances(
            active.indptr, active.indices, labels, condition_variable, condition_offset,
            condition_sizes, valid_sizes, *null_arrays)
        counts, active_valid, exceedances, null_means, null_stds = null_statistics
        nonzero_counts, rank_sums, value_sums, nonzero_valid = magnitude_rank_sums(
            magnitude.indptr, magnitude.indices, magnitude.data, labels, condition_offset,
            len(table))

        n_during = condition_sizes[None, :].astype(np.float64)
        n_valid = valid_sizes[condition_variable][None, :].astype(np.float64)
        n_outside = n_valid - n_during
        active_valid_c = active_valid[:, condition_variable]
        frac_during = counts / n_during
        frac_outside = (active_valid_c - counts) / n_outside
        total = frac_during + frac_outside
        tested = active_valid_c > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            selectivity = np.where(tested, frac_during / total, np.nan)
        p_values = (1.0 + exceedances) / (1.0 + self.n_permutations)
        if self.p_value == "gaussian":
            spread = null_stds > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                z_scores = (selectivity - null_means) / null_stds
            p_values = np.where(spread, norm.sf(z_scores), p_values)
        p_values = np.where(tested, p_values, np.nan)
        q_values = np.full_like(p_values, np.nan)
        if tested.any():
            q_values[tested] = false_discovery_control(p_values[tested], method="bh")

        # Mann-Whitney: zeros tie below every non-zero value
        n_zero = (n_valid - nonzero_valid[:, condition_variable])
        zero_during = n_during - nonzero_counts
        rank_sum_during = zero_during * (n_zero + 1) / 2 + nonzero_counts * n_zero + rank_sums
        effect = (rank_sum_during - n_during * (n_during + 1) / 2) / (n_during * n_outside)
        value_totals = np.zeros((value_sums.shape[0], labels.shape[1]))
        for variable in range(labels.shape[1]):
            value_totals[:, variable] = value_sums[:, condition_variable == variable].sum(1)
        mean_during = value_sums / n_during
        mean_outside = (value_totals[:, condition_variable] - value_sums) / n_outside

        n_units = counts.shape[0]
        n_conditions = len(table)
        if is_signed:
            latent = np.repeat(np.arange(n_latents), 2)
            sign = np.tile([1, -1], n_latents)
        else:
            latent = np.arange(n_latents)
            sign = np.ones(n_latents, dtype=np.int64)
        results = pd.DataFrame({
            "latent": np.repeat(latent, n_conditions),
            "sign": np.repeat(sign, n_conditions),
            "variable": np.tile(table["variable"].to_numpy(object), n_units),
            "condition": np.tile(table["condition"].to_numpy(object), n_units),
            "selectivity": selectivity.ravel(),
            "effect": effect.ravel(),
            "mean_during": mean_during.ravel(),
            "mean_outside": mean_outside.ravel(),
            "frac_during": frac_during.ravel(),
            "frac_outside": frac_outside.ravel(),
            "n_during": np.tile(condition_sizes, n_units),
            "p": p_values.ravel(),
            "q": q_values.ravel(),
        })
        level_sizes = self.level_sizes if level_sizes is None else level_sizes
        if level_sizes is not None:
            results["level"] = _latent_levels(results["latent"].to_numpy(), level_sizes,
                                              n_latents)
        return results

    def score_from_results(self, results, n_latents):
        """The scorer's number from a result table: the fraction of selective latents.

        Parameters
        ----------
        results : DataFrame
            Output of :meth:`score_latents`.
        n_latents : int
            Number of latents of the model (the denominator).

        Returns
        -------
        score : float
            Fraction of the latents with at least one condition where
            ``q < alpha``, ``selectivity >= min_selectivity`` and
            ``frac_during >= min_activation_frac``.
        """
        if n_latents < 1:
            raise ValueError(f"n_latents must be a positive int; got {n_latents!r}.")
        return results.loc[self.selective(results), "latent"].nunique() / n_latents

    def selective(self, results):
        """Which rows of a result table count as selective for the score.

        Parameters
        ----------
        results : DataFrame
            Output of :meth:`score_latents`.

        Returns
        -------
        selective : Series of bool
            ``q < alpha``, ``selectivity >= min_selectivity`` and
            ``frac_during >= min_activation_frac`` (False where untested).
        """
        return (
            (results["q"] < self.alpha)
            & (results["selectivity"] >= self.min_selectivity)
            & (results["frac_during"] >= self.min_activation_frac)
        )

    def __call__(self, estimator, X, y=None):
        """Score a fitted transformer by the fraction of its selective latents.

        Parameters
        ----------
        estimator : fitted transformer
            Its ``transform(X)`` gives the latent activations.
        X : array-like of shape (n_bins, n_features)
        y : DataFrame of shape (n_bins, n_columns)
            Per-bin metadata, passed as ``y`` to ``fit`` / ``GridSearchCV``.

        Returns
        -------
        score : float
            See :meth:`score_from_results`; higher is better.
        """
        if not isinstance(y, pd.DataFrame):
            raise TypeError(
                "SelectivityScorer needs the per-bin metadata DataFrame as y (e.g. "
                f"GridSearchCV(...).fit(X, metadata)); got {type(y).__name__}."
            )
        codes = estimator.transform(X)
        level_sizes = self.level_sizes
        if level_sizes is None:
            level_sizes = getattr(estimator, "level_sizes_", None)
        results = self.score_latents(codes, y, level_sizes=level_sizes)
        return self.score_from_results(results, codes.shape[1])

    # -- helpers -----------------------------------------------------------------

    def _check_parameters(self):
        if not isinstance(self.n_permutations, numbers.Integral) or self.n_permutations < 1:
            raise ValueError(
                f"n_permutations must be a positive int; got {self.n_permutations!r}.")
        if self.null not in ("circular", "trial"):
            raise ValueError(f"null must be 'circular' or 'trial'; got {self.null!r}.")
        if self.p_value not in ("empirical", "gaussian"):
            raise ValueError(
                f"p_value must be 'empirical' or 'gaussian'; got {self.p_value!r}.")
        if self.signed not in ("auto", True, False):
            raise ValueError(f"signed must be 'auto', True or False; got {self.signed!r}.")
        if not 0.0 < self.signed_quantile < 1.0:
            raise ValueError(
                f"signed_quantile must be in (0, 1); got {self.signed_quantile!r}.")
        if self.min_shift is not None and (
                not isinstance(self.min_shift, numbers.Integral) or self.min_shift < 1):
            raise ValueError(f"min_shift must be a positive int or None; got {self.min_shift!r}.")
        _check_activity_threshold(self.activity_threshold)

    def _conditions(self, metadata):
        if self.variables is None:
            skip = set(_BOOKKEEPING_COLUMNS) | {self.trial_column}
            variables = [column for column in metadata.columns if column not in skip]
        else:
            variables = list(self.variables)
            missing = [column for column in variables if column not in metadata.columns]
            if missing:
                raise ValueError(
                    f"variables {missing} are not columns of the metadata; its columns are "
                    f"{list(metadata.columns)}.")
        angle_variables = set(self.angle_variables or ())
        label_columns, rows = [], []
        for column in variables:
            conditions = discretise(metadata[column], column,
                                    is_angle=column in angle_variables, n_bins=self.n_bins,
                                    max_categories=self.max_categories)
            if len(conditions.names) < 2:
                continue
            variable = len(label_columns)
            label_columns.append(conditions.labels)
            rows.extend((variable, column, name) for name in conditions.names)
        if not label_columns:
            raise ValueError(
                "no metadata variable has two or more conditions to compare; got "
                f"variables {variables}.")
        table = pd.DataFrame(rows, columns=["variable_index", "variable", "condition"])
        condition_variable = table["variable_index"].to_numpy(np.int64)
        condition_offset = np.searchsorted(condition_variable, np.arange(len(label_columns)))
        max_label = max(len(names) for _, names in table.groupby("variable_index"))
        dtype = np.int8 if max_label < 127 else np.int32
        labels = np.ascontiguousarray(np.column_stack(label_columns).astype(dtype))
        return labels, condition_variable, condition_offset.astype(np.int64), table

    def _null_arrays(self, metadata, n_samples):
        rng = check_random_state(self.random_state)
        n_draws = self.n_permutations + 1
        empty_shifts = np.zeros(1, dtype=np.int64)
        empty_permutations = np.zeros((1, 1), dtype=np.int64)
        empty_layout = np.zeros(1, dtype=np.int64)
        if self.null == "circular":
            min_shift = max(1, n_samples // 10) if self.min_shift is None else self.min_shift
            if n_samples - 2 * min_shift < 0:
                raise ValueError(
                    f"min_shift={min_shift} leaves no circular shift for {n_samples} bins; "
                    f"it must be at most {n_samples // 2}.")
            shifts = np.zeros(n_draws, dtype=np.int64)
            shifts[1:] = rng.randint(min_shift, n_samples - min_shift + 1, size=n_draws - 1)
            shifts %= n_samples
            return (0, shifts, empty_permutations, np.zeros((1, 2), dtype=np.int32),
                    np.zeros((1, 3), dtype=np.int64), empty_layout, False)
        if self.trial_column not in metadata.columns:
            raise ValueError(
                f"null='trial' needs the trial column {self.trial_column!r} in the metadata; "
                f"its columns are {list(metadata.columns)}.")
        trial_of_bin, trial_ids = pd.factorize(_outside_trials_missing(
            metadata[self.trial_column]))
        trial_of_bin = trial_of_bin.astype(np.int64)
        n_trials = len(trial_ids)
        if n_trials < 2:
            raise ValueError(
                f"null='trial' needs at least 2 trials in {self.trial_column!r}; got "
                f"{n_trials}.")
        in_trial = np.flatnonzero(trial_of_bin >= 0)
        order = in_trial[np.argsort(trial_of_bin[in_trial], kind="stable")]
        trial_pointer = np.zeros(n_trials + 1, dtype=np.int64)
        trial_pointer[1:] = np.cumsum(np.bincount(trial_of_bin[in_trial], minlength=n_trials))
        position = np.zeros(n_samples, dtype=np.int64)
        position[order] = np.arange(len(order)) - np.repeat(trial_pointer[:-1],
                                                             np.diff(trial_pointer))
        permutations = np.empty((n_draws, n_trials), dtype=np.int32)
        permutations[0] = np.arange(n_trials)
        for draw in range(1, n_draws):
            permutations[draw] = rng.permutation(n_trials)
        steps = np.diff(order)
        trial_starts = trial_pointer[1:-1] - 1
        within_trial = np.ones(len(steps), dtype=bool)
        within_trial[trial_starts] = False
        contiguous = bool(np.all(steps[within_trial] == 1))
        trial_and_position = np.ascontiguousarray(
            np.column_stack([trial_of_bin, position]).astype(np.int32))
        trial_layout = np.column_stack(
            [trial_pointer[:-1], np.diff(trial_pointer), order[trial_pointer[:-1]]])
        return (1, empty_shifts, permutations, trial_and_position,
                np.ascontiguousarray(trial_layout, dtype=np.int64), order.astype(np.int64),
                contiguous)


def _outside_trials_missing(trial_ids):
    """Trial ids with the bins outside trials missing: ``bin_metadata`` marks
    them with -1, so negative numeric ids count as outside as well."""
    if pd.api.types.is_numeric_dtype(trial_ids) and not pd.api.types.is_bool_dtype(trial_ids):
        return trial_ids.where(~(trial_ids < 0))
    return trial_ids


def _n_conditions_of(condition_variable, variable):
    return int(np.count_nonzero(condition_variable == variable))


def _check_metadata(metadata, n_samples):
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(
            f"metadata must be a pandas DataFrame with one row per bin; got "
            f"{type(metadata).__name__}.")
    if len(metadata) != n_samples:
        raise ValueError(
            f"metadata has {len(metadata)} rows but the activations have {n_samples} bins; "
            "they must match, one row per bin.")
    return metadata.reset_index(drop=True)


def _activity(Z, signed, signed_quantile, activity_threshold):
    """Magnitude (CSC, positive entries) and activity indicator (CSC) per tested unit."""
    if sparse.issparse(Z):
        Z = sparse.csc_matrix(Z, dtype=np.float64)
        Z.sum_duplicates()
        n_samples, n_latents = Z.shape
        has_negative = bool((Z.data < 0).any())
    else:
        if isinstance(Z, pd.DataFrame):
            Z = Z.to_numpy()
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2:
            raise ValueError(f"codes must be 2-D (n_bins, n_latents); got shape {Z.shape}.")
        n_samples, n_latents = Z.shape
        has_negative = bool((Z < 0).any())
    if n_samples < 2 or n_latents < 1:
        raise ValueError(
            f"codes needs at least 2 bins and 1 latent; got shape {(n_samples, n_latents)}.")
    values = Z.data if sparse.issparse(Z) else Z
    if not np.isfinite(values).all():
        raise ValueError("codes contains NaN or infinite values.")
    is_signed = has_negative if signed == "auto" else bool(signed)
    if not is_signed and has_negative:
        raise ValueError(
            "codes has negative values but signed=False; use signed='auto' or True to test "
            "the positive and negative parts separately.")
    if is_signed:
        thresholds = _abs_quantiles(Z, signed_quantile)
        positive = sparse.csc_matrix(Z.maximum(0) if sparse.issparse(Z) else np.maximum(Z, 0))
        negative = sparse.csc_matrix(
            (-Z).maximum(0) if sparse.issparse(Z) else np.maximum(-Z, 0))
        order = np.arange(2 * n_latents).reshape(2, n_latents).T.ravel()
        magnitude = sparse.hstack([positive, negative], format="csc")[:, order]
        thresholds = np.repeat(thresholds, 2)
    else:
        magnitude = sparse.csc_matrix(Z)
        thresholds = np.full(n_latents, float(activity_threshold))
    magnitude = sparse.csc_matrix(magnitude)
    magnitude.eliminate_zeros()
    magnitude.sort_indices()
    column_of_entry = np.repeat(np.arange(magnitude.shape[1]), np.diff(magnitude.indptr))
    is_active = magnitude.data > thresholds[column_of_entry]
    active_indptr = np.zeros(magnitude.shape[1] + 1, dtype=np.int64)
    active_indptr[1:] = np.cumsum(np.bincount(column_of_entry[is_active],
                                              minlength=magnitude.shape[1]))
    active = sparse.csc_matrix(
        (np.ones(int(is_active.sum()), dtype=np.int8), magnitude.indices[is_active],
         active_indptr), shape=magnitude.shape)
    active.indptr = active.indptr.astype(np.int64)
    active.indices = active.indices.astype(np.int64)
    return magnitude, active, n_latents, is_signed


def _abs_quantiles(Z, quantile):
    if not sparse.issparse(Z):
        return np.quantile(np.abs(Z), quantile, axis=0)
    n_samples = Z.shape[0]
    thresholds = np.zeros(Z.shape[1])
    for latent in range(Z.shape[1]):
        stored = np.abs(Z.data[Z.indptr[latent]:Z.indptr[latent + 1]])
        column = np.concatenate([np.zeros(n_samples - len(stored)), stored])
        thresholds[latent] = np.quantile(column, quantile)
    return thresholds


def _latent_levels(latents, level_sizes, n_latents):
    level_sizes = np.asarray(check_level_sizes(level_sizes, n_latents), dtype=np.int64)
    return np.searchsorted(level_sizes, latents, side="right")


def top_selective_latents(results, n_top=10, *, min_activation_frac=0.1, alpha=None,
                          by="selectivity"):
    """The ``n_top`` most selective latents of each condition.

    Parameters
    ----------
    results : DataFrame
        Output of :meth:`SelectivityScorer.score_latents`.
    n_top : int, default=10
        Rows kept per (variable, condition).
    min_activation_frac : float, default=0.1
        Drop pairs with ``frac_during`` below it (latents rarely active in
        the condition).
    alpha : float, default=None
        The false discovery rate: keep only pairs with ``q < alpha``, as
        :class:`SelectivityScorer` counts a pair significant. None keeps
        them all.
    by : {"selectivity", "effect"}, default="selectivity"
        Ranking column, in decreasing order (ties broken by ``q``).

    Returns
    -------
    top : DataFrame
        The kept rows, grouped by variable and condition, best first, with a
        ``rank`` column (1 = best).

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_nldisco.interpretation._selectivity import top_selective_latents
    >>> results = pd.DataFrame({
    ...     "latent": [0, 1, 2], "variable": "phase", "condition": "move",
    ...     "selectivity": [0.9, 0.7, 0.95], "effect": [0.8, 0.6, 0.9],
    ...     "frac_during": [0.5, 0.4, 0.05], "q": [0.01, 0.02, 0.01]})
    >>> top_selective_latents(results, n_top=1)[["latent", "selectivity", "rank"]]
       latent  selectivity  rank
    0       0          0.9     1
    """
    if by not in ("selectivity", "effect"):
        raise ValueError(f"by must be 'selectivity' or 'effect'; got {by!r}.")
    n_top = _check_n_top(n_top)
    kept = results[results["frac_during"] >= min_activation_frac]
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) \
                or not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be a number in (0, 1] or None; got {alpha!r}.")
        kept = kept[kept["q"] < alpha]
    group_keys = ["variable", "condition"]
    # groups keep the order of the result table; rows are ranked inside them
    group_order = kept.groupby(group_keys, sort=False).ngroup()
    kept = kept.assign(_group=group_order).sort_values(
        [by, "q"], ascending=[False, True], kind="stable")
    top = kept.groupby(group_keys, sort=False).head(n_top)
    top = top.sort_values("_group", kind="stable").drop(columns="_group")
    top["rank"] = top.groupby(group_keys, sort=False).cumcount() + 1
    return top.reset_index(drop=True)


__all__ = ["SelectivityScorer", "top_selective_latents"]
