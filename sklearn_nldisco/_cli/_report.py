"""``report.html`` of ``nldisco run``: one self-contained page of the results.

The page needs no server and no network: the figures are embedded as base64
``data:`` URIs, the data as one JSON block, the style and the script inline.
It is rendered from the templates in ``templates/`` (the page, its summary
section, its style and its script) with autoescaping: every label is escaped
where it is written, and only the JSON block, escaped by :func:`embed_json`,
is written as it is.
"""

import base64
import functools
import json
import math
import warnings
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

# Rows of the selectivity table kept in the report: every row with q below
# KEEP_Q, and the TOP_ROWS_PER_LATENT most selective rows of every latent (so
# that each latent has a row to open its card from).
KEEP_Q = 0.05
TOP_ROWS_PER_LATENT = 3
N_TOP_UNITS = 10
N_TRACE_TRIALS = 3
TABLE_COLUMNS = ["model", "latent", "sign", "variable", "condition", "selectivity", "effect",
                 "mean_during", "mean_outside", "frac_during", "frac_outside", "n_during",
                 "p", "q", "level", "selective", "stable"]
# Title and one-line reading of each figure of the run; a feature card's
# title names its latent.
FIGURE_TEXT = {
    "decoder_weights": ("Decoder weights",
                        "How large the decoder weights are, and on how many units each latent "
                        "writes (participation ratio), by level."),
    "l0": ("Active latents per bin",
           "How many latents are active in each held-out bin (L0)."),
    "latent_frequency": ("How often each latent is active",
                         "Fraction of the held-out bins in which each latent is active, per "
                         "level; a latent that is never active is dead."),
    "unit_r2": ("Reconstruction of each unit",
                "Held-out R² of each unit's reconstruction, sorted."),
    "training_curves": ("Training curves",
                        "Loss on the training and validation bins and held-out explained "
                        "variance over the epochs."),
    "latent_ablation": ("Latent ablation",
                        "Held-out explained variance lost when one latent's code is set to "
                        "zero (the first seed's largest), and the share of the total loss "
                        "carried by the largest latents of each model."),
    "spectral_fidelity": ("Spectral fidelity",
                          "Welch spectra of the held-out bins and of each model's "
                          "reconstruction (mean over units, trial by trial), and each unit's "
                          "relative spectral error."),
    "level_k": ("Per-level k against one shared k",
                "Held-out explained variance (solid; unit-shifted control dashed) and "
                "latents used per bin of each level, for the first seed with its per-level "
                "k and refitted with one shared k of the last level's size."),
}
# Figures shown in the evaluation section rather than with the diagnostics.
EVALUATION_FIGURES = ("latent_ablation", "spectral_fidelity", "level_k")
FEATURE_CARD_TEXT = ("Feature card: latent {latent}",
                     "Tuning of latent {latent} to each scored variable, its activation and "
                     "its top units (one of the most selective latents).")


