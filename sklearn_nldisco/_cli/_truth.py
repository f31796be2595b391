"""Ground truth of ``nldisco run`` on simulated data: how well each planted feature is found.

On the built-in simulated session the features that drive the spikes are
known (``ReachingGroundTruth``). For every model and every planted feature
the run finds the latent whose held-out activity correlates best with the
feature's activity in the same bins, then asks whether that latent is most
selective for the feature's planted condition (``feature_recovery``, on
that latent alone).
"""

import warnings

import numpy as np
import pandas as pd

# Variables of ``ReachingGroundTruth.condition_variables`` tested against
# circular shifts (they vary within a trial) and against permuted trials.
WITHIN_TRIAL = ("phase", "epoch")
TRIAL_LEVEL = ("reach_direction", "reach_speed")
COLUMNS = ["model", "feature", "variable", "condition", "latent", "sign", "correlation",
           "cosine", "top_condition", "selectivity", "q", "selective_for_planted"]


def _correlations(activity, parts):
    """Pearson correlation of every feature (columns of activity) with every part."""
    a = activity - activity.mean(axis=0)
    z = parts - parts.mean(axis=0)
    norms = np.linalg.norm(a, axis=0)[:, None] * np.linalg.norm(z, axis=0)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a.T @ z) / norms
    return np.where(norms > 0, r, np.nan)  # a silent latent or feature: no correlation


def best_matches(activity, codes):
    """For each feature, the latent (and sign) whose activity correlates best with it.

    Parameters
    ----------
    activity : ndarray of shape (n_bins, n_features)
        Mean activity of each feature in each bin.
    codes : ndarray of shape (n_bins, n_latents)
        Codes of one model in the same bins. Signed codes (PCA) are split
        into their positive and negative parts, as the selectivity test
        splits them.

    Returns
    -------
    latent, sign : ndarray of int of shape (n_features,)
    correlation : ndarray of shape (n_features,)
        NaN where no latent varies.
    """
    codes = np.asarray(codes, dtype=np.float64)
    signs = (1, -1) if (codes < 0).any() else (1,)
    best = np.full(activity.shape[1], -np.inf)
    latent = np.zeros(activity.shape[1], dtype=np.int64)
    sign = np.ones(activity.shape[1], dtype=np.int64)
    for each in signs:
        r = _correlations(activity, np.maximum(each * codes, 0.0))
        r = np.where(np.isnan(r), -np.inf, r)
        column = r.argmax(axis=1)
        value = r[np.arange(len(column)), column]
        better = value > best
        best[better], latent[better], sign[better] = value[better], column[better], each
    return latent, sign, np.where(np.isfinite(best), best, np.nan)


def _decoder(estimator):
    """Decoder directions in the units' space (the MSAE's undo its input scaling)."""
    components = np.asarray(estimator.components_, dtype=np.float64)
    scale = getattr(estimator, "target_scale_", None)
    return components if scale is None else components * np.asarray(scale)


