"""Tests for ``nldisco run --window N`` and the temporal evaluation of every run
(sklearn_nldisco/_cli/_temporal.py)."""

import json
import re
import tomllib

import numpy as np
import pandas as pd
import pytest

from sklearn_nldisco._cli._config import resolve
from sklearn_nldisco._cli._output import is_previous_run
from sklearn_nldisco._cli._stages import bin_spikes, load, split
from sklearn_nldisco._cli._temporal import window_inputs
from sklearn_nldisco.cli import main
from sklearn_nldisco.interpretation import load_activations

TINY = ["--n-units", "12", "--n-trials", "30", "--n-latents", "16", "--k", "2",
        "--max-iter", "5", "--seeds", "2", "--n-permutations", "20", "--quiet"]
MODELS = ("msae_seed0", "msae_seed1", "pca", "nmf")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_torch_thread):
    folders = {}
    for window in (1, 3):
        out = tmp_path_factory.mktemp(f"window{window}")
        assert main(["run", "--out", str(out), "--window", str(window), *TINY]) == 0
        folders[window] = out
    return folders


def _metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.parametrize("window", [1, 3])
def test_every_run_has_ablation_and_spectral_fidelity(runs, window):
    metrics = _metrics(runs[window])
    table = pd.read_csv(runs[window] / "latent_ablation.csv")
    for name in MODELS:
        entry = metrics["models"][name]
        ablation = entry["latent_ablation"]
        assert 0 < ablation["top10_share"] <= 1 + 1e-9
        rows = table.loc[table["model"] == name]
        n_latents = 16 if name.startswith("msae") else 2
        assert sorted(rows["latent"]) == list(range(n_latents))
        # the summary's top latents are the table's, largest increase first
        assert ablation["top_latents"] == rows["latent"].head(10).tolist()
        assert np.all(np.diff(rows["error_increase"]) <= 0)
        spectral = entry["spectral_fidelity"]
        assert spectral["relative_error_median"] >= 0
        assert len(spectral["band_relative_error_median"]) == len(spectral["bands_hz"]) == 4
        # bands in Hz: the last ends at Nyquist of the 50 ms bins
        assert spectral["bands_hz"][-1][1] == pytest.approx(10.0)
        assert spectral["n_intervals"] >= 1
        assert ("explained_variance_per_lag" in entry) == (window > 1)


def test_window_run_scores_every_lag_and_codes_every_bin(runs):
    metrics = _metrics(runs[3])
    for name in MODELS:
        per_lag = metrics["models"][name]["explained_variance_per_lag"]
        assert len(per_lag) == 3 and all(np.isfinite(per_lag))
    for run in ("msae_seed0", "msae_seed1"):
        activations = load_activations(runs[3] / "activations.npz", run=run)
        assert activations.codes.shape == (metrics["n_bins_held_out"], 16)
    # the same bins are held out with and without windows
    assert metrics["n_bins_held_out"] == _metrics(runs[1])["n_bins_held_out"]
    assert tomllib.loads((runs[3] / "config.toml").read_text())["window"] == 3
    assert "TimeWindows(3)" in metrics["evaluation"]["co_smoothing"]["model_input"]
    # latent_ablation.csv is a file of a run: --overwrite may replace the folder
    assert is_previous_run(runs[3])


@pytest.mark.parametrize("side", ["train", "test"])
def test_windows_do_not_cross_trials(side):
    settings = resolve({}, {"n_units": 12, "n_trials": 30, "k": 2, "window": 3})
    loaded = load(settings)
    data = window_inputs(split(bin_spikes(loaded, settings), 0, loaded.source, 2), 3)
    X_bins = getattr(data, f"bins_{side}")
    windows = getattr(data, f"X_{side}")
    ids = getattr(data, f"interval_ids_{side}")
    assert len(np.unique(ids)) > 1
    # the fitted windows know the training intervals
    assert np.array_equal(data.windows.interval_ids, data.interval_ids_train)
    n_units = X_bins.shape[1]
    assert windows.shape == (len(X_bins), 3 * n_units)
    crossed = 0
    for row in range(len(X_bins)):
        start = row
        while start > 0 and ids[start - 1] == ids[row]:
            start -= 1
        for lag in range(3):
            # the first bins of a trial repeat its first bin, never the previous trial's
            expected = X_bins[max(row - lag, start)]
            block = windows[row, (2 - lag) * n_units:(3 - lag) * n_units]
            assert np.array_equal(block, expected)
            crossed += row - lag < start
    assert crossed > 0  # trial starts were checked


