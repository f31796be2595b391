"""Tests for sklearn_nldisco/cli.py and sklearn_nldisco/_cli/.

Runs use a tiny simulated session and a few training epochs; the ``fetch``
command is tested against the local fake DANDI archive of test_fetch.py
(127.0.0.1 only, nothing reaches the internet).
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from http.server import ThreadingHTTPServer
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import error_line

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco._cli._config import (
    UsageError,
    baseline_k,
    binner_parameters,
    model_parameters,
    read_config,
    resolve,
    write_config,
)
from sklearn_nldisco._cli._stages import (
    Binned,
    bin_spikes,
    fit_baselines,
    fit_msae,
    load,
    split,
)
from sklearn_nldisco.cli import main
from sklearn_nldisco.datasets import make_reaching_session, write_nwb
from sklearn_nldisco.interpretation import load_activations
from sklearn_nldisco.models import check_level_k, check_levels

TINY = ["--n-units", "12", "--n-trials", "30", "--n-latents", "16", "--k", "2",
        "--max-iter", "5", "--seeds", "2", "--n-permutations", "20"]
METRIC_KEYS = {"source", "split", "n_units", "n_trials", "n_bins_train", "n_bins_held_out",
               "seeds", "models", "seed_agreement", "n_stable_latents",
               "n_selective_latents", "selectivity_variables", "evaluation", "timings",
               "versions", "n_live_latents", "selective_fraction", "ground_truth"}
FIGURES = ["decoder_weights", "l0", "latent_frequency", "unit_r2", "training_curves"]


def _without_timings(metrics):
    return {key: value for key, value in metrics.items() if key != "timings"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", "--out", str(out), *TINY]) == 0
    return out


def test_run_writes_every_artefact(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS
    assert metrics["seeds"] == [0, 1]
    assert set(metrics["models"]) == {"msae_seed0", "msae_seed1", "pca", "nmf"}
    msae = metrics["models"]["msae_seed0"]
    assert msae["level_sizes"] == [4, 8, 16]
    assert len(msae["explained_variance_per_level"]) == len(msae["l0_per_level"]) == 3
    assert np.isclose(msae["explained_variance_per_level"][-1], msae["explained_variance"])
    assert np.all(np.diff(msae["l0_per_level"]) >= 0)
    assert 0 <= msae["dead_fraction"] <= 1
    assert metrics["models"]["pca"]["l0"] == 2
    assert len(metrics["seed_agreement"]["mean_cosine_per_level"]) == 3
    assert set(metrics["n_selective_latents"]) == set(metrics["models"])
    assert metrics["timings"]["total_s"] > 0
    assert metrics["timings"]["evaluate_s"] > 0

    for name in ("msae_seed0", "msae_seed1", "pca", "nmf"):
        model = joblib.load(tiny_run / f"{name}.joblib")
        assert hasattr(model, "components_")

    table = pd.read_csv(tiny_run / "selectivity.csv")
    assert {"model", "latent", "variable", "condition", "selectivity", "q", "stable",
            "selective"} <= set(table.columns)
    assert set(table["model"]) == set(metrics["models"])
    assert set(table["variable"]) <= {"phase", "trial_type", "speed", "direction_deg"}
    msae_rows = table["model"].str.startswith("msae")
    assert table.loc[msae_rows, "stable"].notna().all()
    assert table.loc[~msae_rows, "stable"].isna().all()

    for run in ("msae_seed0", "msae_seed1"):
        activations = load_activations(tiny_run / "activations.npz", run=run)
        assert activations.codes.shape == (metrics["n_bins_held_out"], 16)

    for name in FIGURES:
        assert (tiny_run / f"{name}.png").stat().st_size > 1000
    for card in tiny_run.glob("feature_card_latent*.png"):
        assert card.stat().st_size > 1000

    assert (tiny_run / "report.html").stat().st_size > 10_000  # tests/test_report.py
    config = tomllib.loads((tiny_run / "config.toml").read_text())
    assert config["n_latents"] == 16 and config["max_iter"] == 5 and config["seeds"] == 2


def test_every_explained_variance_has_its_controls(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    evaluation = metrics["evaluation"]
    assert set(evaluation) == {"structure_control", "co_smoothing", "single_unit_dominance"}
    assert evaluation["structure_control"]["models"] == list(metrics["models"])
    assert evaluation["structure_control"]["random_state"] == {"train": 0, "held_out": 1000}
    co_smoothing = evaluation["co_smoothing"]
    # the default run smooths; co-smoothing scores the counts before smoothing
    assert co_smoothing["input"] == "binned spike counts before smoothing"
    assert co_smoothing["held_out"] == 0.25 and co_smoothing["random_state"] == 0
    assert len(co_smoothing["held_out_units"]) == 3  # a quarter of 12 units
    assert co_smoothing["models"] == ["msae_seed0", "pca", "nmf"]
    assert np.isfinite(co_smoothing["smoothing_baseline"]["bits_per_spike"])
    assert co_smoothing["smoothing_baseline"]["sigma_bins"] == 1.0
    assert evaluation["single_unit_dominance"]["threshold"] == 0.8

    for name, model in metrics["models"].items():
        assert -1 < model["explained_variance_shifted"] <= 1
        assert model["structure_explained"] == pytest.approx(
            model["explained_variance"] - model["explained_variance_shifted"])
        bits = model["co_smoothing_bits_per_spike"]
        if name in co_smoothing["models"]:
            assert np.isfinite(bits) and abs(bits) < 1
        else:
            assert bits is None  # the later seeds are not co-smoothed
        assert 1 / 12 <= model["single_unit_dominance_median"] <= 1
        assert 0 <= model["single_unit_fraction"] <= 1
        assert model["single_unit_fraction_selective"] is None or (
            0 <= model["single_unit_fraction_selective"] <= 1)
    msae = metrics["models"]["msae_seed0"]
    shifted = msae["explained_variance_per_level_shifted"]
    assert len(shifted) == len(msae["explained_variance_per_level"])
    assert shifted[-1] == pytest.approx(msae["explained_variance_shifted"])
    np.testing.assert_allclose(
        msae["structure_explained_per_level"],
        np.subtract(msae["explained_variance_per_level"], shifted))


def test_controls_are_the_evaluation_functions(tiny_run, one_torch_thread):
    # the PCA baseline's numbers, recomputed from the public functions
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    from sklearn_nldisco.evaluation import GaussianSmoother, co_smoothing, shift_units
    from sklearn_nldisco.models import explained_variance

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    settings = resolve(tomllib.loads((tiny_run / "config.toml").read_text()), {})
    data = split(bin_spikes(load(settings), settings), settings["seed"], "simulated")
    train = shift_units(data.X_train, random_state=0)
    test = shift_units(data.X_test, random_state=1000)
    pca = PCA(n_components=2, random_state=0).fit(train)
    pca_metrics = metrics["models"]["pca"]
    assert pca_metrics["explained_variance_shifted"] == pytest.approx(
        explained_variance(test, pca.inverse_transform(pca.transform(test))))
    result = co_smoothing(make_pipeline(GaussianSmoother(1.0), PCA(n_components=2)),
                          data.counts_train, data.counts_test, held_out=0.25, random_state=0)
    assert result.held_out_units.tolist() == metrics["evaluation"]["co_smoothing"][
        "held_out_units"]
    assert pca_metrics["co_smoothing_bits_per_spike"] == pytest.approx(result.bits_per_spike)
    reference = co_smoothing(GaussianSmoother(1.0), data.counts_train, data.counts_test,
                             held_out=0.25, random_state=0)
    assert metrics["evaluation"]["co_smoothing"]["smoothing_baseline"][
        "bits_per_spike"] == pytest.approx(reference.bits_per_spike)


def test_live_latents_and_selective_fraction(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for name in ("msae_seed0", "msae_seed1"):
        model = joblib.load(tiny_run / f"{name}.joblib")
        assert metrics["n_live_latents"][name] == 16 - len(model.dead_latents_)
    assert metrics["n_live_latents"]["pca"] == metrics["n_live_latents"]["nmf"] == 2
    for name, live in metrics["n_live_latents"].items():
        assert metrics["selective_fraction"][name] == pytest.approx(
            metrics["n_selective_latents"][name] / live)


def test_ground_truth_is_the_best_matching_latent(tiny_run):
    # recomputed from the saved activations and the simulation's own features
    from sklearn_nldisco._cli._truth import COLUMNS

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    truth_metrics = metrics["ground_truth"]
    settings = resolve(tomllib.loads((tiny_run / "config.toml").read_text()), {})
    loaded = load(settings)
    truth = loaded.ground_truth
    assert truth_metrics["n_features"] == truth.n_features == 12
    assert [f["feature"] for f in truth_metrics["features"]] == list(truth.feature_names)
    assert set(truth_metrics["models"]) == set(metrics["models"])
    data = split(bin_spikes(loaded, settings), settings["seed"], loaded.source)
    metadata = data.metadata_scored
    activity = truth.binned_activity(metadata[["bin_start", "bin_stop"]].to_numpy())
    for name in ("msae_seed0", "msae_seed1"):
        codes = load_activations(tiny_run / "activations.npz", run=name).codes
        codes = np.asarray(codes.toarray() if hasattr(codes, "toarray") else codes)
        model = truth_metrics["models"][name]
        assert set(model["rows"][0]) == set(COLUMNS) - {"model"}
        n_yes = 0
        for f, row in enumerate(model["rows"]):
            assert (row["feature"], (row["variable"], row["condition"])) == (
                truth.feature_names[f], truth.planted_conditions[truth.feature_names[f]])
            if np.ptp(activity[:, f]) == 0:  # silent in the held-out bins
                assert row["correlation"] is None
                continue
            r = [np.corrcoef(activity[:, f], codes[:, j])[0, 1] if np.ptp(codes[:, j]) else -2
                 for j in range(codes.shape[1])]
            assert row["latent"] == int(np.argmax(r)) and row["sign"] == 1
            assert row["correlation"] == pytest.approx(max(r))
            n_yes += row["selective_for_planted"] is True
            if row["selective_for_planted"]:
                assert row["top_condition"] == row["condition"] and row["q"] < 0.05
        assert model["n_selective_for_planted"] == n_yes
        assert model["median_correlation"] == pytest.approx(np.median(
            [row["correlation"] for row in model["rows"] if row["correlation"] is not None]))
    assert (tiny_run / "report.html").read_text().count('class="truth-') == 12 * 4


def test_best_matches_takes_either_sign():
    from sklearn_nldisco._cli._truth import best_matches

    rng = np.random.default_rng(0)
    activity = np.maximum(rng.normal(size=(200, 3)), 0)
    activity[:, 2] = 0.0  # a feature silent in these bins
    codes = rng.normal(scale=0.1, size=(200, 4))
    codes[:, 2] += 3 * activity[:, 0]
    codes[:, 1] -= 2 * activity[:, 1]  # the negative half of a signed component
    latent, sign, correlation = best_matches(activity, codes)
    assert latent[:2].tolist() == [2, 1] and sign[:2].tolist() == [1, -1]
    assert (correlation[:2] > 0.9).all() and np.isnan(correlation[2])
    latent, sign, _ = best_matches(activity, np.maximum(codes, 0))  # unsigned: one sign
    assert sign.tolist() == [1, 1, 1]


def test_no_ground_truth_for_a_file(tmp_path):
    recording, _ = make_reaching_session(n_units=4, n_trials=6, random_state=0)
    path = tmp_path / "session.nwb"
    write_nwb(recording, path)
    settings = resolve({}, {"quiet": True})
    assert load({**settings, "nwb_file": str(path)}).ground_truth is None
    assert load(settings).ground_truth is not None


def test_config_file_repeats_the_run(tiny_run, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["run", "--config", str(tiny_run / "config.toml"), "--out", str(out),
                 "--quiet"]) == 0
    first = json.loads((tiny_run / "metrics.json").read_text())
    second = json.loads((out / "metrics.json").read_text())
    assert _without_timings(first) == _without_timings(second)
    assert capsys.readouterr().err == ""


def test_progress_on_stderr_and_quiet(tmp_path, capsys, one_torch_thread):
    args = [*TINY, "--seeds", "1", "--n-latents", "8", "--levels", "4,8"]
    assert main(["run", "--out", str(tmp_path / "loud"), *args]) == 0
    captured = capsys.readouterr()
    # stdout says only where the report is
    assert captured.out == f"report: {tmp_path / 'loud' / 'report.html'} (open it in a browser)\n"
    for step in ("loaded", "binning", "MSAE seed 0", "baselines", "selectivity",
                 "unit-shifted control", "co-smoothing", "structure explained",
                 "smoothing baseline", "writing", "done"):
        assert step in captured.err
    if hasattr(MatryoshkaSAE(), "set_callbacks"):
        # epochs are reported while fitting, for the run's fits only (not the controls')
        assert captured.err.count("MSAE seed 0: epoch 1\n") == 1
    assert main(["run", "--out", str(tmp_path / "quiet"), *args, "--quiet",
                 "--smooth-sigma", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    metrics = json.loads((tmp_path / "quiet" / "metrics.json").read_text())
    co_smoothing = metrics["evaluation"]["co_smoothing"]
    assert co_smoothing["input"] == "binned spike counts (the run does not smooth)"
    assert co_smoothing["model_input"] == "the held-in counts"
    assert metrics["seed_agreement"] is None  # one seed: nothing to compare
    assert metrics["models"]["msae_seed0"]["level_sizes"] == [4, 8]


def test_command_line_overrides_config_file(tmp_path, monkeypatch):
    config = tmp_path / "settings.toml"
    config.write_text('k = 3\nn_latents = 32\nloss = "poisson"\nlevels = [8, 32]\n')
    seen = {}
    def fake_run(settings, out, overwrite=False):
        seen.update(settings)
        return {"report": Path(out) / "report.html"}

    monkeypatch.setattr("sklearn_nldisco._cli._run.run", fake_run)
    main(["run", "--config", str(config), "--out", str(tmp_path), "--k", "2"])
    assert seen["k"] == 2  # command line
    assert seen["n_latents"] == 32 and seen["loss"] == "poisson"  # file
    assert seen["levels"] == (8, 32)
    assert seen["bin_size"] == 0.05  # default


def _settings_seen(monkeypatch, tmp_path, argv):
    """The settings ``nldisco run argv`` would run with (nothing is computed)."""
    seen = {}

    def fake_run(settings, out, overwrite=False):
        seen.update(settings)
        return {"report": Path(out) / "report.html"}

    monkeypatch.setattr("sklearn_nldisco._cli._run.run", fake_run)
    main(["run", "--out", str(tmp_path / "out"), "--quiet", *argv])
    return seen


@pytest.mark.parametrize("levels", [["16", "32", "64"], ["16,32,64"]])
def test_one_k_per_level(tmp_path, monkeypatch, levels):
    seen = _settings_seen(monkeypatch, tmp_path, ["--k", "2", "4", "8", "--levels", *levels])
    assert seen["k"] == (2, 4, 8) and seen["levels"] == (16, 32, 64)
    parameters = model_parameters(seen)
    assert parameters["k"] == {16: 2, 32: 4, 64: 8}
    assert parameters["level_sizes"] == (16, 32, 64)
    # the model agrees: each level its own budget
    assert check_level_k(parameters["k"], parameters["level_sizes"], 64) == (
        (16, 32, 64), (2, 4, 8))
    assert baseline_k(seen) == 8  # PCA and NMF: the last level's k
    # one value is the shared k, as before
    seen = _settings_seen(monkeypatch, tmp_path, ["--k", "3"])
    assert seen["k"] == 3 and model_parameters(seen)["k"] == 3 and baseline_k(seen) == 3


def test_one_k_per_level_in_the_config_file(tmp_path, monkeypatch):
    config = tmp_path / "settings.toml"
    config.write_text("k = [2, 4, 8]\nlevels = [16, 32, 64]\n")
    seen = _settings_seen(monkeypatch, tmp_path, ["--config", str(config)])
    assert seen["k"] == (2, 4, 8) and seen["levels"] == (16, 32, 64)
    config.write_text("k = [5]\n")  # a list of one: the shared k
    assert _settings_seen(monkeypatch, tmp_path, ["--config", str(config)])["k"] == 5


@pytest.mark.parametrize("k, levels", [(4, None), (3, (8, 64)), ((2, 4, 8), (16, 32, 64))])
def test_written_config_resolves_to_the_same_settings(tmp_path, k, levels):
    settings = resolve({}, {"k": k, "levels": levels, "quiet": True})
    write_config(settings, tmp_path / "config.toml")
    again = resolve(read_config(tmp_path / "config.toml"), {})
    assert again == settings
    assert model_parameters(again) == model_parameters(settings)


@pytest.mark.parametrize("options, message", [
    (["--k", "2", "4", "8", "--levels", "16", "64"],
     "--k 2 4 8 gives 3 values for the 2 levels 16 64; give one k per level, or one k for all"),
    (["--k", "2", "4"], "--k 2 4: one k per level needs --levels"),
    (["--k", "20", "24", "--levels", "16", "64"],
     "--k 20 24: level 16 cannot hold k=20; each k must be between 1 and its level's size"),
    (["--k", "0", "4", "--levels", "16", "64"], "--k 0 4: level 16 cannot hold k=0"),
    (["--k", "8", "4", "--levels", "16", "64"],
     "--k 8 4 decreases from one level to the next"),
    (["--k", "2", "x", "--levels", "16", "64"], "argument --k: invalid int value: 'x'"),
    (["--n-units", "6", "--k", "2", "8", "--levels", "16", "64"],
     "--k 8 is more than the 6 unit(s) of the simulated session"),
])
def test_bad_per_level_k(tmp_path, capsys, monkeypatch, options, message):
    _no_computation(monkeypatch)  # refused before reading or fitting anything
    line = error_line(capsys, ["run", "--out", str(tmp_path / "out"), *options])
    assert line.startswith(f"nldisco: error: {message}")
    assert not (tmp_path / "out").exists()


def test_bad_per_level_k_in_the_config_file(tmp_path, capsys):
    config = tmp_path / "settings.toml"
    config.write_text('k = [2, "four"]\nlevels = [16, 64]\n')
    line = error_line(capsys, ["run", "--config", str(config), "--out", str(tmp_path)])
    assert line == (f"nldisco: error: k in {config} must be an integer or a list of integers "
                    "(one per level); got [2, 'four']")
    config.write_text("k = [2, 4, 8]\nlevels = [16, 64]\n")
    assert "gives 3 values for the 2 levels" in error_line(
        capsys, ["run", "--config", str(config), "--out", str(tmp_path)])


def test_stages_pass_their_outputs_on(monkeypatch, one_torch_thread):
    settings = resolve({}, {"n_units": 12, "n_trials": 30, "n_latents": 16, "k": 2,
                            "max_iter": 2, "seeds": 2, "quiet": True})
    loaded = load(settings)
    assert loaded.source == "simulated reaching session" and loaded.recording.n_units == 12
    binned = bin_spikes(loaded, settings)
    assert binned.X.shape == binned.counts.shape == (len(binned.metadata), 12)
    # the activity is smoothed as SpikeBinner smooths; the counts are kept as they are
    from sklearn_nldisco.preprocessing import SpikeBinner

    smoothing = SpikeBinner(**binner_parameters(settings), intervals=loaded.recording.trials)
    np.testing.assert_array_equal(binned.X, smoothing.fit_transform(loaded.recording))
    np.testing.assert_array_equal(
        binned.counts, smoothing.set_params(smooth_sigma=None).fit_transform(loaded.recording))
    data = split(binned, settings["seed"], loaded.source)
    assert len(data.X_train) + len(data.X_test) == (binned.metadata["trial_id"] >= 0).sum()
    rows = binned.metadata.index.get_indexer(data.metadata_test.index)
    np.testing.assert_array_equal(data.X_test, binned.X[rows])
    np.testing.assert_array_equal(data.counts_test, binned.counts[rows])
    unsmoothed = bin_spikes(loaded, {**settings, "smooth_sigma": 0.0})
    assert unsmoothed.counts is None
    np.testing.assert_array_equal(unsmoothed.X, binned.counts)
    assert list(data.metadata_scored.index) == list(range(len(data.X_test)))

    # the MSAE fits on one thread (n_threads), the fitted models keep no limit
    import sklearn_nldisco.interpretation as interpretation

    fit_seeds, limits = interpretation.fit_seeds, []
    def spy(estimator, X, **kwargs):
        limits.append(estimator.get_params()["n_threads"])
        return fit_seeds(estimator, X, **kwargs)

    monkeypatch.setattr(interpretation, "fit_seeds", spy)
    msae = fit_msae(data.X_train, settings, progress=print)
    assert limits == [1, 1]  # with n_jobs 1 one seed at a time, each on one thread
    assert list(msae.models) == ["msae_seed0", "msae_seed1"] and msae.first == "msae_seed0"
    assert [model.n_threads for model in msae.runs] == [None, None]
    assert [model.random_state for model in msae.runs] == [0, 1]

    baselines = fit_baselines(data.X_train, 2, 0)
    codes = baselines.transform(data.X_test)
    assert codes["pca"].shape == codes["nmf"].shape == (len(data.X_test), 2)
    assert (codes["nmf"] >= 0).all()


def test_split_needs_two_bins_on_each_side():
    binned = Binned(np.zeros((4, 2)), pd.DataFrame({"trial_id": [0, 1, 2, -1]}))
    with pytest.raises(UsageError, match="too few bins to split here"):
        split(binned, 0, "here")


def test_missing_and_invalid_files(tmp_path, capsys):
    line = error_line(capsys, ["run", str(tmp_path / "nope.nwb"), "--out", str(tmp_path)])
    assert "nope.nwb" in line
    text = tmp_path / "notes.nwb"
    text.write_text("not an NWB file")
    assert "notes.nwb" in error_line(capsys, ["run", str(text), "--out",
                                               str(tmp_path / "out")])


def test_nwb_without_units(tmp_path, capsys):
    recording, _ = make_reaching_session(n_units=3, n_trials=6, random_state=0)
    empty = dataclasses.replace(recording, spike_times=[], units=recording.units.iloc[:0])
    path = tmp_path / "no_units.nwb"
    write_nwb(empty, path)
    line = error_line(capsys, ["run", str(path), "--out", str(tmp_path / "out")])
    assert "no units" in line


@pytest.mark.parametrize("options, message", [
    (["--k", "0"], "--k: The 'k' parameter of MatryoshkaSAE must be an int in the range [1, inf)"),
    (["--max-iter", "0"], "--max-iter: The 'max_iter' parameter of MatryoshkaSAE"),
    (["--k", "two"], "invalid int value"),
    (["--bin-size", "-1"], "--bin-size: The 'bin_size' parameter of SpikeBinner"),
    (["--smooth-sigma", "-0.1"], "--smooth-sigma: The 'smooth_sigma' parameter of SpikeBinner"),
    (["--loss", "huber"], "--loss: The 'loss' parameter of MatryoshkaSAE must be a str among"),
    (["--levels", "4,x"], "--levels"),
    (["--levels", "8,4,64"], "strictly increasing"),
    (["--n-latents", "16", "--levels", "4,16", "--k", "6"], "first level"),
    (["--n-latents", "16", "--levels", "4,8"], "n_latents=16"),
    (["--n-latents", "4", "--k", "6"], "k=6 is larger than n_latents=4"),
    (["--n-trials", "4"], "--n-trials must be >= 5"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--n-jobs", "0"], "--n-jobs"),
    (["--device", "gpu"], "--device 'gpu'"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_option_values(tmp_path, capsys, options, message):
    line = error_line(capsys, ["run", "--out", str(tmp_path), *options])
    assert message in line


def test_model_errors_are_the_estimators_own(tmp_path, capsys):
    # the message of the estimator's parameter validation, only prefixed by the option
    with pytest.raises(ValueError) as raised:
        MatryoshkaSAE(k=0).fit(np.ones((4, 2)))
    line = error_line(capsys, ["run", "--out", str(tmp_path), "--k", "0"])
    assert line == f"nldisco: error: --k: {raised.value}"
    # and of the models' check of the level sizes
    with pytest.raises(ValueError) as raised:
        check_levels(16, 2, (4, 8))
    line = error_line(capsys, ["run", "--out", str(tmp_path), "--n-latents", "16",
                                "--levels", "4,8", "--k", "2"])
    assert line == f"nldisco: error: --n-latents, --k and --levels: {raised.value}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_unavailable_device(tmp_path, capsys):
    line = error_line(capsys, ["run", "--out", str(tmp_path), "--device", "cuda"])
    assert line.startswith("nldisco: error: --device 'cuda': ")
    assert "CUDA is not available" in line


def test_valid_settings_pass_the_checks(tmp_path):
    settings = resolve({}, {"device": "auto", "levels": (8, 64), "loss": "poisson"})
    assert settings["levels"] == (8, 64) and settings["device"] == "auto"
    assert model_parameters(settings) == {
        "n_latents": 64, "k": 4, "level_sizes": (8, 64), "loss": "poisson",
        "device": "auto", "max_iter": 200}
    assert binner_parameters({**settings, "smooth_sigma": 0.0})["smooth_sigma"] is None


def test_bad_config_files(tmp_path, capsys):
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("k = 4\nn_latent = 64\n")
    assert "'n_latent'" in error_line(
        capsys, ["run", "--config", str(unknown), "--out", str(tmp_path)])
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('k = "four"\n')
    assert "k in" in error_line(
        capsys, ["run", "--config", str(wrong_type), "--out", str(tmp_path)])
    broken = tmp_path / "broken.toml"
    broken.write_text("k = = 4\n")
    assert "not valid TOML" in error_line(
        capsys, ["run", "--config", str(broken), "--out", str(tmp_path)])
    assert "no configuration file" in error_line(
        capsys, ["run", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path)])


def test_fetch_argument_errors(capsys):
    assert "invalid choice" in error_line(capsys, ["fetch", "mc_mayhem"])
    assert "invalid choice" in error_line(capsys, ["fetch", "mc_maze", "--size", "huge"])
    error_line(capsys, [])  # a command is required


def test_fetch_downloads_and_prints_the_path(tmp_path, capsys, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import test_fetch
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(test_fetch._fetch, "_RETRY_BACKOFF_S", 0.0)
    content = np.random.default_rng(0).bytes(50_000)
    server = ThreadingHTTPServer(("127.0.0.1", 0), test_fetch.Handler)
    server.daemon_threads = True
    server.archive = test_fetch.FakeArchive(content)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        host, port = server.server_address
        api_url = f"http://{host}:{port}/api"
        args = ["fetch", "mc_maze", "--data-home", str(tmp_path), "--api-url", api_url,
                "--quiet"]
        assert main(args) == 0
        printed = Path(capsys.readouterr().out.strip())
        assert printed == tmp_path / "dandi" / test_fetch.DANDISET / test_fetch.ASSET_PATH
        assert printed.read_bytes() == content

        server.archive.fail_status[f"/api/dandisets/{test_fetch.DANDISET}/"] = 404
        line = error_line(capsys, ["fetch", "mc_maze", "--data-home",
                                    str(tmp_path / "other"), "--api-url", api_url])
        assert "404" in line
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "sklearn_nldisco", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "run" in result.stdout and "fetch" in result.stdout


# --- the output folder: new or replaced as a whole, one run at a time -------

def _listing(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _no_leftovers(parent, *names):
    # nothing but the named entries: no staging folder, no lock, no old run
    assert sorted(path.name for path in parent.iterdir()) == sorted(names)


def _fake_analysis(files=("metrics.json", "report.html"), then=None):
    """A stand-in for the stages that writes ``files`` into the staging folder."""
    def analyse(settings, staging, out, progress, timings, check=None, hold=None):
        artefacts = {}
        for name in files:
            (staging / name).write_text(f"{name} of this run\n")
            artefacts[name.split(".")[0]] = staging / name
        if then is not None:
            then(staging, out)
        timings["total_s"] = 0.0
        return artefacts
    return analyse


@pytest.fixture
def earlier_run(tiny_run, tmp_path):
    """A copy of a finished run, with a stale model of an earlier, larger run."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run, out)
    joblib.dump(MatryoshkaSAE(), out / "msae_seed7.joblib")
    return out


