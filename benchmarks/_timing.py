"""Timed fits for the benchmark scripts: the whole ``fit`` and the time inside its steps.

Imported by ``bench_window_speed.py`` and ``bench_fit_overhead.py`` (run
from the repository root as ``python benchmarks/bench_x.py``, which puts
this folder on the import path).
"""

import time

from sklearn_nldisco.models import _training


def timed_fit(model, X):
    """Fit ``model`` on ``X`` with ``MatryoshkaTrainer.step`` wrapped in a timer.

    Parameters
    ----------
    model : MatryoshkaSAE
        An unfitted estimator, fitted in place.
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    fit_s : float
        Seconds of the whole ``fit``.
    step_s : float
        Seconds inside the trainer's optimiser steps.
    n_steps : int
        Optimiser steps taken.
    model : MatryoshkaSAE
        The fitted ``model``.
    """
    inside = [0.0, 0]
    original = _training.MatryoshkaTrainer.step

    def step(self, *args):
        start = time.perf_counter()
        out = original(self, *args)
        inside[0] += time.perf_counter() - start
        inside[1] += 1
        return out

    _training.MatryoshkaTrainer.step = step
    try:
        start = time.perf_counter()
        model.fit(X)
        fit_s = time.perf_counter() - start
    finally:
        _training.MatryoshkaTrainer.step = original
    return fit_s, inside[0], inside[1], model
