"""Selectivity of latents for behavioural conditions, with a null model that respects time."""

import numbers
import warnings
from collections.abc import Hashable

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import beta, false_discovery_control, norm
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Hidden, Interval, StrOptions

from ._conditions import discretise
from ._selectivity_kernels import (
    CIRCULAR,
    TRIAL,
    magnitude_rank_sums,
    null_exceedances,
    observed_active_counts,
)
from ..models import check_level_sizes
from ..preprocessing import SpikeEpochs
from ._validation import _check_activity_threshold, _check_n_top

# Columns of ``bin_metadata`` that describe the bins rather than the behaviour.
_BOOKKEEPING_COLUMNS = ("bin_start", "bin_stop", "interval_id", "epoch_id", "trial_id", "split",
                        "event")

# Sequential stopping (Besag and Clifford 1991): a pair stops drawing once
# this many null draws have matched or exceeded its observed count; its
# p-value is then known to about a third of itself.
STOP_EXCEEDANCES = 10

# A pair also stops once its exceedance rate is, at this confidence, above
# the largest level at which Benjamini-Hochberg could still reject it.
REACH_CONFIDENCE = 1e-4

# A latent (non-negative codes) is dense when it is active in more than
# this fraction of the bins; dense="auto" then applies the quantile rule.
DENSE_FRACTION = 0.5

