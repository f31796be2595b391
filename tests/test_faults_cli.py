"""Faults of ``nldisco run``: interrupts, a full disk, user and data mistakes.

Interrupts and a full disk are injected at seeded random points of a run.
To keep that cheap, one real tiny run records what each stage returned
(``recorded``); the injected runs replay those results and write for real,
so every writer of the write stage can be made to fail. Two tests interrupt
real fits, where the estimator catches the interrupt to keep its last good
epoch: the command must stop all the same. Every fault must end with one
line on stderr, exit status 130 (interrupt) or 2 (a mistake, a full disk),
no staging folder, lock or empty file left, and an earlier run untouched.
"""

import dataclasses
import errno
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

import sklearn_nldisco._cli._run as run_module
import sklearn_nldisco._cli._stages as stages_module
from sklearn_nldisco._cli._config import MAX_SEED, UsageError, resolve
from sklearn_nldisco._cli._stages import check_smoothing, check_units
from sklearn_nldisco.cli import EXIT_INTERRUPTED, main
from sklearn_nldisco.datasets import make_reaching_session, write_nwb

TINY = ["--n-units", "12", "--n-trials", "30", "--n-latents", "16", "--k", "2",
        "--max-iter", "5", "--seeds", "2", "--n-permutations", "20", "--quiet"]
# the stages _run._analyse calls, in order (each replayed from the recorded run)
STAGES = ["load", "bin_spikes", "split", "fit_msae", "fit_baselines", "score", "evaluate",
          "_ground_truth"]
N_INJECTIONS = 6


