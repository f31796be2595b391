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

// figures: a click shows one at full size in a dialog; a click or Esc closes it
const viewer = document.getElementById("viewer");
if (viewer) {
  const big = document.getElementById("viewer-image");
  document.querySelectorAll(".figures figure").forEach(f => {
    f.querySelector("img").addEventListener("click", () => {
      big.src = f.querySelector("img").src;
      big.alt = f.querySelector("img").alt;
      document.getElementById("viewer-caption").textContent = f.querySelector("figcaption").textContent;
      viewer.showModal();
    });
  });
  viewer.addEventListener("click", () => viewer.close());
}
})();
