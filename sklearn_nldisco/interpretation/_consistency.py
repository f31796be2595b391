"""Agreement across seeds: do independent fits find the same latents?

One configuration is fitted with several random seeds; the decoder
dictionaries of two runs are matched one-to-one by the Hungarian algorithm on
the cosine similarity of their rows, and the matched cosines summarise how
far the runs agree, per nested level. A latent of a reference run that is
matched closely in every other run is called stable.

Everything here takes dictionaries (arrays of shape ``(n_latents,
n_features)``) or any fitted estimator exposing ``components_``, so a
Matryoshka SAE, PCA or NMF are compared the same way; several runs are
passed as a sequence ``runs`` of either.
"""

import numbers

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.optimize import linear_sum_assignment
from sklearn.base import clone

from ..models import check_level_sizes
from ._validation import _dictionary

__all__ = ["fit_seeds", "match_latents", "seed_agreement", "stable_latents"]


def fit_seeds(estimator, X, y=None, *, seeds=(0, 1, 2), n_jobs=None):
    """Fit one configuration once per random seed, in parallel.

    Each run is ``clone(estimator).set_params(random_state=seed)`` fitted on
    the same data. The fits are dispatched through :class:`joblib.Parallel`,
    so they follow the active joblib backend (processes, threads, or a
    cluster backend through ``joblib.parallel_config``).

    Parameters
    ----------
    estimator : estimator
        Unfitted (or fitted: it is cloned and left untouched) estimator with a
        ``random_state`` parameter.
    X : array-like of shape (n_samples, n_features)
        Training data, shared by every run.
    y : array-like, default=None
        Target passed to ``fit`` when not None (e.g. the output population of
        a transcoder).
    seeds : sequence of int, default=(0, 1, 2)
        One run per seed, in this order. Seeds must be distinct integers.
    n_jobs : int, default=None
        Number of parallel fits; None means 1 unless in a
        ``joblib.parallel_config`` context, -1 means all processors.
        Each fit may use several threads of its own (e.g. torch), so
        ``n_jobs`` times that should not exceed the cores available.

    Returns
    -------
    runs : list of estimator
        The fitted clones, in the order of ``seeds``.

    See Also
    --------
    seed_agreement : Agreement of the runs, per level.
    stable_latents : Latents found by every run.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import NMF
    >>> from sklearn_nldisco.interpretation._consistency import fit_seeds
    >>> X = np.random.RandomState(0).poisson(2.0, size=(100, 8)).astype(float)
    >>> runs = fit_seeds(NMF(n_components=3, init="random", max_iter=1000), X,
    ...                  seeds=(0, 1))
    >>> [run.random_state for run in runs]
    [0, 1]
    """
    if not hasattr(estimator, "get_params") or "random_state" not in estimator.get_params():
        raise TypeError(
            "estimator must be a scikit-learn estimator with a 'random_state' "
            f"parameter; got {type(estimator).__name__}."
        )
    seeds = _check_seeds(seeds)

    runs = [clone(estimator).set_params(random_state=seed) for seed in seeds]
    return Parallel(n_jobs=n_jobs)(delayed(_fit_one)(run, X, y) for run in runs)


def _fit_one(estimator, X, y):
    if y is None:
        return estimator.fit(X)
    return estimator.fit(X, y)


def _check_seeds(seeds):
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of int; got {seeds!r}.")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed; got an empty sequence.")
    for seed in seeds:
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"seeds must be a sequence of int; got the entry {seed!r}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct; got {seeds!r}.")
    return [int(seed) for seed in seeds]