def test_report_shows_the_evaluation_figures(runs):
    for window in (1, 3):
        text = (runs[window] / "report.html").read_text(encoding="utf-8")
        section = text[text.index('<section id="evaluation">'):]
        section = section[:section.index("</section>")]
        titles = re.findall(r"<figcaption><b>(.*?)</b>", section)
        assert titles == ["Latent ablation", "Spectral fidelity"]
        assert section.count('src="data:image/png;base64,') == 2
        for name in ("latent_ablation", "spectral_fidelity"):
            assert (runs[window] / f"{name}.png").stat().st_size > 1000


@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_window_is_one_line_exit_2(capsys, tmp_path, value):
    with pytest.raises(SystemExit) as raised:
        main(["run", "--out", str(tmp_path / "out"), "--window", value, *TINY])
    assert raised.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == f"nldisco: error: --window must be >= 1; got {value}"
    assert not (tmp_path / "out").exists()


def test_window_run_without_trials_windows_each_time_block(tmp_path, one_torch_thread):
    from test_cli_any_nwb import write_foraging_file

    path = write_foraging_file(tmp_path / "foraging.nwb")
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--window", "2", *TINY]) == 0
    metrics = _metrics(out)
    assert metrics["n_trials"] == 0 and "time block" in metrics["split"]
    for name in MODELS:
        entry = metrics["models"][name]
        assert len(entry["explained_variance_per_lag"]) == 2
        # one spectrum per held-out time block
        assert entry["spectral_fidelity"]["n_intervals"] >= 2
    activations = load_activations(out / "activations.npz", run="msae_seed0")
    assert activations.codes.shape == (metrics["n_bins_held_out"], 16)


# --- one k per level (--k 2 4 --levels 16 32) -------------------------------

LEVEL_K = ["--window", "3", *TINY, "--n-latents", "32", "--k", "2", "4", "--levels", "16", "32"]