def _plain(value):
    """A JSON-ready copy: numpy scalars and arrays to Python, NaN and NA to None."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray, pd.Index, pd.Series)):
        return [_plain(item) for item in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return str(value)


def _rounded(values, digits=4):
    """Floats to ``digits`` significant digits (to keep the page small)."""
    return [None if not math.isfinite(v) else (0.0 if v == 0 else float(f"{v:.{digits}g}"))
            for v in np.asarray(values, dtype=np.float64).tolist()]


def embed_json(data):
    """``data`` as JSON text safe inside a ``<script type="application/json">`` block.

    ``<``, ``>`` and ``&`` are written as ``\\u`` escapes, so no string in the
    data can close the block (``</script>``) or open a comment; ``JSON.parse``
    restores them.

    Parameters
    ----------
    data : object
        JSON-serialisable data (NaN is not allowed: pass None instead).

    Returns
    -------
    text : str
    """
    text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def kept_rows(selectivity, alpha=KEEP_Q, top=TOP_ROWS_PER_LATENT):
    """The rows of the selectivity table shown in the report.

    Parameters
    ----------
    selectivity : DataFrame
        The table of ``selectivity.csv``.
    alpha : float, default=0.05
        Rows with ``q`` below this value are kept.
    top : int, default=3
        The ``top`` rows of highest ``selectivity`` of every latent (model,
        latent and sign) are kept too.

    Returns
    -------
    rows : DataFrame
        The kept rows, in the order of ``selectivity`` (index preserved).
    """
    if len(selectivity) == 0:
        return selectivity
    keys = ["model", "latent", "sign"]
    ranks = (selectivity.sort_values("selectivity", ascending=False, kind="stable")
             .groupby(keys, sort=False).cumcount())
    keep = (selectivity["q"] < alpha) | (ranks.reindex(selectivity.index) < top)
    return selectivity.loc[keep]


def _figure_uri(path):
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _figure_text(name):
    """Title and description of the figure ``name`` (a file stem of the run)."""
    if name in FIGURE_TEXT:
        return FIGURE_TEXT[name]
    latent = name.removeprefix("feature_card_latent")
    if latent != name and latent.isdigit():
        return tuple(text.format(latent=latent) for text in FEATURE_CARD_TEXT)
    return name.replace("_", " ").capitalize(), ""


def _trace_trials(metadata, n_trials):
    """Positions of the bins of the first held-out trials, with their time and labels.

    A recording without trials (every ``trial_id`` -1) shows its first
    held-out time blocks (``interval_id``) instead.
    """
    trial_id = metadata["trial_id"].to_numpy()
    name = "trial"
    if not (trial_id >= 0).any() and "interval_id" in metadata:
        trial_id, name = metadata["interval_id"].to_numpy(), "time block"
    chosen = list(pd.unique(trial_id[trial_id >= 0]))[:n_trials]
    trials = []
    for trial in chosen:
        where = np.flatnonzero(trial_id == trial)
        start = metadata["bin_start"].to_numpy()[where]
        label = f"{name} {int(trial)}"
        if "trial_type" in metadata:
            label += f" (type {metadata['trial_type'].iloc[where[0]]})"
        trials.append({"where": where, "label": label,
                       "t": _rounded(start - start[0], 3)})
    return trials


def _cards(selectivity, codes, X, estimators, metadata, unit_names, variables, n_top,
           n_trials):
    """Per latent: tuning per condition, top units and held-out activation traces."""
    conditions = {variable: list(pd.unique(
        selectivity.loc[selectivity["variable"] == variable, "condition"]))
        for variable in variables}
    trials = _trace_trials(metadata, n_trials) if len(metadata) else []
    trial_info = [{"label": trial["label"], "t": trial["t"]} for trial in trials]
    if len(selectivity) == 0:  # no behavioural variable to score
        return {}, conditions, trial_info
    keys = ["model", "sign", "latent", "variable", "condition"]
    values = dict(zip(
        selectivity[keys].itertuples(index=False, name=None),
        selectivity[["mean_during", "frac_during"]].to_numpy(dtype=np.float64).tolist()))
    missing = [math.nan, math.nan]
    cards = {}
    for (model, sign), group in selectivity.groupby(["model", "sign"], sort=False):
        Z = np.asarray(codes[model], dtype=np.float64) * sign if model in codes else None
        decoder = getattr(estimators.get(model), "components_", None)
        decoder = None if decoder is None else np.asarray(decoder, dtype=np.float64) * sign
        for latent in sorted(pd.unique(group["latent"])):
            tuning = {}
            for variable in variables:
                pairs = np.array([values.get((model, sign, latent, variable, condition), missing)
                                  for condition in conditions[variable]]).reshape(-1, 2)
                tuning[variable] = {"mean": _rounded(pairs[:, 0]), "frac": _rounded(pairs[:, 1])}
            latent = int(latent)
            card = {"model": model, "latent": latent, "sign": int(sign),
                    "tuning": tuning, "units": None, "traces": []}
            if Z is not None:
                card["traces"] = [_rounded(Z[trial["where"], latent], 3) for trial in trials]
                card["units"] = _units(latent, X, Z, decoder, unit_names, n_top)
            cards[f"{model}|{latent}|{int(sign)}"] = card
    return cards, conditions, trial_info


def _units(latent, X, Z, decoder, unit_names, n_top):
    from ..interpretation import latent_units

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a latent never active in the held-out bins
        units = latent_units(latent, X, Z, components=decoder, unit_names=unit_names,
                             n_top=n_top)
    agreement = units.attrs.get("agreement", {})

    names = units["unit"].astype(str).tolist()
    scores = {name: _rounded(units[f"{name}_weight" if name == "decoder" else "activity_z"], 3)
              for name in ("decoder", "activity")}
    ranks = {name: _plain(units[f"{name}_rank"].to_numpy(dtype=np.float64))
             for name in ("decoder", "activity")}

    def top(by):
        rank = units[f"{by}_rank"].to_numpy(dtype=np.float64)
        if np.isnan(rank).all():
            return []
        return [{"unit": names[i], "decoder": scores["decoder"][i],
                 "activity": scores["activity"][i], "decoder_rank": ranks["decoder"][i],
                 "activity_rank": ranks["activity"][i]}
                for i in np.argsort(rank, kind="stable")[:n_top] if not np.isnan(rank[i])]

    return {"n_active_bins": _plain(units.attrs.get("n_active_bins")),
            "by_decoder": top("decoder"), "by_activity": top("activity"),
            "jaccard": _plain(agreement.get("jaccard_decoder_activity")),
            "spearman": _plain(agreement.get("spearman_decoder_activity")),
            "n_top": int(units.attrs.get("n_top", n_top))}


def _fmt(value, digits=3):
    """A number of the summary as text: floats to ``digits`` decimals, missing as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@functools.cache