def match_latents(components_a, components_b, *, absolute=False):
    """Match the latents of two dictionaries one-to-one by decoder cosine.

    The rows of both dictionaries are normalised to unit length and the
    assignment maximising the sum of matched cosine similarities is found
    by the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`).

    Parameters
    ----------
    components_a : array-like of shape (n_latents_a, n_features) or fitted estimator
        First dictionary, one row per latent, or a model with ``components_``.
    components_b : array-like of shape (n_latents_b, n_features) or fitted estimator
        Second dictionary, with the same number of features. The numbers of
        latents may differ: ``min(n_latents_a, n_latents_b)`` pairs are
        matched and the remaining latents of the larger dictionary are left
        unmatched.
    absolute : bool, default=False
        Whether the sign of a direction is arbitrary. False (the default)
        matches on the signed cosine, right for dictionaries whose codes are
        non-negative (a sparse autoencoder, NMF), where a flipped decoder row
        is a different latent. True matches on ``|cosine|``, for signed
        baselines such as PCA or ICA whose components are defined up to sign.

    Returns
    -------
    index_a : ndarray of shape (n_matched,)
        Matched latents of ``components_a``, in increasing order.
    index_b : ndarray of shape (n_matched,)
        The latents of ``components_b`` they are matched to.
    cosine : ndarray of shape (n_matched,)
        Cosine similarity of each matched pair (its absolute value when
        ``absolute=True``). A row of zeros (a dead latent) has cosine 0 with
        everything.

    See Also
    --------
    seed_agreement : Matched cosines summarised per level.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._consistency import match_latents
    >>> a = np.eye(3)
    >>> index_a, index_b, cosine = match_latents(a, a[[2, 0, 1]])
    >>> index_b.tolist()
    [1, 2, 0]
    >>> cosine.tolist()
    [1.0, 1.0, 1.0]
    >>> match_latents(a, -a, absolute=True)[2].tolist()
    [1.0, 1.0, 1.0]
    """
    components_a = _dictionary(components_a, "components_a")
    components_b = _dictionary(components_b, "components_b")
    if components_a.shape[1] != components_b.shape[1]:
        raise ValueError(
            "components_a and components_b must have the same number of "
            f"features; got {components_a.shape[1]} and {components_b.shape[1]}."
        )
    return _match(_normalise_rows(components_a), _normalise_rows(components_b), absolute)


def _match(unit_a, unit_b, absolute):
    similarity = unit_a @ unit_b.T
    if absolute:
        similarity = np.abs(similarity)
    index_a, index_b = linear_sum_assignment(similarity, maximize=True)
    return index_a, index_b, similarity[index_a, index_b]


def _normalise_rows(components):
    norms = np.linalg.norm(components, axis=1, keepdims=True)
    # dead latents (zero rows) stay zero: cosine 0 with every row
    return components / np.where(norms > 0, norms, 1.0)


def _collect_runs(runs, level_sizes):
    """Unit-norm dictionaries of the runs and the shared level sizes."""
    if isinstance(runs, np.ndarray) and runs.ndim == 3:
        runs = list(runs)
    elif isinstance(runs, (str, bytes)) or not hasattr(runs, "__iter__"):
        raise TypeError(
            "runs must be a sequence of fitted estimators or 2D arrays; got "
            f"{type(runs).__name__}."
        )
    else:
        runs = list(runs)
    if len(runs) < 2:
        raise ValueError(f"runs must hold at least two runs to compare; got {len(runs)}.")

    dictionaries = [_dictionary(run, f"runs[{position}]") for position, run in enumerate(runs)]
    fitted_levels = [
        None if getattr(run, "level_sizes_", None) is None
        else tuple(int(s) for s in run.level_sizes_)
        for run in runs
    ]
    n_features = [dictionary.shape[1] for dictionary in dictionaries]
    if len(set(n_features)) > 1:
        raise ValueError(
            f"every run in runs must have the same number of features; got {n_features}."
        )
    n_latents = [dictionary.shape[0] for dictionary in dictionaries]

    if level_sizes is None:
        known = {levels for levels in fitted_levels if levels is not None}
        if len(known) > 1:
            raise ValueError(
                f"the runs have different level_sizes_ {sorted(known)}; pass "
                "level_sizes explicitly."
            )
        if known:
            level_sizes = known.pop()
        elif len(set(n_latents)) == 1:
            level_sizes = (n_latents[0],)
        else:
            level_sizes = (min(n_latents),)
    level_sizes = check_level_sizes(level_sizes, min(n_latents), prefix=True)
    return [_normalise_rows(dictionary) for dictionary in dictionaries], level_sizes


