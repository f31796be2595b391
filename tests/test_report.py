"""Tests for sklearn_nldisco/_cli/_report.py: the self-contained ``report.html``.

The report of a tiny simulated run is checked as text (self-contained,
embedded data equal to the kept rows of ``selectivity.csv``, hostile strings
escaped) and in a real headless Chromium driven by playwright (no script
errors, sorting, filtering, feature cards). The browser tests skip when
playwright or a ``chromium`` binary is missing.
"""

import fnmatch
import html
import json
import re
import shutil
import tomllib
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_nldisco._cli._report import embed_json, kept_rows, write_report
from sklearn_nldisco.cli import main

TINY = ["--n-units", "30", "--n-trials", "40", "--n-latents", "16", "--k", "2",
        "--max-iter", "5", "--seeds", "2", "--n-permutations", "20", "--quiet"]
HOSTILE = '</script><b id="injected">x</b><!--'
TEMPLATES = files("sklearn_nldisco._cli").joinpath("templates")
DATA_BLOCK = re.compile(
    r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


def _data(text):
    blocks = DATA_BLOCK.findall(text)
    assert len(blocks) == 1
    return json.loads(blocks[0])


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("report_run")
    assert main(["run", "--out", str(out), *TINY]) == 0
    return out


def _hostile_inputs():
    """A tiny hand-made run whose labels try to break out of the page."""
    rng = np.random.default_rng(0)
    n_bins, n_units, n_latents = 60, 5, 3
    X = rng.poisson(2.0, size=(n_bins, n_units)).astype(float)
    codes = np.maximum(rng.normal(size=(n_bins, n_latents)), 0)
    decoder = rng.random((n_latents, n_units))
    metadata = pd.DataFrame({"trial_id": np.repeat([0, 1, 2], 20),
                             "bin_start": np.tile(np.arange(20) * 0.05, 3)})
    rows = []
    for latent in range(n_latents):
        for condition in (HOSTILE, "plain & <simple>"):
            rows.append({"model": "msae_seed0", "latent": latent, "sign": 1,
                         "variable": "phase", "condition": condition,
                         "selectivity": 0.5 + 0.1 * latent, "effect": 0.6,
                         "mean_during": 1.0 + latent, "mean_outside": 0.2,
                         "frac_during": 0.5, "frac_outside": 0.1, "n_during": 20,
                         "p": 0.01, "q": 0.02, "level": 0.0, "selective": True,
                         "stable": latent == 0})
    metrics = {"source": HOSTILE, "n_units": n_units, "n_trials": 3,
               "models": {"msae_seed0": {"kind": "msae", "n_latents": n_latents,
                                         "level_sizes": [n_latents],
                                         "explained_variance": 0.5,
                                         "explained_variance_per_level": [0.5],
                                         "l0": 1.5, "l0_per_level": [1.5],
                                         "k_per_level": [2], "shared_k": True,
                                         "dead_fraction": 0.0, "n_epochs": 3,
                                         "explained_variance_shifted": 0.375,
                                         "structure_explained": 0.125,
                                         "explained_variance_per_level_shifted": [0.375],
                                         "structure_explained_per_level": [0.125],
                                         "co_smoothing_bits_per_spike": 0.0625,
                                         "single_unit_dominance_median": 0.25,
                                         "single_unit_fraction": 0.0,
                                         "single_unit_fraction_selective": None}},
               "evaluation": {"co_smoothing": {
                   "held_out": 0.25, "models": ["msae_seed0"],
                   "smoothing_baseline": {"sigma_bins": 1.0, "bits_per_spike": 0.03125}},
                   "single_unit_dominance": {"threshold": 0.8}},
               "seed_agreement": None, "versions": {"x": HOSTILE},
               "n_selective_latents": {"msae_seed0": 2}, "n_live_latents": {"msae_seed0": 3},
               "ground_truth": {"n_features": 2, "features": [
                   {"feature": HOSTILE, "variable": "phase", "condition": HOSTILE},
                   {"feature": "silent", "variable": "phase", "condition": "rest"}],
                   "models": {"msae_seed0": {
                       "n_selective_for_planted": 1, "n_tested": 1, "median_correlation": 0.5,
                       "rows": [{"feature": HOSTILE, "variable": "phase", "condition": HOSTILE,
                                 "latent": 1, "sign": 1, "correlation": 0.75, "cosine": 0.5,
                                 "top_condition": HOSTILE, "selectivity": 0.9, "q": 0.01,
                                 "selective_for_planted": True},
                                {"feature": "silent", "variable": "phase", "condition": "rest",
                                 "latent": 0, "sign": 1, "correlation": None, "cosine": None,
                                 "top_condition": None, "selectivity": None, "q": None,
                                 "selective_for_planted": None}]}}}}

    class Model:
        components_ = decoder

    return dict(metrics=metrics, selectivity=pd.DataFrame(rows), figures={},
                codes={"msae_seed0": codes}, X=X, metadata=metadata,
                estimators={"msae_seed0": Model()}, unit_names=[f"u<{i}>" for i in range(5)])


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile")
    return write_report(out, **_hostile_inputs())


# --- the file ---------------------------------------------------------------

def test_run_writes_a_self_contained_report(report_run):
    text = (report_run / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # nothing fetched from anywhere: no external src/href, no linked style or script
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', text, re.I)
    assert not re.search(r"<script[^>]*\bsrc=", text, re.I)
    assert not re.search(r"<link\b", text, re.I)
    assert "@import" not in text and "url(" not in text
    images = re.findall(r'<img[^>]*\bsrc="([^"]*)"', text)
    figures = sorted(path.stem for path in report_run.glob("*.png"))
    assert len(images) == len(figures) >= 5
    assert all(src.startswith("data:image/png;base64,") for src in images)
    metrics = json.loads((report_run / "metrics.json").read_text())
    for name in metrics["models"]:
        assert text.count(f"<tr><td>{name}</td>") == 2  # reconstruction and structure
    assert "Seed agreement" in text


def _summary_rows(text, table):
    body = re.search(rf'<table class="grid" id="{table}">.*?<tbody>\n(.*?)</tbody>', text,
                     re.S).group(1)
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr.*?</tr>", body)]


def test_every_explained_variance_beside_its_control(report_run):
    text = (report_run / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((report_run / "metrics.json").read_text())
    header = re.search(r'id="summary-models"><thead><tr>(.*?)</tr>', text).group(1)
    columns = re.findall(r"<th>(.*?)</th>", header)
    ev_columns = [i for i, name in enumerate(columns)
                  if name == "explained variance" or name.startswith("EV level")]
    assert len(ev_columns) == 4  # overall and three levels
    for i in ev_columns:  # every EV column is followed by its unit-shifted control
        assert "shifted" in columns[i + 1]
    rows = _summary_rows(text, "summary-models")
    assert [row[0] for row in rows] == list(metrics["models"])
    for row in rows:
        model = metrics["models"][row[0]]
        assert row[columns.index("EV unit-shifted")] == f"{model['explained_variance_shifted']:.3f}"
        assert row[columns.index("structure explained")] == (
            f"{model['structure_explained']:.3f}")
        for i in ev_columns:
            assert (row[i] == "–") == (row[i + 1] == "–")  # never an EV alone
    structure = _summary_rows(text, "summary-structure")
    assert [row[0] for row in structure[:-1]] == list(metrics["models"])
    for row in structure[:-1]:
        bits = metrics["models"][row[0]]["co_smoothing_bits_per_spike"]
        assert row[1] == ("–" if bits is None else f"{bits:.3f}")
    reference = metrics["evaluation"]["co_smoothing"]["smoothing_baseline"]
    assert structure[-1][0] == "smoothing alone (σ = 1.0 bin)"
    assert structure[-1][1] == f"{reference['bits_per_spike']:.3f}"


def test_embedded_data_matches_selectivity_csv(report_run):
    data = _data((report_run / "report.html").read_text(encoding="utf-8"))
    table = pd.read_csv(report_run / "selectivity.csv")
    kept = kept_rows(table)
    assert 0 < len(kept) < len(table)
    assert data["n_rows_total"] == len(table)
    assert len(data["rows"]) == len(kept)
    for index, column in enumerate(data["columns"]):
        expected, got = kept[column].tolist(), [row[index] for row in data["rows"]]
        for e, g in zip(expected, got):
            if pd.isna(e):
                assert g is None
            elif isinstance(e, float):
                assert np.isclose(e, g, rtol=1e-12, atol=0)
            else:
                assert str(e) == str(g)
    # every kept row has q < 0.05 or is among the three most selective of its latent
    assert ((kept["q"] < 0.05) | kept.groupby(["model", "latent", "sign"])["selectivity"]
            .rank(ascending=False, method="first").le(3)).all()
    # every latent of every model has a card, with units and traces for the MSAE runs
    keys = {f"{model}|{latent}|{sign}" for model, latent, sign
            in table[["model", "latent", "sign"]].itertuples(index=False)}
    assert set(data["cards"]) == keys
    card = data["cards"]["msae_seed0|0|1"]
    assert set(card["tuning"]) == set(table["variable"])
    assert len(card["units"]["by_decoder"]) == len(card["units"]["by_activity"]) == 10
    assert len(card["traces"]) == len(data["trials"]) == 3


def test_hostile_strings_are_escaped(hostile_report):
    text = hostile_report.read_text(encoding="utf-8")
    assert text.count("</script>") == 2  # the data block and the script: nothing else
    assert '<b id="injected">' not in text
    title = re.search(r"<title>(.*?)</title>", text).group(1)
    assert "<" not in title and html.unescape(title) == f"nldisco report: {HOSTILE}"
    assert re.search(r"<td>(.*?)</td>", text).group(1) == title.removeprefix("nldisco report: ")
    data = _data(text)  # the block is intact and parses back to the original strings
    assert HOSTILE in {row[data["columns"].index("condition")] for row in data["rows"]}
    assert data["conditions"]["phase"] == [HOSTILE, "plain & <simple>"]
    assert data["cards"]["msae_seed0|0|1"]["units"]["by_decoder"][0]["unit"].startswith("u<")


def test_style_and_script_written_as_they_are(hostile_report):
    # the templates' style and script reach the page unchanged (no template syntax in them)
    text = hostile_report.read_text(encoding="utf-8")
    for name in ("report.css", "report.js"):
        source = TEMPLATES.joinpath(name).read_text(encoding="utf-8")
        assert source in text
    assert f"<script>\n{TEMPLATES.joinpath('report.js').read_text(encoding='utf-8')}</script>" \
        in text


def test_templates_ship_with_the_package():
    # every template file is package data of sklearn_nldisco._cli in pyproject.toml
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("run from an installed package, not a checkout")
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"][
        "sklearn_nldisco._cli"]
    names = sorted(path.name for path in TEMPLATES.iterdir() if path.is_file())
    assert {"report.html", "summary.html", "report.css", "report.js"} <= set(names)
    for name in names:
        assert any(fnmatch.fnmatch(f"templates/{name}", pattern) for pattern in patterns), name


def test_summary_numbers(hostile_report):
    text = hostile_report.read_text(encoding="utf-8")
    row = re.search(r'<table class="grid" id="summary-models">.*?<tbody>\n(<tr>.*?</tr>)',
                    text, re.S).group(1)
    assert row == ("<tr><td>msae_seed0</td><td>3</td><td>0.500</td><td>0.375</td>"
                   "<td>0.125</td><td>1.50</td>"
                   "<td>0.500 <small>(3)</small></td><td>0.375</td><td>1.50</td>"
                   "<td>2 <small>(shared)</small></td><td>0.000</td><td>3</td><td>2</td><td>3</td><td>66.7</td></tr>")
    assert _summary_rows(text, "summary-structure") == [
        ["msae_seed0", "0.062", "0.250", "0.000", "–"],
        ["smoothing alone (σ = 1.0 bin)", "0.031", "–", "–", "–"]]
    assert "<p>One seed: no seed agreement.</p>" in text


def test_summary_without_controls(tmp_path):
    # metrics of a run without the evaluation nor ground truth: dashes, not errors
    inputs = _hostile_inputs()
    model = inputs["metrics"]["models"]["msae_seed0"]
    for key in [key for key in model if "shifted" in key or "structure" in key
                or "co_smoothing" in key or "single_unit" in key]:
        del model[key]
    for key in ("evaluation", "ground_truth", "n_live_latents", "n_selective_latents"):
        del inputs["metrics"][key]
    text = write_report(tmp_path, **inputs).read_text(encoding="utf-8")
    assert 'id="ground-truth"' not in text and "ground truth" not in text
    assert _summary_rows(text, "summary-models")[0][-3:] == ["–", "–", "–"]
    assert _summary_rows(text, "summary-models")[0][2:5] == ["0.500", "–", "–"]
    assert _summary_rows(text, "summary-structure") == [["msae_seed0", "–", "–", "–", "–"]]
    assert "q &lt; 0.05 or among the 3 most selective rows of its latent" in text


def _level_k_section(text):
    match = re.search(r'id="level-k-table">.*?<tbody>\n(.*?)</tbody>', text, re.S)
    if match is None:
        return None
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>.*?</tr>",
                                                                       match.group(1))]