def _environment():
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("sklearn_nldisco._cli", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined)
    environment.filters["fmt"] = _fmt
    return environment


def _facts(metrics):
    """The data set, split and seeds: (name, value) pairs of the summary."""
    return [("data set", metrics.get("source")), ("units", metrics.get("n_units")),
            ("trials", metrics.get("n_trials")),
            ("bins (training / held out)",
             f"{metrics.get('n_bins_train')} / {metrics.get('n_bins_held_out')}"),
            ("held-out split", metrics.get("split")),
            ("MSAE seeds", ", ".join(str(s) for s in metrics.get("seeds", []))),
            ("stable latents (first seed)", metrics.get("n_stable_latents")),
            ("selectivity variables", ", ".join(metrics.get("selectivity_variables", [])))]


def _true(column):
    """A boolean column with missing values as False."""
    return column.astype("boolean").fillna(False).to_numpy(dtype=bool)


def _count(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def _findings(metrics, selectivity):
    """One plain sentence per model: what it found, how many, how stable, how it fits.

    Parameters
    ----------
    metrics : dict
        The content of ``metrics.json``.
    selectivity : DataFrame
        The table of ``selectivity.csv`` (``model``, ``latent``,
        ``variable``, ``selective`` and ``stable`` are used).

    Returns
    -------
    findings : list of (str, str)
        Model name and its sentence (plain text; the template escapes it).
    """
    live = metrics.get("n_live_latents", {})
    truth = (metrics.get("ground_truth") or {}).get("models", {})
    selective_rows = (selectivity.loc[_true(selectivity["selective"])]
                      if len(selectivity) and "selective" in selectivity else selectivity)
    findings = []
    for name, model in metrics.get("models", {}).items():
        unit = "latent" if model.get("kind") == "msae" else "component"
        size = model.get("n_latents", model.get("n_components"))
        n_live = live.get(name)
        rows = (selective_rows.loc[selective_rows["model"] == name]
                if len(selective_rows) else selective_rows)
        n_selective = int(rows["latent"].nunique()) if len(rows) else 0
        if n_live is not None and n_live != size:
            text = f"Of its {_count(size, unit)}, {n_live} are live; "
        else:
            text = f"Of its {_count(size, unit)}, "
        if n_selective == 0:
            text += "none is selective for a behavioural variable."
        else:
            per = rows.groupby("variable", sort=False)["latent"].nunique().sort_values(
                ascending=False, kind="stable")
            share = f" ({100 * n_selective / n_live:.0f} per 100 live)" if n_live else ""
            text += (f"{n_selective} {'is' if n_selective == 1 else 'are'} selective{share}: "
                     + ", ".join(f"{count} for {variable}" for variable, count in per.items())
                     + ".")
            stable = (rows.loc[_true(rows["stable"]), "latent"].nunique()
                      if "stable" in rows and rows["stable"].notna().any() else None)
            if stable is not None:
                text += (f" {stable} of the {n_selective} "
                         f"{'is' if stable == 1 else 'are'} found by every other seed.")
        ev, shifted = model.get("explained_variance"), model.get("explained_variance_shifted")
        if ev is not None:
            text += f" It explains {ev:.2f} of the held-out variance"
            if shifted is not None:
                more = "more" if ev >= shifted else "less"
                text += f", {abs(ev - shifted):.2f} {more} than of unit-shifted data"
            text += "."
        found = truth.get(name)
        if found:
            text += (f" Of the {found['n_tested']} planted features with held-out bins, "
                     f"{found['n_selective_for_planted']} are matched by a latent most "
                     "selective for the planted condition")
            if found.get("median_correlation") is not None:
                text += f" (median correlation {found['median_correlation']:.2f})"
            text += "."
        findings.append((name, text))
    return findings


def _ground_truth(metrics):
    """Rows of the ground-truth table: one per planted feature, one cell per model."""
    truth = metrics.get("ground_truth") or {}
    if not truth.get("models"):
        return None
    models = list(truth["models"])
    rows = []
    for index, feature in enumerate(truth["features"]):
        cells = []
        for model in models:
            row = truth["models"][model]["rows"][index]
            verdict = row.get("selective_for_planted")
            cells.append({
                "latent": row["latent"], "sign": row["sign"],
                "correlation": row.get("correlation"), "cosine": row.get("cosine"),
                "top_condition": row.get("top_condition"), "q": row.get("q"),
                "verdict": {True: "yes", False: "no", None: "untested"}[verdict]})
        rows.append({**feature, "cells": cells})
    totals = [(truth["models"][model]["n_selective_for_planted"],
               truth["models"][model]["n_tested"]) for model in models]
    return {"models": models, "rows": rows, "totals": totals}


def _summary(metrics):
    """What the summary section shows, from ``metrics``; the template formats it.

    Every explained variance comes with its unit-shifted control (None,
    shown as a dash, where ``metrics`` has none).
    """
    selective = metrics.get("n_selective_latents", {})
    live = metrics.get("n_live_latents", {})
    models = []
    for name, model in metrics.get("models", {}).items():
        sizes = model.get("level_sizes", [])
        shifted = model.get("explained_variance_per_level_shifted") or [None] * len(sizes)
        budgets = model.get("k_per_level") or [None] * len(sizes)
        models.append({
            "name": name, "components": model.get("n_latents", model.get("n_components")),
            "explained_variance": model.get("explained_variance"),
            "explained_variance_shifted": model.get("explained_variance_shifted"),
            "structure_explained": model.get("structure_explained"),
            "l0": model.get("l0"),
            "levels": [{"size": int(size),
                        "explained_variance": model["explained_variance_per_level"][level],
                        "explained_variance_shifted": shifted[level],
                        "l0": model["l0_per_level"][level], "k": budgets[level]}
                       for level, size in enumerate(sizes)],
            "shared_k": model.get("shared_k"),
            "dead_fraction": model.get("dead_fraction"), "n_epochs": model.get("n_epochs"),
            "n_selective_latents": selective.get(name),
            "n_live_latents": live.get(name),
            "selective_per_100": (100 * selective[name] / live[name]
                                  if live.get(name) and selective.get(name) is not None
                                  else None),
            "co_smoothing": model.get("co_smoothing_bits_per_spike"),
            "dominance_median": model.get("single_unit_dominance_median"),
            "single_unit_fraction": model.get("single_unit_fraction"),
            "single_unit_fraction_selective": model.get("single_unit_fraction_selective")})
    agreement = metrics.get("seed_agreement")
    if agreement:
        agreement = list(zip(agreement.get("mean_cosine_per_level", []),
                             agreement.get("fraction_above_0.9_per_level", [])))
    evaluation = metrics.get("evaluation", {})
    co_smoothing = evaluation.get("co_smoothing", {})
    return {"facts": _facts(metrics), "models": models, "agreement": agreement,
            "n_levels": max((len(model["levels"]) for model in models), default=0),
            "co_smoothing": co_smoothing,
            "smoothing_baseline": co_smoothing.get("smoothing_baseline"),
            "single_unit_threshold": evaluation.get("single_unit_dominance", {}).get(
                "threshold")}


def _difference(a, b):
    return None if a is None or b is None else a - b


def _level_k(metrics):
    """The per-level table of the evaluation section, or None.

    Shown for a per-level ``k`` (with its shared-``k`` comparison,
    ``level_k_comparison`` of ``metrics``) and for a window run (whose
    levels the section shows beside the ablation and spectra); rows are the
    levels of the first seed.
    """
    comparison = metrics.get("level_k_comparison")
    models = metrics.get("models", {})
    windowed = any("explained_variance_per_lag" in model for model in models.values())
    if comparison is None and not windowed:
        return None
    if comparison is not None:
        name, first = comparison["per_level"]["model"], comparison["per_level"]
    else:
        name = f"msae_seed{(metrics.get('seeds') or [0])[0]}"
        first = models.get(name)
        if first is None or not first.get("level_sizes"):
            return None
    shared = comparison["shared"] if comparison is not None else None
    sizes = comparison["level_sizes"] if comparison is not None else first["level_sizes"]

    def side(values, level):
        if values is None:
            return None
        ev = values["explained_variance_per_level"][level]
        shifted = (values.get("explained_variance_per_level_shifted") or [None] * len(sizes))[
            level]
        return {"k": (values.get("k_per_level") or [None] * len(sizes))[level],
                "l0": values["l0_per_level"][level], "explained_variance": ev,
                "explained_variance_shifted": shifted,
                "structure_explained": _difference(ev, shifted)}

    rows = [{"level": level, "size": int(size), "first": side(first, level),
             "shared": side(shared, level)} for level, size in enumerate(sizes)]
    return {"model": name, "rows": rows, "shared_k": None if shared is None else shared["k"],
            "per_level_k": comparison is not None,
            "tradeoff": _tradeoff(rows, shared["k"]) if shared is not None else []}


def _tradeoff(rows, k):
    """One sentence per level: what the per-level ``k`` changes against one shared ``k``."""
    sentences = []
    for row in rows:
        mine, other = row["first"], row["shared"]
        fewer = other["l0"] - mine["l0"]
        gained = mine["explained_variance"] - other["explained_variance"]
        text = (f"Level {row['level']} ({row['size']} latents): its own k={mine['k']} uses "
                f"{abs(fewer):.2f} {'fewer' if fewer >= 0 else 'more'} latents per bin than "
                f"one shared k={k} ({mine['l0']:.2f} against {other['l0']:.2f}) and explains "
                f"{abs(gained):.3f} {'more' if gained >= 0 else 'less'} of the held-out "
                f"variance ({mine['explained_variance']:.3f} against "
                f"{other['explained_variance']:.3f})")
        if mine["structure_explained"] is not None and other["structure_explained"] is not None:
            text += (f"; beyond the unit-shifted control, {mine['structure_explained']:.3f} "
                     f"against {other['structure_explained']:.3f}")
        sentences.append(text + ".")
    return sentences


def write_report(out_dir, *, metrics, selectivity, figures, codes, X, metadata,
                 estimators=None, unit_names=None, filename="report.html"):
    """Write the self-contained HTML report of a run.

    Parameters
    ----------
    out_dir : path-like
        Folder of the run; the report is written there.
    metrics : dict
        The content of ``metrics.json``.
    selectivity : DataFrame
        The table of ``selectivity.csv`` (all models).
    figures : dict of str to path-like
        PNG figures by name, embedded in this order.
    codes : dict of str to ndarray of shape (n_bins, n_latents)
        Held-out codes of each model named in ``selectivity``.
    X : ndarray of shape (n_bins, n_units)
        Held-out activity the codes were computed from.
    metadata : DataFrame
        ``bin_metadata`` rows of the held-out bins, in the order of ``X``
        (``trial_id`` and ``bin_start`` are used for the activation traces).
    estimators : dict of str to estimator, default=None
        Fitted models by name; their ``components_`` give the decoder weights.
    unit_names : array-like of shape (n_units,), default=None
        Names of the units; positions by default.
    filename : str, default="report.html"

    Returns
    -------
    path : pathlib.Path
        The written report.

    Notes
    -----
    The latent-condition table keeps the rows with ``q < 0.05`` and the three
    most selective rows of each latent (``kept_rows``). Every latent gets a
    card: its mean activation and fraction of active bins per condition of
    each variable (all rows of the table), its top units by decoder weight
    and by mean z-scored activity while active (``latent_units``) with their
    top-10 Jaccard overlap and Spearman correlation, and its activation over
    the first three held-out trials.
    """
    estimators = estimators or {}
    metadata = metadata.reset_index(drop=True)
    selectivity = selectivity.reset_index(drop=True)
    variables = list(pd.unique(selectivity["variable"])) if len(selectivity) else []
    cards, conditions, trials = _cards(selectivity, codes, np.asarray(X), estimators,
                                       metadata, unit_names, variables, N_TOP_UNITS,
                                       N_TRACE_TRIALS)
    rows = kept_rows(selectivity)
    columns = [c for c in TABLE_COLUMNS if c in rows.columns]
    levels = {name: m.get("level_sizes") for name, m in metrics.get("models", {}).items()}
    data = {
        "columns": columns,
        "rows": _plain(rows[columns].astype(object).where(rows[columns].notna(), None)
                       .to_numpy().tolist()),
        "n_rows_total": int(len(selectivity)),
        "keep_q": KEEP_Q, "top_rows_per_latent": TOP_ROWS_PER_LATENT,
        "conditions": _plain(conditions), "variables": _plain(variables),
        "level_sizes": _plain(levels), "trials": trials, "cards": cards,
    }
    page = _environment().get_template("report.html").render(
        title=f"nldisco report: {metrics.get('source', '')}",
        versions=[f"{name} {version}" for name, version in metrics.get("versions", {}).items()],
        # feature cards are wide: a row of their own
        figures=[(*_figure_text(name), _figure_uri(path), name.startswith("feature_card"))
                 for name, path in figures.items() if name not in EVALUATION_FIGURES],
        evaluation_figures=[(*_figure_text(name), _figure_uri(path), False)
                            for name, path in figures.items() if name in EVALUATION_FIGURES],
        figures_model=(metrics.get("seeds") or [None])[0],
        findings=_findings(metrics, selectivity), ground_truth=_ground_truth(metrics),
        ground_truth_skipped=(metrics.get("ground_truth") or {}).get("skipped"),
        keep_q=KEEP_Q, top_rows_per_latent=TOP_ROWS_PER_LATENT, level_k=_level_k(metrics),
        data_json=embed_json(data),  # written unescaped: embed_json makes it safe
        **_summary(metrics))
    path = Path(out_dir) / filename
    path.write_text(page, encoding="utf-8")
    return path