# Null draws per chunk: the first chunk is n_permutations, each next one
# this many times larger, capped for the trial null's permutation tables.
_CHUNK_GROWTH = 4
_MAX_PERMUTATION_ENTRIES = 1 << 22


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
    With :class:`~sklearn_nldisco.preprocessing.SpikeEpochs` as ``X`` and a
    Pipeline that starts with a ``SpikeBinner``, ``y`` is not needed: the
    test fold's per-bin metadata comes from the binner's
    ``transform_metadata``.

    **Active.** For non-negative codes (sparse autoencoders, NMF) a latent is
    active where its value exceeds ``activity_threshold`` (0: non-zero). A
    *dense* latent, active in more than half of the bins (NMF with many
    components, spike counts of busy units), would be active almost
    everywhere under that rule; with ``dense="auto"`` it is instead active
    where its value exceeds its own ``activity_quantile`` quantile over all
    bins (0.9: roughly its strongest 10 % of bins; where no value exceeds
    the quantile, as for a binary code, where it reaches it). ``dense=True`` applies the quantile rule to every latent,
    ``dense=False`` to none. For signed codes (PCA, ICA) each latent ``i``
    is split into two tested units, ``sign=+1`` (its positive part ``max(z,
    0)``) and ``sign=-1`` (``max(-z, 0)``); the unit is active where that
    part exceeds the latent's ``activity_quantile`` quantile of ``|z|`` over
    all bins (0.9: roughly the 10 % of bins where the latent is strongest,
    split between the two signs). The ``active_above`` column of the result
    gives the value above which each unit counts as active.

    **Null model.** Each variable is tested on the bins where it is defined
    (a direction that is missing at rest is tested on the movement bins
    only), in the observed statistic and in the null alike. ``null="circular"``
    shifts the latent's activity over those ``n`` bins, taken in time order,
    by ``s`` bins (``1 <= s < n``), wrapping around the end: each latent
    keeps its autocorrelation, each variable its own. ``null="trial"``
    permutes whole trials (``trial_column``): the defined bins of trial
    ``i`` take the labels of the defined bins of trial ``pi(i)`` at the same
    position (wrapping when ``pi(i)`` has fewer), ``pi`` a random permutation
    of the trials where the variable is defined; for a trial-level variable
    this is exactly a permutation of the trials' labels. Bins outside trials
    keep their labels. Either way a draw keeps the latent's number of active
    bins where the variable is defined, so its selectivity for ``c``
    reaches the observed one exactly when its number of active bins in
    ``c`` does. The AUROC is computed on the observed data only.

    **p-value.** One-sided, for "more active in ``c`` than outside". With
    ``p_value="empirical"`` (default) the draws are adaptive: every pair
    takes ``n_permutations`` draws; a pair then keeps drawing only while
    fewer than 10 of its draws have reached the observed count (sequential
    stopping, Besag and Clifford 1991), up to ``max_permutations`` draws. Its
    p-value is ``(1 + e) / (1 + n)`` with ``e`` such draws out of the ``n``
    it took (the ``n_draws`` column). The p-value is valid (``P(p <= u) <=
    u`` under the null) for this stopping rule. A pair also stops when its
    exceedance rate is, with confidence ``1 - 1e-4``, above the largest
    level at which Benjamini-Hochberg could still reject it given every
    pair's best case: only the pairs that may be significant pay for many
    draws. Circular shifts are drawn without
    replacement; a variable defined on ``n <= max_permutations`` bins has
    only ``n - 1`` shifts, and a pair that takes them all gets the exact
    p-value of the group of circular shifts, at least ``1 / n``.

    **Resolution.** With ``m`` tests, Benjamini-Hochberg can only reach
    ``q < alpha`` for a pair with p-value ``p`` when at least ``m p /
    alpha`` pairs are discoveries; the smallest p-value is ``1 / (1 +
    max_permutations)``, or ``1 / n`` for a circular null over ``n``
    defined bins. With the defaults, 1,000 pairs and variables defined on
    at least 10,000 bins, pairs that no draw reaches are discoveries once
    there are 3 of them. ``p_value="gaussian"`` (the former default) takes exactly
    ``n_permutations`` draws and extrapolates the tail, ``p = P(N(mu,
    sigma) >= observed)`` with ``mu`` and ``sigma`` the mean and standard
    deviation of the null selectivities (the empirical p where the null has
    no spread). It reaches small p-values with few draws, at the price of
    assuming a normal tail, which the bounded, skewed null of a sparse
    latent does not have. ``max_permutations=n_permutations`` gives plain
    empirical p-values with a fixed number of draws.

    **Smallest shift.** ``min_shift`` restricts the circular shifts to
    ``[min_shift, n - min_shift]`` (the former default was a tenth of the
    bins), which keeps an effect that spreads over neighbouring bins out of
    the null. The shifts are then no longer a group: when latent and
    behaviour both vary slowly, the observed alignment can exceed every
    distant shift by chance, and p-values below about the autocorrelation
    time over ``n`` are not valid. The default (None) uses every shift.

    **Conditions.** Discrete variables (object, categorical, boolean or
    integer columns with at most ``max_categories`` values) give one
    condition per value. Other numeric columns are cut at their quantiles
    into ``n_bins`` bins ``[low, high)`` (the last closed; tied quantiles
    merge bins), computed from the metadata being scored; a zero-inflated
    column (at least a bin's share of its values at 0, up to numerical
    noise) gets a condition ``"[0, 0]"`` for them and ``n_bins - 1``
    quantile bins of the others. Angle variables (``angle_variables``, in
    degrees) are cut into ``n_bins`` equal sectors of the circle starting at
    -180. A bin whose value is missing counts neither in ``c`` nor in not
    ``c`` for that variable. Conditions without bins (e.g. empty sectors)
    are dropped; a variable with fewer than two conditions is not tested.
    :func:`~sklearn_nldisco.interpretation.plot_feature_card` draws the same
    conditions.

    Parameters
    ----------
    variables : sequence of str, default=None
        Metadata columns to test. None tests every column but ``bin_start``,
        ``bin_stop``, ``interval_id``, ``epoch_id``, ``trial_id``, ``split``,
        ``event`` and ``trial_column``.
    angle_variables : sequence of str, default=("direction_deg",)
        Columns that hold angles in degrees.
    n_bins : int or dict of str to int, default=10
        Bins per continuous or angle variable; a dict gives them per column
        (10 for the others).
    max_categories : int, default=64
        Integer columns with more distinct values are binned as continuous.
        Non-numeric columns with more raise a ``ValueError``.
    n_permutations : int, default=200
        Null draws that every pair takes (the first round).
    max_permutations : int, default=10_000
        Most null draws of a pair (``p_value="empirical"``); at least
        ``n_permutations``. Equal to it: a fixed number of draws. A
        circular null over ``n`` bins has at most ``n - 1`` draws.
    null : {"circular", "trial"}, default="circular"
        The null model (see above).
    trial_column : str, default="trial_id"
        Column of trial ids for ``null="trial"``; missing values and
        negative ids (``bin_metadata`` gives -1) mark bins outside trials.
    min_shift : int, default=None
        Smallest circular shift, in bins where the variable is defined
        (see above). None uses every shift.
    activity_threshold : float, default=0.0
        Non-negative codes: a latent is active where its value exceeds it
        (dense latents: where it exceeds the larger of it and the latent's
        ``activity_quantile`` quantile).
    signed : {"auto", True, False}, default="auto"
        Whether the codes are signed; "auto" is True when any value is negative.
    dense : {"auto", True, False}, default="auto"
        Non-negative codes: whether a latent is active above its own
        ``activity_quantile`` quantile; "auto" is True for the latents
        active (above ``activity_threshold``) in more than half of the bins.
    activity_quantile : float, default=0.9
        Signed codes: quantile of ``|z|`` above which a part is active.
        Dense latents: quantile of ``z`` above which the latent is active.
    alpha : float, default=0.05
        q-value below which a pair counts as significant for the score.
    min_selectivity : float, default=0.6
        Selectivity from which a significant pair counts for the score.
    min_activation_frac : float, default=0.1
        ``frac_during`` from which a pair counts for the score (the
        published method drops pairs below 0.1).
    p_value : {"empirical", "gaussian"}, default="empirical"
        How the p-value is read from the null draws (see above).
    level_sizes : sequence of int, default=None
        Nested level sizes; adds a ``level`` column (the first level that
        contains the latent). In a grid search, None uses the estimator's
        ``level_sizes_`` when it has one.
    random_state : int, RandomState instance or None, default=None
        Seeds the null draws; a fixed value gives identical results.
    signed_quantile : float
        Deprecated alias of ``activity_quantile``.

        .. deprecated::
            ``signed_quantile`` is renamed ``activity_quantile``, which
            serves dense codes too; it will be removed.

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

    References
    ----------
    Besag, J. and Clifford, P. (1991). Sequential Monte Carlo p-values.
    Biometrika 78(2), 301-304.

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
    >>> scorer = SelectivityScorer(random_state=0)
    >>> results = scorer.score_latents(codes, metadata)
    >>> results[["latent", "condition", "selectivity", "frac_during", "frac_outside"]].round(2)
       latent condition  selectivity  frac_during  frac_outside
    0       0      move          1.0         1.00          0.00
    1       0      rest          0.0         0.00          1.00
    2       1      move          0.5         0.14          0.14
    3       1      rest          0.5         0.14          0.14
    >>> results[["n_draws", "p"]].round(4)  # all 1,999 shifts for the planted pair
       n_draws       p
    0     1999  0.0005
    1        0  1.0000
    2      200  0.8657
    3      200  0.5771
    >>> float(scorer.score_from_results(results, n_latents=2))
    0.5
    """

    _parameter_constraints = {
        "variables": [None, "array-like"],
        "angle_variables": [None, "array-like"],
        "n_bins": [Interval(numbers.Integral, 2, None, closed="left"), dict],
        "max_categories": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_permutations": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_permutations": [Interval(numbers.Integral, 1, None, closed="left")],
        "null": [StrOptions({"circular", "trial"})],
        "trial_column": [Hashable],
        "min_shift": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "activity_threshold": [Interval(numbers.Real, None, None, closed="neither")],
        "signed": [StrOptions({"auto"}), "boolean"],
        "dense": [StrOptions({"auto"}), "boolean"],
        "activity_quantile": [Interval(numbers.Real, 0, 1, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, 1, closed="right")],
        "min_selectivity": [Interval(numbers.Real, 0, 1, closed="both")],
        "min_activation_frac": [Interval(numbers.Real, 0, 1, closed="both")],
        "p_value": [StrOptions({"empirical", "gaussian"})],
        "level_sizes": [None, "array-like"],
        "random_state": ["random_state"],
        "signed_quantile": [Interval(numbers.Real, 0, 1, closed="neither"),
                            Hidden(StrOptions({"deprecated"}))],
    }

    def __init__(self, variables=None, *, angle_variables=("direction_deg",), n_bins=10,
                 max_categories=64, n_permutations=200, max_permutations=10_000,
                 null="circular", trial_column="trial_id", min_shift=None,
                 activity_threshold=0.0, signed="auto", dense="auto", activity_quantile=0.9,
                 alpha=0.05, min_selectivity=0.6, min_activation_frac=0.1,
                 p_value="empirical", level_sizes=None, random_state=None,
                 signed_quantile="deprecated"):
        self.variables = variables
        self.angle_variables = angle_variables
        self.n_bins = n_bins
        self.max_categories = max_categories
        self.n_permutations = n_permutations
        self.max_permutations = max_permutations
        self.null = null
        self.trial_column = trial_column
        self.min_shift = min_shift
        self.activity_threshold = activity_threshold
        self.signed = signed
        self.dense = dense
        self.activity_quantile = activity_quantile
        self.alpha = alpha
        self.min_selectivity = min_selectivity
        self.min_activation_frac = min_activation_frac
        self.p_value = p_value
        self.level_sizes = level_sizes
        self.random_state = random_state
        self.signed_quantile = signed_quantile

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
            active), ``active_above`` (the value above which it counts as
            active), ``n_during`` (bins in ``c``), ``n_draws`` (null draws
            behind the p-value), ``p``, ``q`` (NaN for a latent never active
            in the variable's bins, which is not tested) and ``level`` when
            level sizes are given.
        """
        self._validate_params()
        activity_quantile = self._check_parameters()
        magnitude, active, n_latents, is_signed, active_above = _activity(
            codes, self.signed, self.dense, activity_quantile, self.activity_threshold)
        metadata = _check_metadata(metadata, magnitude.shape[0])
        labels, condition_variable, condition_offset, table = self._conditions(metadata)
        n_conditions = len(table)
        condition_sizes = np.zeros(n_conditions, dtype=np.int64)
        valid_sizes = np.zeros(labels.shape[1], dtype=np.int64)
        for variable in range(labels.shape[1]):
            column = labels[:, variable]
            first, last = condition_offset[variable], condition_offset[variable + 1]
            counts = np.bincount(column[column >= 0], minlength=last - first)
            condition_sizes[first:last] = counts
            valid_sizes[variable] = counts.sum()

        counts, active_valid = observed_active_counts(
            active.indptr, active.indices, labels, condition_offset, n_conditions)
        active_valid_c = active_valid[:, condition_variable]
        tested = active_valid_c > 0
        variable_names = table.drop_duplicates("variable_index")["variable"].tolist()
        null_model = self._null_model(metadata, labels, variable_names)
        exceedances, n_draws, null_means, null_stds = self._null_draws(
            active, labels, condition_variable, condition_offset, condition_sizes,
            valid_sizes, counts, active_valid, tested, null_model)
        nonzero_counts, rank_sums, value_sums, nonzero_valid = magnitude_rank_sums(
            magnitude.indptr, magnitude.indices, magnitude.data, labels, condition_offset,
            n_conditions)

        n_during = condition_sizes[None, :].astype(np.float64)
        n_valid = valid_sizes[condition_variable][None, :].astype(np.float64)
        n_outside = n_valid - n_during
        frac_during = counts / n_during
        frac_outside = (active_valid_c - counts) / n_outside
        total = frac_during + frac_outside
        with np.errstate(invalid="ignore", divide="ignore"):
            selectivity = np.where(tested, frac_during / total, np.nan)
            p_values = (1.0 + exceedances) / (1.0 + n_draws)
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
            "active_above": np.repeat(active_above, n_conditions),
            "n_during": np.tile(condition_sizes, n_units),
            "n_draws": n_draws.ravel(),
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
            Its ``transform(X)`` gives the latent activations: a model, or a
            Pipeline (its last step gives ``level_sizes_``).
        X : array-like of shape (n_bins, n_features), or SpikeEpochs
            Rows to code. A ``SpikeEpochs`` (the test fold's epochs) needs a
            Pipeline whose first step is a fitted ``SpikeBinner``.
        y : DataFrame of shape (n_bins, n_columns), or None
            Per-bin metadata, passed as ``y`` to ``fit`` / ``GridSearchCV``.
            None with a ``SpikeEpochs`` ``X``: the binner's
            ``transform_metadata(X)`` (the epochs' metadata on their bins,
            with ``time_in_epoch``).

        Returns
        -------
        score : float
            See :meth:`score_from_results`; higher is better.
        """
        if y is None and isinstance(X, SpikeEpochs):
            y = _binned_metadata(estimator, X)
        if not isinstance(y, pd.DataFrame):
            raise TypeError(
                "SelectivityScorer needs the per-bin metadata DataFrame as y (e.g. "
                "GridSearchCV(...).fit(X, metadata)), or SpikeEpochs as X with a "
                f"Pipeline that starts with a SpikeBinner; got y={type(y).__name__} and "
                f"X={type(X).__name__}."
            )
        codes = estimator.transform(X)
        level_sizes = self.level_sizes
        if level_sizes is None:
            final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
            level_sizes = getattr(final, "level_sizes_", None)
        results = self.score_latents(codes, y, level_sizes=level_sizes)
        return self.score_from_results(results, codes.shape[1])

    # -- helpers -----------------------------------------------------------------

    def _check_parameters(self):
        """Checks across parameters; returns the activity quantile in use."""
        if self.max_permutations < self.n_permutations:
            raise ValueError(
                f"max_permutations must be at least n_permutations={self.n_permutations}; "
                f"got {self.max_permutations!r}.")
        _check_activity_threshold(self.activity_threshold)
        if isinstance(self.signed_quantile, str):
            return float(self.activity_quantile)
        warnings.warn(
            "signed_quantile is deprecated and will be removed; use activity_quantile, "
            "which serves signed and dense codes.", FutureWarning, stacklevel=3)
        return float(self.signed_quantile)

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
        # first condition of each variable, then the number of conditions
        condition_offset = np.searchsorted(condition_variable,
                                           np.arange(len(label_columns) + 1))
        max_label = max(len(names) for _, names in table.groupby("variable_index"))
        dtype = np.int8 if max_label < 127 else np.int32
        labels = np.ascontiguousarray(np.column_stack(label_columns).astype(dtype))
        return labels, condition_variable, condition_offset.astype(np.int64), table

    def _null_model(self, metadata, labels, variable_names):
        rng = check_random_state(self.random_state)
        max_draws = self.n_permutations if self.p_value == "gaussian" else \
            self.max_permutations
        if self.null == "circular":
            return _CircularNull(labels, self.min_shift, variable_names, rng, max_draws)
        if self.trial_column not in metadata.columns:
            raise ValueError(
                f"null='trial' needs the trial column {self.trial_column!r} in the metadata; "
                f"its columns are {list(metadata.columns)}.")
        return _TrialNull(labels, metadata[self.trial_column], self.trial_column, rng,
                          max_draws)

    def _null_draws(self, active, labels, condition_variable, condition_offset,
                    condition_sizes, valid_sizes, counts, active_valid, tested, null_model):
        """Exceedances, draws, and mean and spread of the null selectivities per pair."""
        gaussian = self.p_value == "gaussian"
        min_draws = self.n_permutations
        max_draws = null_model.max_draws
        # a pair never active in its condition has p = 1 whatever the draws
        is_open = tested & (counts > 0) if not gaussian else tested.copy()
        shape = counts.shape
        exceedances = np.zeros(shape, dtype=np.int64)
        n_draws = np.zeros(shape, dtype=np.int64)
        null_sums = np.zeros(shape)
        null_sum_squares = np.zeros(shape)
        drawn = 0
        chunk = min_draws
        while drawn < max_draws.max() and is_open.any():
            size = min(chunk, max_draws.max() - drawn, null_model.max_chunk)
            shifts, permutations = null_model.draws(drawn, size)
            units = np.flatnonzero(is_open.any(axis=1)).astype(np.int64)
            null_exceedances(
                active.indptr, active.indices, units, labels, condition_variable,
                condition_offset, condition_sizes, valid_sizes, counts, active_valid,
                null_model.mode, null_model.coordinates, null_model.positions,
                null_model.null_labels, null_model.label_start, shifts, permutations,
                null_model.trial_offset, null_model.trial_start, null_model.trial_length,
                drawn, min_draws, max_draws, STOP_EXCEEDANCES, is_open, exceedances,
                n_draws, gaussian, null_sums, null_sum_squares)
            drawn += size
            chunk = size * _CHUNK_GROWTH
            if not gaussian:
                is_open &= ~_beyond_reach(is_open, exceedances, n_draws, tested,
                                          max_draws[condition_variable], self.alpha)
        null_means = np.zeros(shape)
        null_stds = np.zeros(shape)
        if gaussian:
            has_draws = n_draws > 0
            null_means[has_draws] = null_sums[has_draws] / n_draws[has_draws]
            variance = null_sum_squares[has_draws] / n_draws[has_draws] \
                - null_means[has_draws] ** 2
            null_stds[has_draws] = np.sqrt(np.maximum(variance, 0.0))
        return exceedances, n_draws, null_means, null_stds


def _binned_metadata(estimator, epochs):
    """Per-bin metadata of ``epochs`` from the binner that starts ``estimator``."""
    steps = getattr(estimator, "steps", None)
    first = estimator if steps is None else steps[0][1]
    if not hasattr(first, "transform_metadata"):
        raise TypeError(
            "X is a SpikeEpochs, so the per-bin metadata comes from the SpikeBinner that "
            "starts the Pipeline; expected a Pipeline whose first step is a SpikeBinner, "
            f"got {type(estimator).__name__}"
            f"{'' if steps is None else ' starting with ' + type(first).__name__}.")
    return first.transform_metadata(epochs)


class _CircularNull:
    """Circular shifts of each variable's defined bins, in time order.

    ``coordinates[b, v]`` is the rank of bin ``b`` among the bins where
    variable ``v`` is defined (-1 elsewhere); ``null_labels`` holds those
    bins' labels, variable after variable. The shifts of a variable are
    drawn without replacement, so that once every shift is drawn the
    p-value is the exact one of the group of circular shifts.
    """

    mode = CIRCULAR
    max_chunk = np.iinfo(np.int64).max

    def __init__(self, labels, min_shift, variable_names, rng, max_draws):
        n_samples, n_variables = labels.shape
        valid = labels >= 0
        self.valid_sizes = valid.sum(axis=0).astype(np.int64)
        self.coordinates = np.where(valid, np.cumsum(valid, axis=0) - 1, -1).astype(np.int32)
        self.positions = self.coordinates
        self.null_labels = np.concatenate(
            [labels[valid[:, v], v] for v in range(n_variables)]).astype(labels.dtype)
        self.label_start = np.concatenate([[0], np.cumsum(self.valid_sizes)]).astype(np.int64)
        min_shifts = np.full(n_variables, 1 if min_shift is None else min_shift,
                             dtype=np.int64)
        room = self.valid_sizes - 2 * min_shifts
        if min_shift is not None and (room < 0).any():
            variable = int(np.argmax(room < 0))
            raise ValueError(
                f"min_shift={min_shift} leaves no circular shift for the "
                f"{self.valid_sizes[variable]} bins where {variable_names[variable]!r} is "
                f"defined; it must be at most {self.valid_sizes[variable] // 2}.")
        # each variable's shifts in [min_shift, n - min_shift], in random order
        self.max_draws = np.zeros(n_variables, dtype=np.int64)
        orders = []
        for variable in range(n_variables):
            n_shifts = max(int(room[variable]) + 1, 0)
            order = min_shifts[variable] + rng.permutation(n_shifts)[:max_draws]
            orders.append(order)
            self.max_draws[variable] = len(order)
        self.shift_table = np.zeros((max(self.max_draws.max(), 1), n_variables),
                                    dtype=np.int64)
        for variable, order in enumerate(orders):
            self.shift_table[:len(order), variable] = order
        self.trial_offset = np.zeros(n_variables + 1, dtype=np.int64)
        self.trial_start = np.zeros(1, dtype=np.int64)
        self.trial_length = np.ones(1, dtype=np.int64)

    def draws(self, first, size):
        """Shifts of draws ``first`` to ``first + size``, shape (size, n_variables)."""
        return (np.ascontiguousarray(self.shift_table[first:first + size]),
                np.zeros((0, 1), dtype=np.int32))


class _TrialNull:
    """Permutations of each variable's trials, over its defined bins.

    ``coordinates[b, v]`` is the trial of bin ``b`` among the trials where
    variable ``v`` is defined (-1 outside trials or where ``v`` is
    undefined), ``positions[b, v]`` the rank of ``b`` among that trial's
    defined bins; ``null_labels`` holds each variable's labels trial after
    trial, ``trial_start`` and ``trial_length`` where each trial's lie.
    """

    mode = TRIAL

    def __init__(self, labels, trial_ids, trial_column, rng, max_draws):
        n_samples, n_variables = labels.shape
        self.rng = rng
        self.max_draws = np.full(n_variables, max_draws, dtype=np.int64)
        trial_of_bin, unique_ids = pd.factorize(_outside_trials_missing(trial_ids))
        trial_of_bin = np.asarray(trial_of_bin, dtype=np.int64)
        self.n_trials = len(unique_ids)
        if self.n_trials < 2:
            raise ValueError(
                f"null='trial' needs at least 2 trials in {trial_column!r}; got "
                f"{self.n_trials}.")
        self.coordinates = np.full((n_samples, n_variables), -1, dtype=np.int32)
        self.positions = np.zeros((n_samples, n_variables), dtype=np.int32)
        null_labels, starts, lengths, self.trials = [], [], [], []
        label_start, trial_offset = [0], [0]
        for variable in range(n_variables):
            bins = np.flatnonzero((labels[:, variable] >= 0) & (trial_of_bin >= 0))
            trials, local = np.unique(trial_of_bin[bins], return_inverse=True)
            order = np.argsort(local, kind="stable")
            length = np.bincount(local, minlength=len(trials))
            start = np.concatenate([[0], np.cumsum(length)[:-1]])
            ordered = bins[order]
            self.coordinates[ordered, variable] = local[order]
            self.positions[ordered, variable] = np.arange(len(ordered)) - np.repeat(start,
                                                                                   length)
            null_labels.append(labels[ordered, variable])
            starts.append(start)
            lengths.append(length)
            self.trials.append(trials)
            label_start.append(label_start[-1] + len(ordered))
            trial_offset.append(trial_offset[-1] + len(trials))
        self.null_labels = np.concatenate(null_labels).astype(labels.dtype)
        self.label_start = np.asarray(label_start, dtype=np.int64)
        self.trial_offset = np.asarray(trial_offset, dtype=np.int64)
        self.trial_start = np.concatenate(starts).astype(np.int64)
        self.trial_length = np.maximum(np.concatenate(lengths), 1).astype(np.int64)
        self.max_chunk = max(1, _MAX_PERMUTATION_ENTRIES // max(self.n_trials, 1))

    def draws(self, first, size):
        """Permutations of draws ``first`` to ``first + size``, of shape (size,
        total trials over variables): one uniform key per trial and draw,
        shared by the variables, ranked within each variable's trials."""
        keys = self.rng.random_sample((size, self.n_trials))
        permutations = np.empty((size, self.trial_offset[-1]), dtype=np.int32)
        for variable, trials in enumerate(self.trials):
            first, last = self.trial_offset[variable], self.trial_offset[variable + 1]
            if last > first:
                permutations[:, first:last] = np.argsort(keys[:, trials], axis=1)
        return np.zeros((0, 1), dtype=np.int64), permutations


def _beyond_reach(is_open, exceedances, n_draws, tested, max_draws, alpha):
    """Open pairs that Benjamini-Hochberg cannot make discoveries.

    Each tested pair's best case is its p-value once closed and, while
    open, the lower confidence bound (at ``1 - REACH_CONFIDENCE``) of its
    exceedance rate, but no less than ``1 / (1 + max_draws)``. Benjamini-
    Hochberg over the best cases makes ``K`` discoveries, at least as many
    as over the final p-values, so no pair is a discovery above ``alpha K /
    m``: an open pair whose lower bound exceeds that level can stop.
    """
    open_pairs = is_open & (exceedances > 0)
    if not open_pairs.any():
        return np.zeros_like(is_open)
    best = (1.0 + exceedances) / (1.0 + n_draws)
    lower = np.zeros(best.shape)
    lower[open_pairs] = beta.ppf(REACH_CONFIDENCE, exceedances[open_pairs],
                                 n_draws[open_pairs] - exceedances[open_pairs] + 1)
    floor = 1.0 / (1.0 + np.broadcast_to(max_draws, best.shape))
    best = np.where(is_open, np.maximum(lower, floor), best)[tested]
    n_tests = best.size
    ranked = np.sort(best)
    below = np.flatnonzero(ranked <= alpha * np.arange(1, n_tests + 1) / n_tests)
    n_reachable = below[-1] + 1 if below.size else 0
    return open_pairs & (lower > alpha * n_reachable / n_tests)


def _outside_trials_missing(trial_ids):
    """Trial ids with the bins outside trials missing: ``bin_metadata`` marks
    them with -1, so negative numeric ids count as outside as well."""
    if pd.api.types.is_numeric_dtype(trial_ids) and not pd.api.types.is_bool_dtype(trial_ids):
        return trial_ids.where(~(trial_ids < 0))
    return trial_ids


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


def _activity(Z, signed, dense, activity_quantile, activity_threshold):
    """Magnitude (CSC, positive entries), activity indicator (CSC) and the value
    above which each tested unit counts as active."""
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
        thresholds = _column_quantiles(Z, activity_quantile, absolute=True)
        positive = sparse.csc_matrix(Z.maximum(0) if sparse.issparse(Z) else np.maximum(Z, 0))
        negative = sparse.csc_matrix(
            (-Z).maximum(0) if sparse.issparse(Z) else np.maximum(-Z, 0))
        order = np.arange(2 * n_latents).reshape(2, n_latents).T.ravel()
        magnitude = sparse.hstack([positive, negative], format="csc")[:, order]
        thresholds = np.repeat(thresholds, 2)
    else:
        magnitude = sparse.csc_matrix(Z)
        thresholds = np.full(n_latents, float(activity_threshold))
        if dense is True:
            is_dense = np.ones(n_latents, dtype=bool)
        elif dense == "auto":
            above = magnitude.copy()
            above.data = (above.data > activity_threshold).astype(np.float64)
            is_dense = np.asarray(above.sum(axis=0)).ravel() > DENSE_FRACTION * n_samples
        else:
            is_dense = np.zeros(n_latents, dtype=bool)
        for latent in np.flatnonzero(is_dense):
            thresholds[latent] = max(thresholds[latent], _dense_threshold(
                magnitude[:, [latent]], activity_quantile))
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
    return magnitude, active, n_latents, is_signed, thresholds


def _dense_threshold(column, quantile):
    """The value above which a dense latent is active: its ``quantile``, or,
    where no value exceeds that (ties at the top, as in a binary code), the
    largest value below it, so that the bins at the quantile are active."""
    values = column.toarray().ravel()
    cut = np.quantile(values, quantile)
    if (values > cut).any():
        return cut
    below = values[values < cut]
    return below.max() if below.size else -np.inf


def _column_quantiles(Z, quantile, absolute=False):
    """Per-column quantile over all rows (implicit zeros included), of ``|Z|``
    when ``absolute``."""
    if not sparse.issparse(Z):
        return np.quantile(np.abs(Z) if absolute else Z, quantile, axis=0)
    Z = sparse.csc_matrix(Z)
    n_samples = Z.shape[0]
    thresholds = np.zeros(Z.shape[1])
    for latent in range(Z.shape[1]):
        stored = Z.data[Z.indptr[latent]:Z.indptr[latent + 1]]
        if absolute:
            stored = np.abs(stored)
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