def _no_computation(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the run started computing")
    monkeypatch.setattr("sklearn_nldisco._cli._run.load", fail)


def test_earlier_run_refused_without_overwrite(earlier_run, capsys, monkeypatch):
    before = _listing(earlier_run)
    _no_computation(monkeypatch)
    line = error_line(capsys, ["run", "--out", str(earlier_run), "--quiet"])
    assert line == (f"nldisco: error: --out {earlier_run} holds an earlier run; pass "
                    "--overwrite to replace it as a whole, or choose another folder")
    assert _listing(earlier_run) == before
    _no_leftovers(earlier_run.parent, "out")


def test_overwrite_replaces_the_earlier_run_as_a_whole(earlier_run, one_torch_thread):
    assert main(["run", "--out", str(earlier_run), "--overwrite", *TINY, "--seeds", "1",
                 "--quiet"]) == 0
    names = {path.name for path in earlier_run.iterdir()}
    assert "msae_seed7.joblib" not in names and "msae_seed1.joblib" not in names  # stale
    assert {"msae_seed0.joblib", "metrics.json", "report.html"} <= names
    metrics = json.loads((earlier_run / "metrics.json").read_text())
    assert metrics["seeds"] == [0]
    assert set(metrics["models"]) == {"msae_seed0", "pca", "nmf"}
    assert load_activations(earlier_run / "activations.npz", run="msae_seed0").codes.shape[1] \
        == 16
    _no_leftovers(earlier_run.parent, "out")


@pytest.mark.parametrize("content", ["notes.txt", "metrics.json+notes.txt", "file"])
def test_other_content_is_never_deleted(tmp_path, capsys, monkeypatch, content):
    _no_computation(monkeypatch)
    out = tmp_path / "out"
    if content == "file":
        out.write_text("mine")
        expected = "exists and is not a folder"
    else:
        out.mkdir()
        for name in content.split("+"):
            (out / name).write_text("mine")
        expected = "other content than a run"
    before = out.read_bytes() if content == "file" else _listing(out)
    for flags in ([], ["--overwrite"]):
        line = error_line(capsys, ["run", "--out", str(out), "--quiet", *flags])
        assert expected in line
    assert (out.read_bytes() if content == "file" else _listing(out)) == before
    _no_leftovers(tmp_path, "out")


def test_new_and_empty_folders(tmp_path, monkeypatch):
    from sklearn_nldisco._cli._run import run

    monkeypatch.setattr("sklearn_nldisco._cli._run._analyse", _fake_analysis())
    settings = resolve({}, {"quiet": True})
    (tmp_path / "empty").mkdir()
    for name in ("empty", "new/nested"):
        artefacts = run(settings, tmp_path / name)
        assert artefacts == {"metrics": tmp_path / name / "metrics.json",
                             "report": tmp_path / name / "report.html"}
        assert _listing(tmp_path / name) == {"metrics.json": b"metrics.json of this run\n",
                                             "report.html": b"report.html of this run\n"}
    _no_leftovers(tmp_path, "empty", "new")


def test_a_mount_point_is_replaced_in_place(earlier_run, monkeypatch):
    # a mounted --out (a container's volume) cannot be renamed: its files are replaced
    from sklearn_nldisco._cli._run import run

    ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount",
                        lambda path: Path(path) == earlier_run or ismount(path))
    monkeypatch.setattr("sklearn_nldisco._cli._run._analyse", _fake_analysis())
    inode = earlier_run.stat().st_ino
    run(resolve({}, {"quiet": True}), earlier_run, overwrite=True)
    assert earlier_run.stat().st_ino == inode
    assert _listing(earlier_run) == {"metrics.json": b"metrics.json of this run\n",
                                     "report.html": b"report.html of this run\n"}
    _no_leftovers(earlier_run.parent, "out")