@pytest.fixture(scope="module")
def level_k_run(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("level_k")
    assert main(["run", "--out", str(out), *LEVEL_K]) == 0
    return out


@pytest.mark.slow
def test_per_level_k_reaches_the_models(level_k_run):
    import joblib

    from sklearn_nldisco.models import explained_variance

    metrics = _metrics(level_k_run)
    config = tomllib.loads((level_k_run / "config.toml").read_text())
    assert config["k"] == [2, 4] and config["levels"] == [16, 32] and config["window"] == 3
    settings = resolve(config, {})
    data = window_inputs(split(bin_spikes(load(settings), settings), 0, "simulated", 4), 3)
    for name in ("msae_seed0", "msae_seed1"):
        model = joblib.load(level_k_run / f"{name}.joblib")
        assert model.k == {16: 2, 32: 4} and model.level_sizes_.tolist() == [16, 32]
        assert model.threshold_.shape == (2,)  # a threshold per level
        entry = metrics["models"][name]
        assert entry["k_per_level"] == [2, 4] and entry["shared_k"] is False
        for level in range(2):
            # each level's L0 counts the latents of its own selection
            own = model._encode(data.X_test, sparse_output=True, dtype=np.float32, level=level)
            assert entry["l0_per_level"][level] == pytest.approx(
                own.getnnz() / len(data.X_test))
            assert entry["explained_variance_per_level"][level] == pytest.approx(
                explained_variance(data.X_test, model.reconstruct(data.X_test, level=level)))
    # the baselines have the last level's k components
    assert metrics["models"]["pca"]["n_components"] == metrics["models"]["nmf"][
        "n_components"] == 4


@pytest.mark.slow
def test_per_level_k_is_compared_with_one_shared_k(level_k_run):
    metrics = _metrics(level_k_run)
    comparison = metrics["level_k_comparison"]
    assert comparison["seed"] == 0 and comparison["level_sizes"] == [16, 32]
    first = metrics["models"]["msae_seed0"]
    mine, shared = comparison["per_level"], comparison["shared"]
    assert mine["model"] == "msae_seed0"
    for key in ("k_per_level", "l0_per_level", "explained_variance_per_level",
                "explained_variance_per_level_shifted", "explained_variance"):
        assert mine[key] == first[key]
    assert shared["k"] == 4 and shared["k_per_level"] == [4, 4]
    for key in ("l0_per_level", "explained_variance_per_level",
                "explained_variance_per_level_shifted"):
        assert len(shared[key]) == 2 and all(np.isfinite(shared[key]))
    assert shared["explained_variance_per_level"][-1] == pytest.approx(
        shared["explained_variance"])
    # a level uses at most the latents it has, and the shared model its one k
    assert 0 < shared["l0_per_level"][0] <= shared["l0_per_level"][1] <= 16
    assert (level_k_run / "level_k.png").stat().st_size > 1000


@pytest.mark.slow
def test_report_shows_each_level_k_and_the_trade_off(level_k_run):
    metrics = _metrics(level_k_run)
    text = (level_k_run / "report.html").read_text(encoding="utf-8")
    # the summary table: a k column beside each level's EV and L0
    header = re.search(r'id="summary-models"><thead><tr>(.*?)</tr>', text).group(1)
    columns = re.findall(r"<th>(.*?)</th>", header)
    body = re.search(r'id="summary-models">.*?<tbody>\n(.*?)</tbody>', text, re.S).group(1)
    row = re.findall(r"<td>(.*?)</td>", re.search(r"<tr><td>msae_seed1</td>.*?</tr>",
                                                   body).group(0))
    assert [row[columns.index(f"k level {level}")] for level in (0, 1)] == ["2", "4"]
    assert [row[columns.index(f"L0 level {level}")] for level in (0, 1)] == [
        f"{value:.2f}" for value in metrics["models"]["msae_seed1"]["l0_per_level"]]
    # the evaluation section: ablation, spectra and the per-level figure, and the table
    section = text[text.index('<section id="evaluation">'):]
    section = section[:section.index("</section>")]
    titles = re.findall(r"<figcaption><b>(.*?)</b>", section)
    assert titles == ["Latent ablation", "Spectral fidelity", "Per-level k against one shared k"]
    assert section.count('src="data:image/png;base64,') == 3
    table = re.search(r'id="level-k-table">.*?<tbody>\n(.*?)</tbody>', section, re.S).group(1)
    rows = [re.findall(r"<td>(.*?)</td>", each) for each in re.findall(r"<tr>.*?</tr>", table)]
    comparison = metrics["level_k_comparison"]
    for level, cells in enumerate(rows):
        expected = [str(level), str(comparison["level_sizes"][level])]
        for side in ("per_level", "shared"):
            values = comparison[side]
            expected += [str(values["k_per_level"][level]),
                         f"{values['l0_per_level'][level]:.2f}",
                         f"{values['explained_variance_per_level'][level]:.3f}",
                         f"{values['explained_variance_per_level_shifted'][level]:.3f}"]
        assert cells == expected
    sentences = re.findall(r"<li>(Level .*?)</li>", section)
    assert len(sentences) == 2
    mine, shared = comparison["per_level"], comparison["shared"]
    assert (f"its own k=2 uses {abs(shared['l0_per_level'][0] - mine['l0_per_level'][0]):.2f} "
            in sentences[0])
    assert (f"({mine['explained_variance_per_level'][0]:.3f} against "
            f"{shared['explained_variance_per_level'][0]:.3f})") in sentences[0]


@pytest.mark.slow
def test_per_level_k_config_repeats_the_run(level_k_run, tmp_path, one_torch_thread):
    out = tmp_path / "again"
    assert main(["run", "--config", str(level_k_run / "config.toml"), "--out", str(out),
                 "--quiet"]) == 0
    first, second = _metrics(level_k_run), _metrics(out)
    first.pop("timings"), second.pop("timings")
    assert first == second


def test_shared_k_window_run_shows_its_levels(runs):
    # a shared k: the k column says so; a window run shows the levels beside the figures
    for window in (1, 3):
        metrics = _metrics(runs[window])
        assert metrics["models"]["msae_seed0"]["k_per_level"] == [2, 2, 2]
        assert metrics["models"]["msae_seed0"]["shared_k"] is True
        assert "level_k_comparison" not in metrics
        text = (runs[window] / "report.html").read_text(encoding="utf-8")
        assert '<td>2 <small>(shared)</small></td>' in text
        assert ('id="level-k-table"' in text) == (window > 1)
    text = (runs[3] / "report.html").read_text(encoding="utf-8")
    table = re.search(r'id="level-k-table">.*?<tbody>\n(.*?)</tbody>', text, re.S).group(1)
    first = _metrics(runs[3])["models"]["msae_seed0"]
    rows = [re.findall(r"<td>(.*?)</td>", each) for each in re.findall(r"<tr>.*?</tr>", table)]
    assert [row[2] for row in rows] == ["2", "2", "2"]
    assert [row[4] for row in rows] == [
        f"{value:.3f}" for value in first["explained_variance_per_level"]]
