"""The first run's kernel compilation in a second process (``_cli._warmup``)."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from sklearn_nldisco._cli import _warmup
from sklearn_nldisco._cli._config import model_parameters, resolve
from sklearn_nldisco._cli._warmup import Warmup


def _python(code, cache_dir, timeout=600):
    """Run ``code`` in a new interpreter whose numba cache is ``cache_dir``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout, check=True)


def _argument(settings):
    return json.dumps({"model": model_parameters(settings),
                       "selectivity": {"n_permutations": settings["n_permutations"]}})


def test_without_a_child_wait_returns_at_once():
    warmup = Warmup()
    start = time.perf_counter()
    for stage in _warmup.STAGES:
        warmup.wait(stage)
    warmup.close()
    assert time.perf_counter() - start < 1.0


def test_empty_cache_means_not_cached(tmp_path):
    code = """
        from sklearn_nldisco._cli._warmup import kernels_cached
        print(kernels_cached())
    """
    assert _python(code, tmp_path).stdout.strip() == "False"


def test_a_failing_child_does_not_hold_the_run(monkeypatch):
    # a child that ends without reporting a stage: wait returns when it ends
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"],
                               stdout=subprocess.PIPE, text=True)
    warmup = Warmup(process, timeout=60)
    start = time.perf_counter()
    warmup.wait("fit")
    warmup.wait("score")
    warmup.close()
    assert time.perf_counter() - start < 30
    assert process.returncode == 3


def test_a_slow_child_is_waited_for_at_most_timeout_then_stopped():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               stdout=subprocess.PIPE, text=True)
    with Warmup(process, timeout=0.5) as warmup:
        start = time.perf_counter()
        warmup.wait("fit")
        assert 0.4 < time.perf_counter() - start < 10
    assert process.poll() is not None  # stopped on leaving the block


def test_a_warm_cache_starts_no_child(monkeypatch):
    monkeypatch.setattr(_warmup, "kernels_cached", lambda: True)
    started = []
    monkeypatch.setattr(_warmup.subprocess, "Popen", lambda *a, **k: started.append(a))
    warmup = Warmup.start(model_parameters(resolve({}, {})), {"n_permutations": 10})
    assert warmup.process is None and not started


def test_a_cold_cache_starts_one_child_that_reports_its_stages(monkeypatch):
    monkeypatch.setattr(_warmup, "kernels_cached", lambda: False)
    monkeypatch.setattr(_warmup, "_compile", None)  # the parent never compiles itself
    warmup = Warmup.start({"n_latents": 8, "k": {4: 1, 8: 2}}, {"n_permutations": 10})
    try:
        assert warmup.process is not None
        argument = json.loads(warmup.process.args[-1])
        # a per-level k crosses the process boundary as pairs (JSON keys are strings)
        assert argument["model"]["k"] == [[4, 1], [8, 2]]
    finally:
        warmup.close()
    assert warmup.process.poll() is not None


@pytest.mark.slow
def test_the_child_compiles_what_a_run_fits_and_scores(tmp_path):
    """After the child, a fit and selectivity scoring of the run's kind compile nothing."""
    settings = resolve({}, {})
    child = subprocess.run(
        [sys.executable, "-m", "sklearn_nldisco._cli._warmup", _argument(settings)],
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}, capture_output=True,
        text=True, timeout=600, check=True)
    assert child.stdout.split() == ["fit", "score"]
    code = f"""
        import numpy as np, pandas as pd
        import numba
        from sklearn_nldisco._cli._warmup import kernels_cached
        from sklearn_nldisco.interpretation import SelectivityScorer, _selectivity_kernels
        from sklearn_nldisco.models import MatryoshkaSAE, _training_kernels
        assert kernels_cached()
        rng = np.random.default_rng(1)
        X = rng.poisson(0.5, size=(3000, 40)).astype(np.float64)
        parameters = {{**{model_parameters(settings)!r},
                       "n_threads": 1, "max_iter": 3, "random_state": 1}}
        model = MatryoshkaSAE(**parameters).fit(X)
        codes = model.transform(X)
        meta = pd.DataFrame({{"trial_id": np.repeat(np.arange(60), 50),
                              "direction": np.repeat(np.arange(60) % 4, 50)}})
        for null in ("circular", "trial"):
            SelectivityScorer(variables=["direction"], null=null, n_permutations=20,
                              random_state=0).score_latents(codes, meta)
        # numba counts, per kernel, the signatures it had to compile (cache misses)
        print(sorted(name for module in (_training_kernels, _selectivity_kernels)
                     for name, kernel in vars(module).items()
                     if isinstance(kernel, numba.core.registry.CPUDispatcher)
                     and sum(kernel.stats.cache_misses.values())))
    """
    compiled = _python(code, tmp_path).stdout.strip()
    assert compiled == "[]", f"compiled after the child: {compiled}"


def _processes_with_cache_dir(cache_dir):
    """Process ids whose environment sets NUMBA_CACHE_DIR to ``cache_dir``."""
    wanted = f"NUMBA_CACHE_DIR={cache_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if wanted in environ.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="lists processes through /proc")
def test_ctrl_c_on_a_first_run_stops_the_child_too(tmp_path):
    from sklearn_nldisco.cli import EXIT_INTERRUPTED

    cache_dir = tmp_path / "numba-cache"
    cache_dir.mkdir()
    run = ("import sys\nfrom sklearn_nldisco.cli import main\n"
           "sys.exit(main(sys.argv[1:]))\n")
    options = ["--n-units", "12", "--n-trials", "30", "--n-latents", "16", "--k", "2",
               "--max-iter", "200", "--seeds", "2", "--n-permutations", "20"]
    process = subprocess.Popen(
        [sys.executable, "-c", run, "run", "--out", str(tmp_path / "out"), *options],
        env={**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}, stderr=subprocess.PIPE,
        text=True)
    lines = []
    children = []
    for line in process.stderr:
        lines.append(line)
        children = children or [pid for pid in _processes_with_cache_dir(cache_dir)
                                if pid != process.pid]
        if "] loaded " in line:
            break
    # the child was started (the cache was empty) and is compiling now
    assert children, "".join(lines)
    process.send_signal(2)  # SIGINT
    lines += process.stderr.readlines()
    assert process.wait(timeout=120) == EXIT_INTERRUPTED, "".join(lines)
    assert lines[-1] == "nldisco: interrupted\n"
    assert not any("Traceback" in line for line in lines), lines
    assert _processes_with_cache_dir(cache_dir) == []


def test_a_gpu_run_compiles_no_cpu_training_kernel(monkeypatch):
    from sklearn_nldisco.models import MatryoshkaSAE

    monkeypatch.setattr(MatryoshkaSAE, "fit",
                        lambda *a, **k: pytest.fail("the child fitted for a GPU run"))
    stages = []
    _warmup._compile({"n_latents": 8, "k": 2, "device": "cuda"}, {"n_permutations": 10},
                     stages.append)
    assert stages == ["fit", "score"]
    assert _warmup._fits_on_cpu("cpu") and not _warmup._fits_on_cpu("cuda:0")