def test_per_level_k_against_one_shared_k(tmp_path):
    inputs = _hostile_inputs()
    metrics = inputs["metrics"]
    model = metrics["models"]["msae_seed0"]
    model.update(level_sizes=[2, 3], k_per_level=[1, 2], shared_k=False,
                 explained_variance_per_level=[0.25, 0.5], l0_per_level=[1.0, 2.0],
                 explained_variance_per_level_shifted=[0.125, 0.375])
    shared = {"k": 2, "k_per_level": [2, 2], "l0_per_level": [1.5, 1.75],
              "explained_variance_per_level": [0.375, 0.4375],
              "explained_variance_per_level_shifted": [0.3125, 0.25],
              "explained_variance": 0.4375, "explained_variance_shifted": 0.25, "l0": 1.75,
              "n_epochs": 3}
    metrics["level_k_comparison"] = {
        "seed": 0, "level_sizes": [2, 3],
        "per_level": {"model": "msae_seed0", **{key: model[key] for key in shared
                                                 if key in model}},
        "shared": shared}
    text = write_report(tmp_path, **inputs).read_text(encoding="utf-8")
    # the summary: each level's own k, not marked shared
    row = _summary_rows(text, "summary-models")[0]
    assert row[6:14] == ["0.250 <small>(2)</small>", "0.125", "1.00", "1",
                         "0.500 <small>(3)</small>", "0.375", "2.00", "2"]
    assert _level_k_section(text) == [
        ["0", "2", "1", "1.00", "0.250", "0.125", "2", "1.50", "0.375", "0.312"],
        ["1", "3", "2", "2.00", "0.500", "0.375", "2", "1.75", "0.438", "0.250"]]
    sentences = re.findall(r"<li>(Level .*?)</li>", text)
    assert sentences == [
        "Level 0 (2 latents): its own k=1 uses 0.50 fewer latents per bin than one shared "
        "k=2 (1.00 against 1.50) and explains 0.125 less of the held-out variance (0.250 "
        "against 0.375); beyond the unit-shifted control, 0.125 against 0.062.",
        "Level 1 (3 latents): its own k=2 uses 0.25 more latents per bin than one shared "
        "k=2 (2.00 against 1.75) and explains 0.062 more of the held-out variance (0.500 "
        "against 0.438); beyond the unit-shifted control, 0.125 against 0.188."]
    assert 'href="#evaluation"' in text