def test_interrupt_leaves_the_folder_as_it_was(earlier_run, tmp_path, monkeypatch):
    from sklearn_nldisco._cli._run import run

    def interrupt(staging, out):
        assert staging.parent == out.parent and staging != out
        assert (staging / "metrics.json").exists() and not (out / "report.html").is_symlink()
        raise KeyboardInterrupt

    monkeypatch.setattr("sklearn_nldisco._cli._run._analyse", _fake_analysis(then=interrupt))
    settings = resolve({}, {"quiet": True})
    with pytest.raises(KeyboardInterrupt):
        run(settings, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    before = _listing(earlier_run)
    with pytest.raises(KeyboardInterrupt):
        run(settings, earlier_run, overwrite=True)
    assert _listing(earlier_run) == before  # the earlier run, untouched
    _no_leftovers(tmp_path, "out")


@pytest.mark.slow
def test_interrupt_while_writing_a_real_run(earlier_run, monkeypatch, one_torch_thread):
    # the models and activations are written when the report's writer is interrupted
    def interrupt(out_dir, **kwargs):
        assert (out_dir / "activations.npz").exists()
        raise KeyboardInterrupt

    monkeypatch.setattr("sklearn_nldisco._cli._stages.write_report", interrupt)
    before = _listing(earlier_run)
    with pytest.raises(SystemExit) as raised:  # exit status 130, one line
        main(["run", "--out", str(earlier_run), "--overwrite", *TINY, "--seeds", "1",
              "--quiet"])
    assert raised.value.code == 130
    assert _listing(earlier_run) == before
    _no_leftovers(earlier_run.parent, "out")


def test_concurrent_run_into_the_same_folder_is_refused(tmp_path, capsys, monkeypatch):
    from sklearn_nldisco._cli._run import run

    out, inner = tmp_path / "out", {}

    def second_run(staging, out):
        with pytest.raises(SystemExit) as raised:
            main(["run", "--out", str(out), "--overwrite", "--quiet"])
        inner["code"], inner["err"] = raised.value.code, capsys.readouterr().err

    monkeypatch.setattr("sklearn_nldisco._cli._run._analyse", _fake_analysis(then=second_run))
    run(resolve({}, {"quiet": True}), out)
    assert inner["code"] == 2
    assert inner["err"] == (
        f"nldisco: error: another run (process {os.getpid()}) is writing to {out}; wait for "
        f"it to finish, or remove {tmp_path / '.out.lock'} if no run is active\n")
    assert _listing(out) == {"metrics.json": b"metrics.json of this run\n",
                             "report.html": b"report.html of this run\n"}
    _no_leftovers(tmp_path, "out")


FIRST_RUN = """
import sys, time
from pathlib import Path
import sklearn_nldisco._cli._run as run_module
from sklearn_nldisco.cli import main

def analyse(settings, staging, out, progress, timings, check=None, hold=None):
    (staging / "metrics.json").write_text("first")
    Path(sys.argv[2]).write_text("started")
    deadline = time.monotonic() + 60
    while not Path(sys.argv[3]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    timings["total_s"] = 0.0
    return {"metrics": staging / "metrics.json", "report": staging / "metrics.json"}

run_module._analyse = analyse
main(["run", "--out", sys.argv[1], "--quiet"])
"""


def test_concurrent_processes(tmp_path):
    # two processes: the second fails at once with one line; the first's run is whole
    out, started, release = tmp_path / "out", tmp_path / "started", tmp_path / "release"
    first = subprocess.Popen([sys.executable, "-c", FIRST_RUN, str(out), str(started),
                              str(release)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "sklearn_nldisco", "run", "--out",
                                 str(out), "--quiet"], capture_output=True, text=True,
                                timeout=120)
    finally:
        release.write_text("")
        first.wait(timeout=60)
    assert second.returncode == 2
    assert second.stderr == (f"nldisco: error: another run (process {first.pid}) is writing "
                             f"to {out}; wait for it to finish, or remove "
                             f"{tmp_path / '.out.lock'} if no run is active\n")
    assert first.returncode == 0, first.stderr.read()
    assert _listing(out) == {"metrics.json": b"first"}
    _no_leftovers(tmp_path, "out", "started", "release")


def test_lock_of_a_dead_run_is_taken_over(tmp_path, monkeypatch):
    from sklearn_nldisco._cli._run import run

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / ".out.lock").write_text(dead.stdout)
    monkeypatch.setattr("sklearn_nldisco._cli._run._analyse", _fake_analysis())
    run(resolve({}, {"quiet": True}), tmp_path / "out")
    assert (tmp_path / "out" / "metrics.json").exists()
    _no_leftovers(tmp_path, "out")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="permissions do not bind the superuser")
def test_unwritable_parent_is_refused_before_computing(tmp_path, capsys, monkeypatch):
    _no_computation(monkeypatch)
    parent = tmp_path / "read_only"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        line = error_line(capsys, ["run", "--out", str(parent / "out"), "--quiet"])
    finally:
        parent.chmod(0o700)
    assert "not writable" in line or "Permission denied" in line