def recovery_table(truth, codes, estimators, metadata, *, n_permutations=200,
                   random_state=None, alpha=0.05):
    """How well each model's best-matching latent finds each planted feature.

    Parameters
    ----------
    truth : ReachingGroundTruth
        The features of the simulated session.
    codes : dict of str to ndarray of shape (n_bins, n_latents)
        Held-out codes of each model.
    estimators : dict of str to estimator
        The fitted models, by the same names (their ``components_`` give
        the decoder cosines).
    metadata : DataFrame
        ``bin_metadata`` rows of the held-out bins, in the order of the codes
        (``bin_start``, ``bin_stop``, ``trial_id``, ``phase``,
        ``trial_type``, ``speed``).
    n_permutations, random_state : int
        Of the selectivity test of the matched latents.
    alpha : float, default=0.05
        q-value below which the planted condition counts as significant.

    Returns
    -------
    table : DataFrame
        One row per model and feature (``COLUMNS``): the planted
        ``variable`` and ``condition``; the best-matching ``latent`` and
        ``sign`` and their ``correlation`` with the feature over the
        held-out bins; the ``cosine`` of the latent's decoder direction with
        the feature's loadings; the latent's ``top_condition`` among the
        planted variable's conditions, its ``selectivity`` and ``q`` at the
        planted condition, and ``selective_for_planted`` (top condition
        is the planted one with ``q < alpha``). The q-values are corrected
        over the matched latents only, one per feature. Where the planted
        condition has no held-out bin, the last four are missing.

    Raises
    ------
    ValueError
        If ``metadata`` lacks the columns the planted conditions need.
    """
    from ..interpretation import SelectivityScorer, feature_recovery

    bounds = metadata[["bin_start", "bin_stop"]].to_numpy(dtype=np.float64)
    activity = truth.binned_activity(bounds)
    variables = truth.condition_variables(metadata).reset_index(drop=True)
    variables["trial_id"] = metadata["trial_id"].to_numpy()
    planted = truth.planted_conditions
    scorers = [SelectivityScorer(variables=list(names), null=null,
                                 n_permutations=n_permutations, random_state=random_state)
               for names, null in ((WITHIN_TRIAL, "circular"), (TRIAL_LEVEL, "trial"))]
    rows = []
    for model, Z in codes.items():
        Z = np.asarray(Z, dtype=np.float64)
        latents, signs, correlations = best_matches(activity, Z)
        matched = sorted(set(latents.tolist()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a matched latent silent in some variable
            results = pd.concat([scorer.score_latents(Z[:, matched], variables)
                                 for scorer in scorers], ignore_index=True)
        results["latent"] = np.asarray(matched)[results["latent"].to_numpy()]
        decoder = _decoder(estimators[model])
        for f, feature in enumerate(truth.feature_names):
            variable, condition = planted[feature]
            latent, sign = int(latents[f]), int(signs[f])
            row = {"model": model, "feature": feature, "variable": variable,
                   "condition": condition, "latent": latent, "sign": sign,
                   "correlation": float(correlations[f]), "cosine": np.nan,
                   "top_condition": None, "selectivity": np.nan, "q": np.nan,
                   "selective_for_planted": pd.NA}
            own = results[(results["latent"] == latent) & (results["sign"] == sign)]
            if ((own["variable"] == variable) & (own["condition"] == condition)).any():
                # feature_recovery on this one latent: its verdict, without a cosine bar
                verdict = feature_recovery(
                    truth.feature_loadings[[f]], sign * decoder[[latent]],
                    own.assign(latent=0, sign=1), {feature: (variable, condition)},
                    min_cosine=-1.0, alpha=alpha).iloc[0]
                row.update(cosine=float(verdict["cosine"]),
                           top_condition=verdict["top_condition"],
                           selectivity=float(verdict["selectivity"]), q=float(verdict["q"]),
                           selective_for_planted=bool(verdict["recovered"]))
            else:
                unit = truth.feature_loadings[f] / np.linalg.norm(truth.feature_loadings[f])
                norm = np.linalg.norm(decoder[latent])
                row["cosine"] = float(sign * decoder[latent] @ unit / norm) if norm else np.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def recovery_metrics(table):
    """The ``ground_truth`` entry of ``metrics.json`` from :func:`recovery_table`.

    Returns
    -------
    metrics : dict
        ``features`` (their names, planted variables and conditions) and,
        per model, ``n_selective_for_planted``, ``n_tested`` (features whose
        planted condition occurs in the held-out bins), ``median_correlation``
        and the ``rows`` of the table (without ``model``).
    """
    features = table.drop_duplicates("feature")
    models = {}
    for model, rows in table.groupby("model", sort=False):
        verdict = rows["selective_for_planted"]
        models[model] = {
            "n_selective_for_planted": sum(value is True for value in verdict),
            "n_tested": int(verdict.notna().sum()),
            "median_correlation": (float(rows["correlation"].median())
                                   if rows["correlation"].notna().any() else None),
            "rows": rows.drop(columns="model").astype(object)
                        .where(rows.drop(columns="model").notna(), None)
                        .to_dict(orient="records")}
    return {"n_features": int(len(features)),
            "features": [{"feature": row.feature, "variable": row.variable,
                          "condition": row.condition}
                         for row in features.itertuples(index=False)],
            "models": models}
