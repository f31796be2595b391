"""Compile the run's numba kernels in a second process while the run reads its data.

The training and selectivity kernels are compiled the first time they run
and cached on disk (``cache=True``), so only the first ``nldisco run``
after an install pays for their compilation, about 15 s of CPU. The run
fits one seed at a time on one thread, so a second core sits idle; a
first run therefore starts a child process (``python -m
sklearn_nldisco._cli._warmup``) that fits a tiny model with the run's
parameters and scores tiny codes with the run's selectivity tests, which
compiles and caches the same kernels. The run waits for the child's
training kernels before its first fit and for its selectivity kernels
before scoring; numba then loads them from the cache instead of compiling
them again.

Nothing depends on the child: it is only started when a kernel's cache
index is missing (a warm run starts none), a run whose child fails or is
slow compiles what it still needs itself (after ``timeout`` seconds of
waiting), and the child is stopped when the run ends, fails or is
interrupted. Its output is the names of the stages it finished, one per
line, on its standard output.
"""

import json
import os
import subprocess
import sys
import threading

import numpy as np

STAGES = ("fit", "score")
# the longest the run waits for one stage of the child before compiling itself
TIMEOUT_S = 120.0


# The kernels every fit on the CPU and every selectivity test compile (the
# costliest ones): when their cache indexes exist, a run compiled them
# before. Other kernels (those of other options) are not looked at: one
# option's kernels missing must not start a child in every run.
_KERNELS = {"models._training_kernels": ("backward", "batch_topk"),
            "interpretation._selectivity_kernels": (
                "_observed_active_counts", "_magnitude_rank_sums", "_null_exceedances")}


def kernels_cached():
    """Whether the main training and selectivity kernels have a cache index on disk.

    False when one of them has none (a first run); True when they all do,
    or when this cannot be told (a numba without these attributes, the JIT
    disabled): no child is started then.
    """
    import importlib

    from numba.core.config import DISABLE_JIT

    if DISABLE_JIT:
        return True
    for module, names in _KERNELS.items():
        module = importlib.import_module(f"sklearn_nldisco.{module}")
        for name in names:
            try:
                index = getattr(module, name)._cache._cache_file._index_path
            except AttributeError:
                return True
            if not os.path.exists(index):
                return False
    return True


class Warmup:
    """The child process compiling the run's kernels, or nothing.

    Use :meth:`start`; ``wait(stage)`` returns at once when no child runs.
    """

    def __init__(self, process=None, timeout=TIMEOUT_S):
        self.process = process
        self.timeout = timeout
        self._done = {stage: threading.Event() for stage in STAGES}
        if process is not None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    @classmethod
    def start(cls, model_parameters, selectivity_parameters, timeout=TIMEOUT_S):
        """Start a child when the kernels are not cached; else a Warmup that does nothing.

        Parameters
        ----------
        model_parameters : dict
            The run's ``MatryoshkaSAE`` parameters (a per-level ``k`` as a
            dict of level size to ``k``).
        selectivity_parameters : dict
            ``n_permutations`` of the run's ``SelectivityScorer``.
        """
        if kernels_cached():
            return cls()
        parameters = dict(model_parameters)
        if isinstance(parameters.get("k"), dict):
            parameters["k"] = [[int(size), int(k)] for size, k in parameters["k"].items()]
        argument = json.dumps({"model": parameters, "selectivity": selectivity_parameters})
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, argument],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                # its own session: a Ctrl-C in the terminal reaches the run only,
                # which stops the child itself
                start_new_session=True, text=True)
        except OSError:  # no process can be started: the run compiles itself
            return cls()
        return cls(process, timeout)

    def _read(self):
        for line in self.process.stdout:
            stage = line.strip()
            if stage in self._done:
                self._done[stage].set()
        for event in self._done.values():  # the child ended: nothing more to wait for
            event.set()

    def wait(self, stage):
        """Wait until the child has compiled ``stage``'s kernels, it ended, or the timeout."""
        if self.process is not None:
            self._done[stage].wait(self.timeout)

    def close(self):
        """Stop the child if it still runs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


def _compile(model_parameters, selectivity_parameters, report):
    """Fit and score tiny data as the run will (same parameters, same types)."""
    import pandas as pd

    from ..interpretation import SelectivityScorer
    from ..models import MatryoshkaSAE

    parameters = dict(model_parameters)
    if isinstance(parameters.get("k"), list):
        parameters["k"] = {int(size): int(k) for size, k in parameters["k"]}
    rng = np.random.default_rng(0)
    # float64 as the run's binned counts; 16 units, 600 bins of 30 trials
    X = rng.poisson(1.0, size=(600, 16)).astype(np.float64)
    parameters.update(max_iter=1, n_threads=1, random_state=0)
    # codes as the run's: a CPU model's (float64, sparse or not), and dense
    # float64 as the baselines'
    codes = [np.abs(rng.standard_normal((600, 4)))]
    if _fits_on_cpu(parameters.get("device", "auto")):
        model = MatryoshkaSAE(**parameters).fit(X)
        model.score(X)
        codes.insert(0, model.transform(X))
    # else the run trains on a GPU: no CPU training kernel to compile
    report("fit")
    metadata = pd.DataFrame({"trial_id": np.repeat(np.arange(30), 20),
                             "condition": np.repeat(np.arange(30) % 3, 20)})
    for null in ("circular", "trial"):
        scorer = SelectivityScorer(variables=["condition"], null=null, random_state=0,
                                   **selectivity_parameters)
        for Z in codes:
            scorer.score_latents(Z, metadata)
    report("score")


def _fits_on_cpu(device):
    """Whether a fit with ``device`` trains on the CPU (``"auto"``: without CUDA)."""
    if str(device) == "auto":
        import torch

        return not torch.cuda.is_available()
    return str(device).startswith("cpu")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    settings = json.loads(argv[0])

    def report(stage):
        print(stage, flush=True)

    _compile(settings["model"], settings["selectivity"], report)


if __name__ == "__main__":
    main()