def _check_thresholds(thresholds):
    if isinstance(thresholds, numbers.Real):
        thresholds = (thresholds,)
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or any(not -1.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(
            f"thresholds must be one or more cosines in [-1, 1]; got {thresholds!r}."
        )
    return thresholds


def _check_run_index(index, n_runs, name):
    if not isinstance(index, numbers.Integral) or isinstance(index, bool) or not (
        -n_runs <= index < n_runs
    ):
        raise ValueError(f"{name} must be the index of a run in [0, {n_runs}); got {index!r}.")
    return int(index) % n_runs


def seed_agreement(
    runs,
    *,
    level_sizes=None,
    thresholds=(0.7, 0.9),
    reference=None,
    absolute=False,
):
    """Agreement of independently fitted runs, per nested level.

    For every compared pair of runs and every level ``i``, the latents
    ``[0, level_sizes[i])`` of both runs (the level's prefix) are matched by
    :func:`match_latents`, and the matched cosines are summarised. Matching
    within a prefix asks whether level ``i`` of one run spans the same
    features as level ``i`` of the other, which is what the nested training
    promises; a feature that moved to a later level in one run lowers the
    agreement of the earlier level.

    Parameters
    ----------
    runs : sequence of estimator or array-like
        At least two runs: fitted estimators (their ``components_`` and,
        when present, ``level_sizes_`` are used) or dictionaries of shape
        ``(n_latents, n_features)``, all with the same ``n_features``.
    level_sizes : sequence of int, default=None
        Prefix sizes of the levels, strictly increasing. None takes the
        runs' shared ``level_sizes_``, or one level of all latents when the
        runs carry none (the smallest run's size when they differ).
    thresholds : sequence of float, default=(0.7, 0.9)
        Cosines above which a matched latent counts as found again.
    reference : int, default=None
        None compares every pair of runs ``(a, b)`` with ``a < b``; an index
        compares that run with each of the others.
    absolute : bool, default=False
        Match on ``|cosine|`` (signed baselines such as PCA); see
        :func:`match_latents`.

    Returns
    -------
    agreement : pandas.DataFrame
        One row per compared pair and level, with the columns ``run_a``,
        ``run_b``, ``level``, ``n_latents`` (the level's size),
        ``mean_cosine`` (mean matched cosine) and, for each threshold ``t``,
        ``fraction_above_{t}``: the fraction of the level's latents matched
        with a cosine above ``t``.

    See Also
    --------
    fit_seeds : Fit the runs.
    stable_latents : Which latents every run finds.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._consistency import seed_agreement
    >>> rng = np.random.RandomState(0)
    >>> dictionary = rng.standard_normal((8, 20))
    >>> runs = [dictionary, dictionary[rng.permutation(8)]]
    >>> table = seed_agreement(runs, level_sizes=(8,))
    >>> table[["run_a", "run_b", "level", "mean_cosine", "fraction_above_0.9"]]
       run_a  run_b  level  mean_cosine  fraction_above_0.9
    0      0      1      0          1.0                 1.0
    """
    dictionaries, level_sizes = _collect_runs(runs, level_sizes)
    thresholds = _check_thresholds(thresholds)
    n_runs = len(dictionaries)
    if reference is None:
        pairs = [(a, b) for a in range(n_runs) for b in range(a + 1, n_runs)]
    else:
        reference = _check_run_index(reference, n_runs, "reference")
        pairs = [(reference, b) for b in range(n_runs) if b != reference]

    rows = []
    for run_a, run_b in pairs:
        for level, size in enumerate(level_sizes):
            _, _, cosine = _match(
                dictionaries[run_a][:size], dictionaries[run_b][:size], absolute
            )
            row = {
                "run_a": run_a,
                "run_b": run_b,
                "level": level,
                "n_latents": size,
                "mean_cosine": float(cosine.mean()),
            }
            for threshold in thresholds:
                row[f"fraction_above_{threshold:g}"] = float(np.mean(cosine > threshold))
            rows.append(row)
    return pd.DataFrame(rows)


def stable_latents(
    runs, *, threshold=0.9, reference=0, level_sizes=None, absolute=False
):
    """Latents of a reference run that every other run finds again.

    The whole dictionary of the reference run is matched with the whole
    dictionary of each other run by :func:`match_latents` (not level by
    level, so a feature found in another level of another run still counts:
    the question is whether it exists, not where it settled). A latent is
    stable when its matched cosine exceeds ``threshold`` in every other run.

    Parameters
    ----------
    runs : sequence of estimator or array-like
        At least two runs: fitted estimators (``components_`` and, when
        present, ``level_sizes_``) or dictionaries of shape
        ``(n_latents, n_features)``, all with the same ``n_features``.
    threshold : float, default=0.9
        Cosine a match must exceed, in every other run, for the latent to be
        stable.
    reference : int, default=0
        Index of the run whose latents are listed.
    level_sizes : sequence of int, default=None
        Prefix sizes used to label each latent with its level (the first
        level whose prefix contains it). None takes the runs' shared
        ``level_sizes_``, or a single level. Latents beyond the last level
        have level -1.
    absolute : bool, default=False
        Match on ``|cosine|`` (signed baselines such as PCA); see
        :func:`match_latents`.

    Returns
    -------
    latents : pandas.DataFrame
        One row per latent of the reference run, with the columns
        ``latent``, ``level``, ``min_cosine`` and ``mean_cosine`` (of its
        matches across the other runs; an unmatched latent, possible only
        when another run is smaller, counts as cosine 0), ``stable``, and for
        each other run ``j`` the matched latent ``match_run_{j}`` (-1 when
        unmatched) and its cosine ``cosine_run_{j}``.

    See Also
    --------
    seed_agreement : Agreement summarised per level.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._consistency import stable_latents
    >>> rng = np.random.RandomState(0)
    >>> shared = rng.standard_normal((3, 50))
    >>> runs = [np.vstack([shared, rng.standard_normal((1, 50))]) for _ in range(3)]
    >>> table = stable_latents(runs, threshold=0.9)
    >>> table["stable"].tolist()
    [True, True, True, False]
    >>> table["match_run_2"].tolist()[:3]
    [0, 1, 2]
    """
    threshold = _check_thresholds((threshold,))[0]
    dictionaries, level_sizes = _collect_runs(runs, level_sizes)
    n_runs = len(dictionaries)
    reference = _check_run_index(reference, n_runs, "reference")
    reference_dictionary = dictionaries[reference]
    n_latents = reference_dictionary.shape[0]

    levels = np.searchsorted(np.asarray(level_sizes), np.arange(n_latents), side="right")
    levels = np.where(levels < len(level_sizes), levels, -1)
    table = {"latent": np.arange(n_latents), "level": levels}
    matches, cosines, found = {}, [], []
    for other in range(n_runs):
        if other == reference:
            continue
        index_a, index_b, cosine = _match(reference_dictionary, dictionaries[other], absolute)
        matched = np.full(n_latents, -1)
        matched[index_a] = index_b
        matched_cosine = np.zeros(n_latents)
        matched_cosine[index_a] = cosine
        matches[f"match_run_{other}"] = matched
        matches[f"cosine_run_{other}"] = matched_cosine
        cosines.append(matched_cosine)
        found.append(matched >= 0)
    cosines = np.column_stack(cosines)
    table["min_cosine"] = cosines.min(axis=1)
    table["mean_cosine"] = cosines.mean(axis=1)
    table["stable"] = np.all((cosines > threshold) & np.column_stack(found), axis=1)
    table.update(matches)
    return pd.DataFrame(table)