def _listing(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _no_leftovers(parent, *names):
    # nothing but the named entries: no staging folder, no lock, no old run
    assert sorted(path.name for path in parent.iterdir()) == sorted(names)


def _no_empty_files(root):
    empty = [path for path in Path(root).rglob("*") if path.is_file()
             and path.stat().st_size == 0]
    assert not empty, empty


def _exit(capsys, argv):
    """Run the command in-process: its exit status and its stderr lines."""
    try:
        status = main(argv)
    except SystemExit as raised:
        status = raised.code
    except KeyboardInterrupt:  # escaped the command: a failure, not the end of the tests
        status = "KeyboardInterrupt raised"
    return status, capsys.readouterr().err.strip().splitlines()


def _one_error_line(capsys, argv, status=2):
    code, lines = _exit(capsys, argv)
    assert code == status, lines
    assert len(lines) == 1, lines
    return lines[0]


# --- a recorded run, replayed with faults ------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory, one_torch_thread):
    """One real tiny run: the output folder and what each stage returned."""
    out = tmp_path_factory.mktemp("recorded") / "out"
    results = {}
    patch = pytest.MonkeyPatch()

    def recording(name, function):
        def stage(*args, **kwargs):
            results[name] = function(*args, **kwargs)
            return results[name]
        return stage

    for name in STAGES:
        patch.setattr(run_module, name, recording(name, getattr(run_module, name)))
    try:
        assert main(["run", "--out", str(out), *TINY]) == 0
    finally:
        patch.undo()
    assert set(results) == set(STAGES)
    return out, results


@pytest.fixture
def earlier_run(recorded, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(recorded[0], out)
    return out


def _replay(monkeypatch, results, interrupt_at=None):
    """Stages return their recorded results; ``interrupt_at`` raises KeyboardInterrupt."""
    for name in STAGES:
        def stage(*args, name=name, **kwargs):
            if name == interrupt_at:
                raise KeyboardInterrupt
            return results[name]
        monkeypatch.setattr(run_module, name, stage)


def _target_of(writer, args, kwargs):
    """The file a writer is writing (its path argument)."""
    if writer in ("dump", "savefig", "to_csv"):
        return args[1]
    if writer == "write_report":
        return Path(args[0]) / "report.html"
    return args[0] if writer in ("save_activations", "write_metrics") else args[1]


class FaultyWriters:
    """Every writer of the write stage, counted; the ``fail_at``-th call fails.

    ``fault`` is ``"interrupt"`` (KeyboardInterrupt) or ``"disk_full"``: the
    writer leaves an empty file, as a full disk does, and raises ENOSPC.
    """

    def __init__(self, monkeypatch, fault, fail_at):
        self.fault, self.fail_at, self.calls = fault, fail_at, []
        originals = {
            "dump": (joblib, "dump"),
            "savefig": (matplotlib.figure.Figure, "savefig"),
            "to_csv": (pd.DataFrame, "to_csv"),
            "write_config": (stages_module, "write_config"),
            "write_report": (stages_module, "write_report"),
            "write_metrics": (run_module, "write_metrics"),
        }
        import sklearn_nldisco.interpretation as interpretation

        originals["save_activations"] = (interpretation, "save_activations")
        for writer, (owner, name) in originals.items():
            monkeypatch.setattr(owner, name, self._wrap(writer, getattr(owner, name)))

    def _wrap(self, writer, function):
        def wrapped(*args, **kwargs):
            self.calls.append(writer)
            if len(self.calls) == self.fail_at:
                if self.fault == "interrupt":
                    raise KeyboardInterrupt
                target = Path(_target_of(writer, args, kwargs))
                target.write_bytes(b"")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
            return function(*args, **kwargs)
        return wrapped


def _count_writes(monkeypatch, recorded, tmp_path):
    _replay(monkeypatch, recorded[1])
    writers = FaultyWriters(monkeypatch, "interrupt", fail_at=0)
    assert main(["run", "--out", str(tmp_path / "counted"), *TINY]) == 0
    monkeypatch.undo()
    shutil.rmtree(tmp_path / "counted")
    return len(writers.calls)


def test_replayed_run_equals_the_recorded_one(recorded, tmp_path, monkeypatch):
    # the replay is faithful: faults injected into it are faults of a real run
    _replay(monkeypatch, recorded[1])
    assert main(["run", "--out", str(tmp_path / "again"), *TINY]) == 0
    ours = json.loads((tmp_path / "again" / "metrics.json").read_text())
    theirs = json.loads((recorded[0] / "metrics.json").read_text())
    assert {**ours, "timings": None} == {**theirs, "timings": None}
    assert sorted(_listing(tmp_path / "again")) == sorted(_listing(recorded[0]))


def test_interrupt_at_seeded_random_points(recorded, earlier_run, tmp_path, capsys,
                                           monkeypatch):
    n_writes = _count_writes(monkeypatch, recorded, tmp_path)
    points = [("stage", name) for name in STAGES] + [
        ("write", n) for n in range(1, n_writes + 1)]
    rng = np.random.default_rng(15)
    before = _listing(earlier_run)
    for index in rng.choice(len(points), size=N_INJECTIONS, replace=False):
        kind, where = points[index]
        for argv in (["--out", str(tmp_path / "new")],
                     ["--out", str(earlier_run), "--overwrite"]):
            with monkeypatch.context() as patch:
                _replay(patch, recorded[1], interrupt_at=where if kind == "stage" else None)
                if kind == "write":
                    FaultyWriters(patch, "interrupt", fail_at=where)
                line = _one_error_line(capsys, ["run", *argv, *TINY], EXIT_INTERRUPTED)
            assert line == "nldisco: interrupted", (kind, where)
        assert _listing(earlier_run) == before, (kind, where)
        _no_leftovers(tmp_path, "out")
        _no_empty_files(tmp_path)


def test_disk_full_at_seeded_random_writes(recorded, earlier_run, tmp_path, capsys,
                                           monkeypatch):
    n_writes = _count_writes(monkeypatch, recorded, tmp_path)
    rng = np.random.default_rng(28)
    before = _listing(earlier_run)
    chosen = sorted({1, *rng.choice(np.arange(2, n_writes + 1), size=N_INJECTIONS - 1,
                                    replace=False).tolist()})
    for fail_at in chosen:
        for argv in (["--out", str(tmp_path / "new")],
                     ["--out", str(earlier_run), "--overwrite"]):
            with monkeypatch.context() as patch:
                _replay(patch, recorded[1])
                writers = FaultyWriters(patch, "disk_full", fail_at=fail_at)
                line = _one_error_line(capsys, ["run", *argv, *TINY])
            out = argv[1]
            written = writers.calls[-1]
            assert line.startswith(f"nldisco: error: could not write the run to {out}: "
                                   "No space left on device (writing "), (written, line)
            assert line.endswith("); nothing was written there"), line
            assert ".tmp-" not in line  # the staging folder is not the user's business
            assert _listing(earlier_run) == before, written
            _no_leftovers(tmp_path, "out")
            _no_empty_files(tmp_path)


def test_a_failed_move_into_place_keeps_the_earlier_run(recorded, earlier_run, tmp_path,
                                                        capsys, monkeypatch):
    # the rename of the finished run fails (a full or read-only disk): the earlier
    # run is put back, one line
    _replay(monkeypatch, recorded[1])
    rename, calls = os.rename, []

    def failing_rename(source, target):
        calls.append(target)
        if len(calls) == 2:  # the staging folder onto --out, after --out was moved aside
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return rename(source, target)

    monkeypatch.setattr(os, "rename", failing_rename)
    before = _listing(earlier_run)
    line = _one_error_line(capsys, ["run", "--out", str(earlier_run), "--overwrite", *TINY])
    assert line.startswith(f"nldisco: error: could not move the finished run into "
                           f"{earlier_run}: No space left on device")
    assert _listing(earlier_run) == before
    _no_leftovers(tmp_path, "out")


def test_no_room_is_refused_before_computing(tmp_path, capsys, monkeypatch):
    import sklearn_nldisco._cli._output as output

    def fail(*args, **kwargs):
        raise AssertionError("the run started computing")

    monkeypatch.setattr(run_module, "load", fail)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(output.shutil, "disk_usage",
                        lambda path: usage._replace(free=4096))
    line = _one_error_line(capsys, ["run", "--out", str(tmp_path / "out"), *TINY])
    assert line == (f"nldisco: error: no room for the output folder {tmp_path / 'out'}: "
                    "4,096 bytes free on its file system, and the smallest run writes "
                    "about 1 MiB")
    _no_leftovers(tmp_path)


def test_read_only_earlier_run_is_refused_before_computing(earlier_run, capsys,
                                                           monkeypatch):
    # os.access, not chmod: permissions do not bind the superuser who may run CI
    import sklearn_nldisco._cli._output as output

    access = os.access
    monkeypatch.setattr(output.os, "access",
                        lambda path, mode: Path(path) != earlier_run and access(path, mode))
    monkeypatch.setattr(run_module, "load", lambda settings: pytest.fail("computed"))
    before = _listing(earlier_run)
    line = _one_error_line(capsys, ["run", "--out", str(earlier_run), "--overwrite", *TINY])
    assert line == (f"nldisco: error: --out {earlier_run} holds an earlier run that cannot be "
                    "replaced: the folder is not writable")
    assert _listing(earlier_run) == before


# --- interrupts inside real fits ---------------------------------------------

def _interrupt_a_fit(monkeypatch, how, at_pass=3):
    """Interrupt the ``at_pass``-th training pass; record the seeds whose fit started."""
    import sklearn_nldisco.interpretation._consistency as consistency
    import sklearn_nldisco.models._driver as driver

    one_pass, fit_one = driver._one_pass, consistency._fit_one
    passes, seeds = [], []

    def interrupted_pass(*args, **kwargs):
        passes.append(1)
        if len(passes) == at_pass:
            if how == "signal":
                signal.raise_signal(signal.SIGINT)  # as Ctrl-C: the handler raises
            else:
                raise KeyboardInterrupt
        return one_pass(*args, **kwargs)

    def recorded_fit(estimator, X, y):
        seeds.append(estimator.random_state)
        return fit_one(estimator, X, y)

    monkeypatch.setattr(driver, "_one_pass", interrupted_pass)
    monkeypatch.setattr(consistency, "_fit_one", recorded_fit)
    return seeds


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_interrupt_caught_by_the_estimator_stops_the_run(how, tmp_path, capsys, monkeypatch,
                                                         one_torch_thread):
    # the estimator keeps its last good epoch and returns; the command stops before
    # the next seed, exit 130, nothing written
    # (the handler before the run: Python's, or SIG_IGN in a job started in the
    # background by a shell without job control)
    before = signal.getsignal(signal.SIGINT)
    seeds = _interrupt_a_fit(monkeypatch, how)
    line = _one_error_line(capsys, ["run", "--out", str(tmp_path / "out"), *TINY],
                           EXIT_INTERRUPTED)
    assert line == "nldisco: interrupted"
    assert seeds == [0]
    _no_leftovers(tmp_path)
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_interrupt_caught_in_the_evaluation_refits(recorded, tmp_path, capsys, monkeypatch,
                                                   one_torch_thread):
    # the unit-shifted control refits every seed: an interrupt there stops the run too
    results = recorded[1]
    for name in ("load", "bin_spikes", "split", "fit_msae", "fit_baselines", "score"):
        monkeypatch.setattr(run_module, name, lambda *a, name=name, **k: results[name])
    seeds = _interrupt_a_fit(monkeypatch, "signal")
    line = _one_error_line(capsys, ["run", "--out", str(tmp_path / "out"), *TINY],
                           EXIT_INTERRUPTED)
    assert line == "nldisco: interrupted"
    assert seeds == [0]
    _no_leftovers(tmp_path)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to the process: POSIX only")
def test_sigint_while_torch_is_imported_waits_for_the_import(tmp_path, monkeypatch, capsys):
    # a KeyboardInterrupt raised inside torch's import (extension code calling
    # back into Python) aborted the process (status -6): the command imports
    # torch before the first fit with SIGINT held back, then stops
    finished = []

    def importing():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here unless SIGINT is held back
        finished.append(True)

    monkeypatch.setattr(run_module, "_import_torch", importing)
    out = tmp_path / "out"
    line = _one_error_line(capsys, ["run", "--out", str(out), *TINY], EXIT_INTERRUPTED)
    assert line == "nldisco: interrupted"
    assert finished == [True]
    _no_leftovers(tmp_path)


SIGINT_RUN = """
import sys
from sklearn_nldisco.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a process: POSIX only")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigint_to_the_process(tmp_path, seed):
    # a real Ctrl-C at a seeded random time after the fits start
    out = tmp_path / "out"
    options = [arg for arg in TINY if arg != "--quiet"]
    options[options.index("--max-iter") + 1] = "200"
    process = subprocess.Popen([sys.executable, "-c", SIGINT_RUN, "run", "--out", str(out),
                                *options], stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "] fitting MatryoshkaSAE" in line:
            break
    time.sleep(np.random.default_rng(seed).uniform(0.0, 1.0))
    process.send_signal(signal.SIGINT)
    lines += process.stderr.readlines()
    assert process.wait(timeout=120) == EXIT_INTERRUPTED, "".join(lines)
    assert lines[-1] == "nldisco: interrupted\n"
    assert not any("Traceback" in line or "Warning" in line for line in lines), lines
    _no_leftovers(tmp_path)


# --- user and data mistakes: one line, exit 2, before the expensive work -------

def _must_not_run(monkeypatch, *stages):
    for name in stages:
        monkeypatch.setattr(run_module, name,
                            lambda *a, name=name, **k: pytest.fail(f"{name} ran"))


def test_spikes_outside_the_trials(tmp_path, capsys, monkeypatch):
    recording, _ = make_reaching_session(n_units=6, n_trials=8, random_state=0)
    late = dataclasses.replace(recording, spike_times=[
        np.asarray(times) + 10_000.0 for times in recording.spike_times])
    path = tmp_path / "late.nwb"
    write_nwb(late, path)
    _must_not_run(monkeypatch, "fit_msae")
    line = _one_error_line(capsys, ["run", str(path), "--out", str(tmp_path / "out"), *TINY])
    assert line.startswith(f"nldisco: error: no spike of {path} falls inside its trials "
                           "(spikes from 1")
    assert line.endswith("; nothing to analyse")


def test_no_spike_in_the_training_trials():
    from sklearn_nldisco._cli._stages import Binned, split, split_trials

    metadata = pd.DataFrame({"trial_id": np.repeat(np.arange(10), 3)})
    X = np.zeros((30, 4))
    X[split_trials(metadata, 1)[1]] = 1.0  # spikes in the held-out trials only
    with pytest.raises(UsageError, match="the training trials of here hold no spike"):
        split(Binned(X, metadata), seed=1, source="here")


def test_fewer_units_than_k(tmp_path, capsys, monkeypatch):
    _must_not_run(monkeypatch, "load")
    line = _one_error_line(capsys, ["run", "--out", str(tmp_path / "out"), *TINY,
                                    "--n-units", "3", "--k", "4"])
    assert line == ("nldisco: error: --k 4 is more than the 3 unit(s) of the simulated "
                    "session (--n-units): the baselines fit k components of the units; "
                    "choose --k of at most 3")
    with pytest.raises(UsageError, match=r"--k 4 is more than the 3 unit\(s\) of f.nwb"):
        check_units(3, 4, "f.nwb")
    check_units(4, 4, "f.nwb")


def test_fewer_units_than_k_in_a_file(tmp_path, capsys, monkeypatch):
    recording, _ = make_reaching_session(n_units=3, n_trials=8, random_state=0)
    path = tmp_path / "three.nwb"
    write_nwb(recording, path)
    _must_not_run(monkeypatch, "bin_spikes")
    line = _one_error_line(capsys, ["run", str(path), "--out", str(tmp_path / "out"),
                                    "--k", "4", "--quiet"])
    assert line.startswith(f"nldisco: error: --k 4 is more than the 3 unit(s) of {path}")


@pytest.mark.parametrize("seeds", [1, 3, 2000])
def test_seed_beyond_what_numpy_accepts(tmp_path, capsys, monkeypatch, seeds):
    _must_not_run(monkeypatch, "load")
    largest = MAX_SEED - max(seeds - 1, 1000)
    for seed in (2**32, largest + 1):
        line = _one_error_line(capsys, ["run", "--out", str(tmp_path / "out"),
                                        "--seeds", str(seeds), "--seed", str(seed)])
        assert line.startswith(f"nldisco: error: --seed must be <= {largest} ")
        assert line.endswith(f"got {seed}")
    settings = resolve({}, {"seed": largest, "seeds": seeds})
    for offset in (settings["seeds"] - 1, 1000):  # the largest seeds the run draws with
        np.random.RandomState(settings["seed"] + offset)


def test_config_file_not_utf8(tmp_path, capsys, monkeypatch):
    _must_not_run(monkeypatch, "load")
    config = tmp_path / "latin1.toml"
    config.write_bytes('nwb_file = "caf\xe9.nwb"\n'.encode("latin-1"))
    line = _one_error_line(capsys, ["run", "--out", str(tmp_path / "out"), "--config",
                                    str(config)])
    assert line == (f"nldisco: error: {config} is not valid TOML: it is not UTF-8 text "
                    "(byte 0xe9 at position 15)")


def test_huge_smoothing_is_refused_before_binning(tmp_path, capsys, monkeypatch):
    import sklearn_nldisco.preprocessing as preprocessing

    monkeypatch.setattr(preprocessing, "smooth_within_intervals",
                        lambda *a, **k: pytest.fail("smoothed"))
    _must_not_run(monkeypatch, "split")
    line = _one_error_line(capsys, ["run", "--out", str(tmp_path / "out"), *TINY,
                                    "--smooth-sigma", "1e6"])
    assert line.startswith("nldisco: error: --smooth-sigma 1e+06 s is longer than the "
                           "longest trial of simulated reaching session (")
    intervals = pd.DataFrame({"start_time": [0.0, 10.0], "stop_time": [2.0, 13.0]})
    check_smoothing(3.0, intervals, "trial", "f.nwb")  # up to the longest trial
    with pytest.raises(UsageError, match=r"longest time block of f.nwb \(3 s\)"):
        check_smoothing(3.5, intervals, "time block", "f.nwb")


def test_placeholder_text_in_the_source_is_shown_as_text(recorded, tmp_path, monkeypatch):
    # the page is rendered by Jinja from templates: values are never re-read as
    # template text or placeholders (it once was assembled by string replacement)
    hostile = "/data/@@DATA@@ @@SUMMARY@@ {{ title }} {% raw %}<b>x</b>.nwb"
    results = dict(recorded[1])
    scores = results["score"]
    results["score"] = dataclasses.replace(
        scores, metrics={**scores.metrics, "source": hostile})
    _replay(monkeypatch, results)
    assert main(["run", "--out", str(tmp_path / "out"), *TINY]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert html.escape(hostile, quote=False) in page
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                      page, re.S)
    assert block is not None
    json.loads(block.group(1))  # the data block is whole
    assert page.count('id="report-data"') == 1
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["source"] == hostile


def test_five_trials(tmp_path, one_torch_thread):
    # one held-out trial: no trial-level variable to score against permuted trials,
    # which once raised "no metadata variable has two or more conditions"
    out = tmp_path / "out"
    options = [arg for arg in TINY]
    options[options.index("--n-trials") + 1] = "5"
    options[options.index("--seeds") + 1] = "1"
    assert main(["run", "--out", str(out), *options]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_trials"] == 5
    assert "trial_type" not in metrics["selectivity_variables"]
