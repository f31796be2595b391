"""Recovery of known (planted) features: decoder direction and selectivity together."""

import numbers

import numpy as np
import pandas as pd


def feature_recovery(loadings, components, results, planted, *, feature_names=None,
                     min_cosine=0.9, alpha=0.05):
    """Which planted features a model recovered, judged by weights and behaviour.

    A feature counts as recovered when one latent (for a signed model, one
    sign of one latent) has both

    - a decoder direction with cosine ``>= min_cosine`` to the feature's
      loadings (for ``sign=-1``, the negated component), and
    - its highest selectivity, among the conditions of the feature's planted
      variable, at the planted condition, with ``q < alpha`` there.

    The selectivity is compared within the planted variable because a
    latent can be equally selective for conditions of different variables
    that contain one another (a direction-tuned latent is active only during
    movement, so its selectivity for "movement" is as high as for its
    direction); the planted variable is the one that tells the features
    apart.

    Parameters
    ----------
    loadings : array-like of shape (n_features, n_units)
        The planted features' loadings on the units.
    components : array-like of shape (n_latents, n_units)
        The model's decoder directions in the units' space (for a
        ``MatryoshkaSAE``: ``components_ * target_scale_``; for PCA and NMF:
        ``components_``). Rows of zeros never match.
    results : DataFrame
        Output of :meth:`SelectivityScorer.score_latents` for the same
        model's codes, with the planted variables among those scored.
    planted : dict of str to (str, object)
        Feature name to ``(variable, condition)`` (e.g.
        ``ReachingGroundTruth.planted_conditions``).
    feature_names : sequence of str, default=None
        Name of each row of ``loadings``; None uses the keys of ``planted``
        in order.
    min_cosine : float, default=0.9
        Smallest decoder cosine for a match.
    alpha : float, default=0.05
        q-value below which the planted condition counts as significant.

    Returns
    -------
    table : DataFrame
        One row per feature: ``feature``, ``variable``, ``condition``
        (planted), ``latent`` and ``sign`` (the recovering latent; if none,
        the best-matching latent by cosine), ``cosine``, ``top_condition``
        (that latent's most selective condition of the planted variable),
        ``selectivity`` and ``q`` (at the planted condition), and
        ``recovered``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn_nldisco.interpretation import feature_recovery
    >>> results = pd.DataFrame({
    ...     "latent": [0, 0, 1, 1], "sign": 1, "variable": "phase",
    ...     "condition": ["rest", "move", "rest", "move"],
    ...     "selectivity": [0.2, 0.8, 0.7, 0.3], "q": [0.9, 0.001, 0.01, 0.9]})
    >>> table = feature_recovery(np.eye(2), np.eye(2), results,
    ...                          {"moving": ("phase", "move"), "resting": ("phase", "rest")})
    >>> table[["feature", "latent", "cosine", "recovered"]]
       feature  latent  cosine  recovered
    0   moving       0     1.0       True
    1  resting       1     1.0       True
    """
    loadings = np.asarray(loadings, dtype=np.float64)
    components = np.asarray(components, dtype=np.float64)
    if loadings.ndim != 2 or components.ndim != 2 or loadings.shape[1] != components.shape[1]:
        raise ValueError(
            "loadings (n_features, n_units) and components (n_latents, n_units) must be "
            f"2-D with the same number of units; got {loadings.shape} and "
            f"{components.shape}.")
    if not isinstance(min_cosine, numbers.Real) or not -1.0 <= min_cosine <= 1.0:
        raise ValueError(f"min_cosine must be a number in [-1, 1]; got {min_cosine!r}.")
    if not isinstance(alpha, numbers.Real) or not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be a number in (0, 1]; got {alpha!r}.")
    feature_names = list(planted) if feature_names is None else list(feature_names)
    if len(feature_names) != len(loadings):
        raise ValueError(
            f"{len(feature_names)} feature names for {len(loadings)} rows of loadings.")
    unknown = [name for name in feature_names if name not in planted]
    if unknown:
        raise ValueError(f"no planted condition for the features {unknown}.")
    needed = {"latent", "variable", "condition", "selectivity", "q"}
    if not needed <= set(results.columns):
        raise ValueError(
            f"results lacks the columns {sorted(needed - set(results.columns))}; pass the "
            "output of SelectivityScorer.score_latents.")
    if "sign" not in results.columns:
        results = results.assign(sign=1)
    signs = np.unique(results["sign"].to_numpy())
    max_latent = results["latent"].max()
    if max_latent >= len(components):
        raise ValueError(
            f"results name latent {max_latent} but components has {len(components)} rows.")

    unit_loadings = loadings / np.maximum(np.linalg.norm(loadings, axis=1, keepdims=True),
                                          1e-300)
    norms = np.linalg.norm(components, axis=1)
    unit_components = components / np.where(norms > 0, norms, 1.0)[:, None]
    cosine = unit_loadings @ unit_components.T  # (n_features, n_latents)

    rows = []
    for f, name in enumerate(feature_names):
        variable, condition = planted[name]
        in_variable = results[results["variable"] == variable]
        if not (in_variable["condition"] == condition).any():
            raise ValueError(
                f"results has no condition {condition!r} of variable {variable!r} for "
                f"feature {name!r}; score the planted variables.")
        candidates = []
        for sign in signs:
            signed_cosine = sign * cosine[f]
            candidates += [(signed_cosine[j], j, sign) for j in range(len(components))]
        candidates.sort(key=lambda item: (-item[0], item[1], -item[2]))
        chosen = None
        for value, latent, sign in candidates:
            if value < min_cosine:
                break
            verdict = _planted_verdict(in_variable, latent, sign, condition, alpha)
            if verdict[-1]:
                chosen = (value, latent, sign, *verdict)
                break
        if chosen is None:
            value, latent, sign = candidates[0]
            chosen = (value, latent, sign,
                      *_planted_verdict(in_variable, latent, sign, condition, alpha)[:-1],
                      False)
        value, latent, sign, top, selectivity, q, recovered = chosen
        rows.append({"feature": name, "variable": variable, "condition": condition,
                     "latent": int(latent), "sign": int(sign), "cosine": float(value),
                     "top_condition": top, "selectivity": selectivity, "q": q,
                     "recovered": bool(recovered)})
    return pd.DataFrame(rows)


def _planted_verdict(in_variable, latent, sign, condition, alpha):
    """Top condition, selectivity and q at the planted condition, and the verdict."""
    rows = in_variable[(in_variable["latent"] == latent) & (in_variable["sign"] == sign)]
    at_planted = rows[rows["condition"] == condition]
    if at_planted.empty or rows["selectivity"].isna().all():
        return None, np.nan, np.nan, False
    # highest selectivity first; ties go to the smaller q-value
    ordered = rows.sort_values(["selectivity", "q"], ascending=[False, True], kind="stable")
    top = ordered["condition"].iloc[0]
    selectivity = float(at_planted["selectivity"].iloc[0])
    q = float(at_planted["q"].iloc[0])
    return top, selectivity, q, bool(top == condition and q < alpha)


__all__ = ["feature_recovery"]