def test_level_table_only_for_window_runs_or_per_level_k(tmp_path):
    inputs = _hostile_inputs()
    text = write_report(tmp_path, **inputs).read_text(encoding="utf-8")
    assert _level_k_section(text) is None and 'id="evaluation"' not in text
    # a window run: the first seed's levels beside the ablation and spectra
    inputs["metrics"]["models"]["msae_seed0"]["explained_variance_per_lag"] = [0.5, 0.25]
    inputs["metrics"]["seeds"] = [0]
    text = write_report(tmp_path, **inputs).read_text(encoding="utf-8")
    assert _level_k_section(text) == [["0", "3", "2", "1.50", "0.500", "0.375"]]
    assert "<li>Level" not in text


def _findings(text):
    items = re.findall(r"<li><b>(.*?)</b>: (.*?)</li>",
                       re.search(r'<ul id="findings">(.*?)</ul>', text, re.S).group(1))
    return {name: html.unescape(sentence) for name, sentence in items}


def test_a_sentence_per_model_with_normalised_counts(report_run):
    text = (report_run / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((report_run / "metrics.json").read_text())
    table = pd.read_csv(report_run / "selectivity.csv")
    findings = _findings(text)
    assert list(findings) == list(metrics["models"])
    for name, sentence in findings.items():
        model, live = metrics["models"][name], metrics["n_live_latents"][name]
        size = model.get("n_latents", model.get("n_components"))
        selective = table.loc[(table["model"] == name) & table["selective"]]
        n_selective = selective["latent"].nunique()
        assert n_selective == metrics["n_selective_latents"][name]
        assert sentence.startswith(f"Of its {size} ")
        if n_selective:
            assert f"{n_selective} {'is' if n_selective == 1 else 'are'} selective " \
                   f"({100 * n_selective / live:.0f} per 100 live)" in sentence
            for variable, count in selective.groupby("variable")["latent"].nunique().items():
                assert f"{count} for {variable}" in sentence
            if name.startswith("msae"):  # two seeds: how many are found by the other
                stable = selective.loc[selective["stable"] == True, "latent"].nunique()  # noqa: E712
                assert f"{stable} of the {n_selective} " in sentence
        else:
            assert "none is selective" in sentence
        assert f"It explains {model['explained_variance']:.2f} of the held-out variance" \
            in sentence
        truth = metrics["ground_truth"]["models"][name]
        assert (f"Of the {truth['n_tested']} planted features with held-out bins, "
                f"{truth['n_selective_for_planted']} are matched") in sentence
    # the model table puts the count beside the live latents and the count per 100
    header = re.search(r'id="summary-models"><thead><tr>(.*?)</tr>', text).group(1)
    columns = re.findall(r"<th>(.*?)</th>", header)
    for row in _summary_rows(text, "summary-models"):
        name = row[0]
        live, selective = metrics["n_live_latents"][name], metrics["n_selective_latents"][name]
        assert row[columns.index("live latents")] == str(live)
        assert row[columns.index("selective per 100 live")] == f"{100 * selective / live:.1f}"
        assert metrics["selective_fraction"][name] == pytest.approx(selective / live)


def test_ground_truth_of_the_simulation(report_run):
    text = (report_run / "report.html").read_text(encoding="utf-8")
    truth = json.loads((report_run / "metrics.json").read_text())["ground_truth"]
    assert truth["n_features"] == 12
    table = re.search(r'<table class="grid" id="ground-truth-table">(.*?)</table>', text,
                      re.S).group(1)
    header = re.findall(r"<th>(.*?)</th>", table)
    assert header == ["feature", "planted condition", *truth["models"]]
    rows = re.findall(r"<tr>\n?<td>(.*?)</td><td>(.*?)</td>", table)
    assert [feature for feature, _ in rows] == [f["feature"] for f in truth["features"]]
    assert [html.unescape(condition) for _, condition in rows] == [
        f"{f['variable']} = {f['condition']}" for f in truth["features"]]
    cells = re.findall(r'<td class="truth-(yes|no|untested)"', table)
    assert len(cells) == 12 * len(truth["models"])
    for model_index, (name, model) in enumerate(truth["models"].items()):
        verdicts = cells[model_index::len(truth["models"])]
        expected = ["untested" if row["correlation"] is None or
                    row["selective_for_planted"] is None else
                    ("yes" if row["selective_for_planted"] else "no") for row in model["rows"]]
        assert verdicts == expected
        assert model["n_selective_for_planted"] == verdicts.count("yes")
        assert f"<td>{model['n_selective_for_planted']} of {model['n_tested']}</td>" in table


def test_figures_are_titled(report_run):
    from sklearn_nldisco._cli._report import FIGURE_TEXT

    text = (report_run / "report.html").read_text(encoding="utf-8")
    figures = re.findall(r'<figure( class="wide")?><figcaption><b>(.*?)</b>(.*?)</figcaption>'
                         r'<img alt="(.*?)"', text)
    stems = sorted(path.stem for path in report_run.glob("*.png"))
    assert len(figures) == len(stems)
    titles = [title for _, title, _, _ in figures]
    assert all(title == alt for _, title, _, alt in figures)
    # every figure but the per-level k one, written with one k per level only
    # (tests/test_cli_window.py)
    assert {title for name, (title, _) in FIGURE_TEXT.items() if name != "level_k"} <= set(
        titles)
    cards = [stem.removeprefix("feature_card_latent") for stem in stems
             if stem.startswith("feature_card")]
    assert sorted(t for t in titles if t.startswith("Feature card")) == sorted(
        f"Feature card: latent {latent}" for latent in cards)
    for wide, title, description, _ in figures:
        assert "_" not in title and ".png" not in title and description.strip()
        assert bool(wide) == title.startswith("Feature card")
    assert "max-width:480px" not in text


def test_ground_truth_labels_are_escaped(hostile_report):
    text = hostile_report.read_text(encoding="utf-8")
    table = re.search(r'id="ground-truth-table">(.*?)</table>', text, re.S).group(1)
    assert html.unescape(re.search(r"<td>(.*?)</td>", table).group(1)) == HOSTILE
    assert "no held-out activity" in table and "<td>1 of 1</td>" in table
    assert html.unescape(_findings(text)["msae_seed0"]).endswith(
        "Of the 1 planted features with held-out bins, 1 are matched by a latent most "
        "selective for the planted condition (median correlation 0.50).")


def test_report_without_selectivity_rows(tmp_path):
    inputs = _hostile_inputs()
    inputs["selectivity"] = inputs["selectivity"].iloc[:0]
    data = _data(write_report(tmp_path, **inputs).read_text(encoding="utf-8"))
    assert data["rows"] == [] and data["cards"] == {} and data["n_rows_total"] == 0


def test_embed_json_escapes_markup():
    text = embed_json({"a": "</script><!--&\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!--&\u2028"}


# --- in a browser -----------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser tests need the playwright package")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("the browser tests need a chromium binary on the PATH")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable,
                                             args=["--no-sandbox"])
        yield browser
        browser.close()


def _open(browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("#mappings tbody tr")
    return page, errors


def _column(page, name):
    return page.eval_on_selector_all(
        f'#mappings tbody td[data-col="{name}"]', "cells => cells.map(c => c.textContent)")


def test_report_in_a_browser(browser, report_run, tmp_path):
    page, errors = _open(browser, report_run / "report.html")
    n_rows = page.locator("#mappings tbody tr").count()
    assert n_rows == len(_data((report_run / "report.html").read_text())["rows"])

    # sorting: a click sorts by the column, a second click reverses it
    header = page.locator('#mappings th[data-col="selectivity"]')
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    values = [float(v) for v in _column(page, "selectivity")]
    assert values == sorted(values, reverse=True)
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    values = [float(v) for v in _column(page, "selectivity")]
    assert values == sorted(values)
    page.locator('#mappings th[data-col="variable"]').click()
    variables = _column(page, "variable")
    assert variables == sorted(variables)

    # filters: each cuts the rows, and every row left matches
    page.select_option("#f-variable", "phase")
    phase = page.locator("#mappings tbody tr").count()
    assert 0 < phase < n_rows
    assert set(_column(page, "variable")) == {"phase"}
    page.fill("#f-q", "0.05")
    q_values = _column(page, "q")
    assert len(q_values) <= phase
    assert all(float(q) <= 0.05 for q in q_values)
    page.select_option("#f-variable", "")
    page.fill("#f-q", "1")
    page.select_option("#f-level", "0")
    assert set(_column(page, "level")) == {"0"}
    assert set(_column(page, "model")) <= {"msae_seed0", "msae_seed1"}
    page.select_option("#f-stable", "true")
    assert set(_column(page, "stable")) <= {"yes"}
    page.select_option("#f-stable", "")
    page.select_option("#f-level", "")
    assert page.locator("#mappings tbody tr").count() == n_rows
    assert "of" in page.locator("#row-count").text_content()

    # a click on a row opens that latent's card
    assert page.locator("#card").is_hidden()
    page.select_option("#f-model", "msae_seed0")
    row = page.locator("#mappings tbody tr").nth(2)
    latent = row.locator('td[data-col="latent"]').text_content()
    row.click()
    card = page.locator("#card")
    assert card.is_visible()
    title = page.locator("#card-title")
    assert title.get_attribute("data-latent") == latent
    assert title.text_content() == f"msae_seed0 latent {latent}"
    assert card.locator("svg").count() >= 3  # tuning bars and the traces
    assert card.locator("svg.traces polyline").count() == 3
    assert card.locator("svg rect").count() > 0
    assert "decoder weight" in card.text_content() and "Jaccard" in card.text_content()
    assert card.locator("table tr").count() >= 11  # top-10 tables with headers

    # a click on a figure shows it at full size; a click closes it
    viewer = page.locator("#viewer")
    assert viewer.is_hidden()
    figure = page.locator(".figures img").first
    shown_width = figure.evaluate("img => img.getBoundingClientRect().width")
    figure.click()
    assert viewer.is_visible()
    big = page.locator("#viewer-image")
    assert big.get_attribute("src") == figure.get_attribute("src")
    assert page.locator("#viewer-caption").text_content().startswith(
        figure.get_attribute("alt"))
    assert big.evaluate("img => img.getBoundingClientRect().width") > shown_width
    viewer.click()
    assert viewer.is_hidden()

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert errors == []
    page.close()


def test_hostile_report_in_a_browser(browser, hostile_report):
    page, errors = _open(browser, hostile_report)
    assert page.locator("#injected").count() == 0
    assert HOSTILE in page.title()
    assert HOSTILE in _column(page, "condition")
    page.locator("#mappings tbody tr").first.click()
    assert page.locator("#card-title").is_visible()
    assert page.locator("#card svg text", has_text="</script>").count() > 0
    assert page.locator("#injected").count() == 0
    assert errors == []
    page.close()
