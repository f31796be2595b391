"""``report.html`` of ``nldisco run``: one self-contained page of the results.

The page needs no server and no network: the figures are embedded as base64
``data:`` URIs, the data as one JSON block, the style and the script inline.
"""

import base64
import html
import json
import math
import warnings
from pathlib import Path

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


def kept_rows(selectivity, max_q=KEEP_Q, top=TOP_ROWS_PER_LATENT):
    """The rows of the selectivity table shown in the report.

    Parameters
    ----------
    selectivity : DataFrame
        The table of ``selectivity.csv``.
    max_q : float, default=0.05
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
    keep = (selectivity["q"] < max_q) | (ranks.reindex(selectivity.index) < top)
    return selectivity.loc[keep]


def _figure_uri(path):
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _trace_trials(metadata, n_trials):
    """Positions of the bins of the first held-out trials, with their time and labels."""
    trial_id = metadata["trial_id"].to_numpy()
    chosen = list(pd.unique(trial_id[trial_id >= 0]))[:n_trials]
    trials = []
    for trial in chosen:
        where = np.flatnonzero(trial_id == trial)
        start = metadata["bin_start"].to_numpy()[where]
        label = f"trial {int(trial)}"
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
        units = latent_units(latent, X, Z, decoder=decoder, unit_names=unit_names,
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
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _summary_html(metrics):
    """The summary section: data set, models, explained variance, L0, agreement."""
    e = html.escape
    facts = [("data set", metrics.get("source")), ("units", metrics.get("n_units")),
             ("trials", metrics.get("n_trials")),
             ("bins (training / held out)",
              f"{metrics.get('n_bins_train')} / {metrics.get('n_bins_held_out')}"),
             ("held-out split", metrics.get("split")),
             ("MSAE seeds", ", ".join(str(s) for s in metrics.get("seeds", []))),
             ("stable latents (first seed)", metrics.get("n_stable_latents")),
             ("selectivity variables", ", ".join(metrics.get("selectivity_variables", [])))]
    out = ['<table class="facts">']
    out += [f"<tr><th>{e(name)}</th><td>{_fmt(value)}</td></tr>" for name, value in facts]
    out.append("</table>")

    models = metrics.get("models", {})
    n_levels = max((len(m.get("level_sizes", [])) for m in models.values()), default=0)
    head = ["model", "components", "explained variance", "L0"]
    for level in range(n_levels):
        head += [f"EV level {level}", f"L0 level {level}"]
    head += ["dead fraction", "epochs", "selective latents"]
    out.append('<h3>Held-out reconstruction</h3><table class="grid" id="summary-models">'
               "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>")
    selective = metrics.get("n_selective_latents", {})
    for name, m in models.items():
        sizes = m.get("level_sizes", [])
        cells = [e(name), _fmt(m.get("n_latents", m.get("n_components"))),
                 _fmt(m.get("explained_variance")), _fmt(m.get("l0"), 2)]
        for level in range(n_levels):
            if level < len(sizes):
                size = f" <small>({int(sizes[level])})</small>"
                cells += [_fmt(m["explained_variance_per_level"][level]) + size,
                          _fmt(m["l0_per_level"][level], 2)]
            else:
                cells += ["–", "–"]
        cells += [_fmt(m.get("dead_fraction")), _fmt(m.get("n_epochs")),
                  _fmt(selective.get(name))]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    out.append('<p class="note">EV: explained variance (1 − SSE/SST) on the held-out bins; '
               "EV level <i>l</i> reconstructs from the first latents of the level only "
               "(their count in brackets); L0: mean number of non-zero codes per bin. "
               "PCA and NMF have <i>k</i> components.</p>")

    agreement = metrics.get("seed_agreement")
    out.append("<h3>Seed agreement</h3>")
    if agreement:
        cos = agreement.get("mean_cosine_per_level", [])
        frac = agreement.get("fraction_above_0.9_per_level", [])
        out.append('<table class="grid" id="summary-agreement"><thead><tr><th>level</th>'
                   "<th>mean best cosine</th><th>fraction above 0.9</th></tr></thead><tbody>")
        for level, (c, f) in enumerate(zip(cos, frac)):
            out.append(f"<tr><td>{level}</td><td>{_fmt(c)}</td><td>{_fmt(f)}</td></tr>")
        out.append("</tbody></table><p class=\"note\">Decoder rows matched between pairs "
                   "of seeds, averaged over the pairs.</p>")
    else:
        out.append("<p>One seed: no seed agreement.</p>")
    return "\n".join(out)


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
    figure_html = "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="{_figure_uri(path)}">'
        f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>"
        for name, path in figures.items())
    versions = ", ".join(f"{html.escape(k)} {html.escape(str(v))}"
                         for k, v in metrics.get("versions", {}).items())
    page = (_TEMPLATE
            .replace("@@TITLE@@", html.escape(f"nldisco report: {metrics.get('source', '')}"))
            .replace("@@SUMMARY@@", _summary_html(metrics))
            .replace("@@FIGURES@@", figure_html)
            .replace("@@VERSIONS@@", versions)
            .replace("@@KEEP@@", f"q &lt; {KEEP_Q:g} or among the {TOP_ROWS_PER_LATENT} "
                                 "most selective rows of its latent")
            .replace("@@STYLE@@", _STYLE)
            .replace("@@SCRIPT@@", _SCRIPT)
            .replace("@@DATA@@", embed_json(data)))
    path = Path(out_dir) / filename
    path.write_text(page, encoding="utf-8")
    return path


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<style>@@STYLE@@</style></head>
<body>
<header><h1>@@TITLE@@</h1><p class="note">@@VERSIONS@@</p>
<nav><a href="#summary">summary</a> · <a href="#figures">figures</a> ·
<a href="#latents">latents</a></nav></header>
<section id="summary"><h2>Summary</h2>
@@SUMMARY@@
</section>
<section id="figures"><h2>Diagnostics</h2><div class="figures">
@@FIGURES@@
</div></section>
<section id="latents"><h2>Latent–condition mappings</h2>
<p class="note">Rows of <code>selectivity.csv</code> kept: @@KEEP@@.
Click a column header to sort, a row to open the latent's card.</p>
<form id="filters" onsubmit="return false">
<label>model <select id="f-model"><option value="">all</option></select></label>
<label>variable <select id="f-variable"><option value="">all</option></select></label>
<label>level <select id="f-level"><option value="">all</option></select></label>
<label>max q <input id="f-q" type="number" min="0" max="1" step="0.001" value="1"></label>
<label>stability <select id="f-stable"><option value="">all</option>
<option value="true">stable</option><option value="false">not stable</option></select></label>
<label><input id="f-selective" type="checkbox"> selective only</label>
<span id="row-count"></span></form>
<div class="split"><div class="table-wrap"><table class="grid" id="mappings"><thead></thead>
<tbody></tbody></table></div>
<aside id="card" hidden></aside></div>
</section>
<script type="application/json" id="report-data">@@DATA@@</script>
<script>@@SCRIPT@@</script>
</body></html>
"""

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#222}
h1{font-size:1.4em;margin:.6em 0 .2em}h2{border-bottom:1px solid #ccc;margin-top:1.4em}
h3{font-size:1.05em;margin:1em 0 .3em}.note{color:#666;font-size:.9em}
table.grid{border-collapse:collapse;font-size:.9em}
table.grid th,table.grid td{border:1px solid #ddd;padding:2px 6px;text-align:right;
white-space:nowrap}
table.grid td:first-child,table.grid th:first-child{text-align:left}
table.facts th{text-align:left;padding-right:1em;font-weight:600}
.figures{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #eee;padding:4px}figure img{max-width:480px;display:block}
figcaption{font-size:.85em;color:#555;text-align:center}
#filters{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:.5em 0}
#filters input[type=number]{width:6em}#row-count{color:#666}
.split{display:flex;gap:16px;align-items:flex-start}
.table-wrap{max-height:80vh;overflow:auto;flex:1 1 50%;min-width:0}
#mappings thead th{position:sticky;top:0;background:#f4f4f4;cursor:pointer;user-select:none}
#mappings th[aria-sort=ascending]::after{content:" ▲"}
#mappings th[aria-sort=descending]::after{content:" ▼"}
#mappings tbody tr{cursor:pointer}#mappings tbody tr:hover{background:#eef5ff}
#mappings tbody tr.chosen{background:#d6e6ff}
#card{flex:1 1 50%;min-width:0;border:1px solid #ccc;padding:8px 12px;position:sticky;top:8px;
max-height:90vh;overflow:auto}
#card h3{margin-top:.2em}.tuning{display:grid;grid-template-columns:auto 1fr 1fr;gap:2px 8px;
align-items:center;font-size:.85em}.tuning svg{width:100%;height:auto}
svg.traces{width:100%;max-width:640px;height:auto}.units{display:flex;gap:16px;flex-wrap:wrap}
svg text{font:10px system-ui,sans-serif;fill:#333}
"""

_SCRIPT = r"""
"use strict";
(function () {
const D = JSON.parse(document.getElementById("report-data").textContent);
const C = D.columns, col = {};
C.forEach((c, i) => { col[c] = i; });
const NUMERIC = new Set(["latent", "sign", "selectivity", "effect", "mean_during",
  "mean_outside", "frac_during", "frac_outside", "n_during", "p", "q", "level"]);
const SHOWN = C.filter(c => c !== "p");
const SVGNS = "http://www.w3.org/2000/svg";
let sortKey = null, sortDir = 1, chosenKey = null;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(v, c) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v !== "number") return String(v);
  if (c === "p" || c === "q") return v === 0 ? "0" : (v < 1e-3 ? v.toExponential(1) : v.toFixed(3));
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
}
function cardKey(r) { return r[col.model] + "|" + r[col.latent] + "|" + r[col.sign]; }

// filters
function fillSelect(id, values, label) {
  const s = document.getElementById(id);
  values.forEach(v => s.appendChild(el("option", {value: String(v)}, label ? label(v) : String(v))));
}
const uniq = c => [...new Set(D.rows.map(r => r[col[c]]).filter(v => v !== null))];
fillSelect("f-model", uniq("model"));
fillSelect("f-variable", uniq("variable"));
fillSelect("f-level", uniq("level").sort((a, b) => a - b), v => String(v));
["f-model", "f-variable", "f-level", "f-q", "f-stable", "f-selective"].forEach(id => {
  const e = document.getElementById(id);
  e.addEventListener("input", render); e.addEventListener("change", render);
});
function passes(r) {
  const m = document.getElementById("f-model").value;
  const v = document.getElementById("f-variable").value;
  const l = document.getElementById("f-level").value;
  const q = parseFloat(document.getElementById("f-q").value);
  const st = document.getElementById("f-stable").value;
  if (m && r[col.model] !== m) return false;
  if (v && r[col.variable] !== v) return false;
  if (l !== "" && String(r[col.level]) !== l) return false;
  if (!isNaN(q) && !(r[col.q] !== null && r[col.q] <= q)) return false;
  if (st && String(r[col.stable]) !== st) return false;
  if (document.getElementById("f-selective").checked && r[col.selective] !== true) return false;
  return true;
}

// table
const thead = document.querySelector("#mappings thead"), tbody = document.querySelector("#mappings tbody");
const hr = el("tr");
SHOWN.forEach(c => {
  const th = el("th", {"data-col": c, title: "sort by " + c}, c.replace(/_/g, " "));
  th.addEventListener("click", () => {
    sortDir = (sortKey === c) ? -sortDir : (NUMERIC.has(c) && c !== "q" && c !== "p" ? -1 : 1);
    sortKey = c; render();
  });
  hr.appendChild(th);
});
thead.appendChild(hr);
function compare(a, b) {
  const i = col[sortKey], x = a[i], y = b[i];
  if (x === null && y === null) return 0;
  if (x === null) return 1;
  if (y === null) return -1;
  if (typeof x === "number" && typeof y === "number") return sortDir * (x - y);
  return sortDir * String(x).localeCompare(String(y), undefined, {numeric: true});
}
function render() {
  let rows = D.rows.filter(passes);
  if (sortKey) rows = rows.slice().sort(compare);
  thead.querySelectorAll("th").forEach(th => {
    if (th.dataset.col === sortKey) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  });
  const frag = document.createDocumentFragment();
  rows.forEach(r => {
    const tr = el("tr", {"data-key": cardKey(r)});
    if (cardKey(r) === chosenKey) tr.className = "chosen";
    SHOWN.forEach(c => tr.appendChild(el("td", {"data-col": c}, fmt(r[col[c]], c))));
    tr.addEventListener("click", () => showCard(cardKey(r), r[col.variable], r[col.condition]));
    frag.appendChild(tr);
  });
  tbody.replaceChildren(frag);
  document.getElementById("row-count").textContent = rows.length + " of " + D.rows.length +
    " rows shown (" + D.n_rows_total + " in selectivity.csv)";
}

// charts
function barChart(values, labels, highlight, title) {
  const W = 260, H = 105, L = 34, B = 32, T = 14, n = values.length;
  const svg = sv("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img"});
  svg.appendChild(sv("title", {}, title));
  const max = Math.max(1e-12, ...values.map(v => v || 0));
  const bw = (W - L - 4) / Math.max(n, 1);
  svg.appendChild(sv("text", {x: L, y: 10}, title));
  svg.appendChild(sv("line", {x1: L, x2: W - 2, y1: H - B, y2: H - B, stroke: "#999"}));
  svg.appendChild(sv("text", {x: L - 3, y: T + 4, "text-anchor": "end"}, fmt(max)));
  svg.appendChild(sv("text", {x: L - 3, y: H - B, "text-anchor": "end"}, "0"));
  values.forEach((v, i) => {
    const h = ((v || 0) / max) * (H - B - T);
    const rect = sv("rect", {x: L + i * bw + 1, y: H - B - h, width: Math.max(bw - 2, 1), height: h,
      fill: labels[i] === highlight ? "#d9480f" : "#4c72b0"});
    rect.appendChild(sv("title", {}, labels[i] + ": " + fmt(v)));
    svg.appendChild(rect);
    const x = L + (i + 0.5) * bw, y = H - B + 4;
    svg.appendChild(sv("text", {x: x, y: y, transform: "rotate(50 " + x + " " + y + ")",
      "font-size": "8"}, String(labels[i]).slice(0, 14)));
  });
  return svg;
}
function lineChart(traces, trials) {
  const W = 520, H = 170, L = 40, B = 26, T = 8, R = 120;
  const svg = sv("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", class: "traces"});
  svg.appendChild(sv("title", {}, "activation over held-out trials"));
  let tmax = 1e-9, ymax = 1e-9, ymin = 0;
  traces.forEach((tr, k) => tr.forEach((v, i) => {
    tmax = Math.max(tmax, trials[k].t[i]); ymax = Math.max(ymax, v || 0); ymin = Math.min(ymin, v || 0);
  }));
  const X = t => L + t / tmax * (W - L - R), Y = v => H - B - (v - ymin) / (ymax - ymin) * (H - B - T);
  svg.appendChild(sv("line", {x1: L, x2: W - R, y1: Y(0), y2: Y(0), stroke: "#999"}));
  svg.appendChild(sv("line", {x1: L, x2: L, y1: T, y2: H - B, stroke: "#999"}));
  svg.appendChild(sv("text", {x: L - 3, y: T + 6, "text-anchor": "end"}, fmt(ymax)));
  svg.appendChild(sv("text", {x: L - 3, y: H - B, "text-anchor": "end"}, fmt(ymin)));
  svg.appendChild(sv("text", {x: W - R, y: H - 6, "text-anchor": "end"}, fmt(tmax) + " s"));
  svg.appendChild(sv("text", {x: L, y: H - 6}, "time in trial"));
  const colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"];
  traces.forEach((tr, k) => {
    const pts = tr.map((v, i) => X(trials[k].t[i]).toFixed(1) + "," + Y(v || 0).toFixed(1)).join(" ");
    svg.appendChild(sv("polyline", {points: pts, fill: "none", stroke: colours[k % 5], "stroke-width": 1.5}));
    svg.appendChild(sv("text", {x: W - R + 6, y: T + 12 + 14 * k, style: "fill:" + colours[k % 5]}, trials[k].label));
  });
  return svg;
}
function unitTable(rows, by, n) {
  const t = el("table", {class: "grid"});
  const h = el("tr");
  ["unit", by === "decoder" ? "decoder weight" : "activity z", by === "decoder" ? "activity rank" : "decoder rank"]
    .forEach(x => h.appendChild(el("th", {}, x)));
  t.appendChild(h);
  rows.forEach(u => {
    const tr = el("tr");
    tr.appendChild(el("td", {}, u.unit));
    tr.appendChild(el("td", {}, fmt(by === "decoder" ? u.decoder : u.activity)));
    const other = by === "decoder" ? u.activity_rank : u.decoder_rank;
    const td = el("td", {}, fmt(other));
    if (other !== null && other <= n) td.style.fontWeight = "bold";
    tr.appendChild(td);
    t.appendChild(tr);
  });
  return t;
}

// feature card
function showCard(key, variable, condition) {
  const c = D.cards[key], card = document.getElementById("card");
  chosenKey = key;
  tbody.querySelectorAll("tr").forEach(tr => tr.classList.toggle("chosen", tr.dataset.key === key));
  card.replaceChildren();
  card.hidden = false;
  if (!c) { card.appendChild(el("p", {}, "No card for " + key)); return; }
  const title = c.model + " latent " + c.latent + (c.sign < 0 ? " (negative)" : "");
  card.appendChild(el("h3", {id: "card-title", "data-latent": String(c.latent)}, title));
  card.appendChild(el("h4", {}, "Tuning per condition (held-out bins)"));
  const grid = el("div", {class: "tuning"});
  D.variables.forEach(v => {
    const t = c.tuning[v];
    if (!t) return;
    grid.appendChild(el("div", {}, v));
    const hl = v === variable ? condition : null;
    grid.appendChild(barChart(t.mean, D.conditions[v], hl, "mean activation"));
    grid.appendChild(barChart(t.frac, D.conditions[v], hl, "fraction active"));
  });
  card.appendChild(grid);
  if (c.units) {
    const u = c.units;
    card.appendChild(el("h4", {}, "Contributing units"));
    card.appendChild(el("p", {class: "note"}, "Top " + u.n_top + " units by decoder weight and by mean " +
      "z-scored activity in the " + fmt(u.n_active_bins) + " held-out bins where the latent is active. " +
      "Top-" + u.n_top + " overlap (Jaccard): " + fmt(u.jaccard) + "; rank correlation (Spearman): " +
      fmt(u.spearman) + ". Bold: also in the other top set."));
    const box = el("div", {class: "units"});
    const a = el("div"), b = el("div");
    a.appendChild(el("b", {}, "by decoder weight")); a.appendChild(unitTable(u.by_decoder, "decoder", u.n_top));
    b.appendChild(el("b", {}, "by activity while active")); b.appendChild(unitTable(u.by_activity, "activity", u.n_top));
    box.appendChild(a); box.appendChild(b);
    card.appendChild(box);
  }
  if (c.traces && c.traces.length) {
    card.appendChild(el("h4", {}, "Activation over held-out trials"));
    card.appendChild(lineChart(c.traces, D.trials));
  }
}
render();
})();
"""
