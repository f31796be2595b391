"""Grid-search wall time: sequential fits, worker processes, threads per worker.

Times ``GridSearchCV`` of ``MatryoshkaSAE`` over a 2 x 2 grid (``k`` x
``n_latents``) with ``cv=3`` (12 fits and the refit) on a simulated reaching
session (100 units, 300 trials, 50 ms bins), in three set-ups:

* ``n_jobs=1`` and ``n_threads=None``: one fit at a time, every core for it;
* ``n_jobs=2`` and ``n_threads=1``: two worker processes, one thread each;
* ``n_jobs=2`` and ``n_threads=None``: two workers, each left to its
  defaults; loky already caps a worker's BLAS and OpenMP pools (and so
  torch's default) at ``cores // n_jobs``;
* the same with ``inner_max_num_threads=cores``: each worker's torch uses
  every core, the oversubscription that ``n_threads`` prevents.

It checks that the three searches give the same ``cv_results_`` scores and
prints one table row per set-up. Run: ``python benchmarks/bench_grid_search.py``.
"""

import argparse
import os
import time

import joblib
import numpy as np
from sklearn.model_selection import GridSearchCV

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.preprocessing import SpikeBinner

GRID = {"k": [4, 8], "n_latents": [64, 128]}


def binned_session():
    recording, _ = make_reaching_session(n_units=100, n_trials=300, random_state=0)
    binner = SpikeBinner(bin_size=0.05, intervals=recording.trials)
    return binner.fit_transform(recording)


def search(X, n_jobs, n_threads, max_iter, inner_threads):
    estimator = MatryoshkaSAE(max_iter=max_iter, batch_size=512, random_state=0,
                              device="cpu", n_threads=n_threads)
    grid = GridSearchCV(estimator, GRID, cv=3, n_jobs=n_jobs)
    with joblib.parallel_config(backend="loky", inner_max_num_threads=inner_threads):
        start = time.perf_counter()
        grid.fit(X)
        elapsed = time.perf_counter() - start
    return elapsed, grid


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=30, help="epochs per fit")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()

    X = binned_session()
    cores = os.cpu_count()
    print(f"data: {X.shape[0]} bins x {X.shape[1]} units; grid {GRID}, cv=3; "
          f"{cores} cores; max_iter={args.max_iter}; best of {args.repeats}")
    # compile the kernels here and in loky's workers before timing
    search(X[:2000], 1, None, 1, None)
    search(X[:2000], 2, 1, 1, None)
    setups = [(1, None, None), (2, 1, None), (2, None, None), (2, None, cores)]
    reference = None
    print("| n_jobs | n_threads | inner_max_num_threads | wall time (s) | speed-up | same scores |")
    print("|---|---|---|---|---|---|")
    for n_jobs, n_threads, inner_threads in setups:
        times = []
        for _ in range(args.repeats):
            elapsed, grid = search(X, n_jobs, n_threads, args.max_iter, inner_threads)
            times.append(elapsed)
        scores = np.array([grid.cv_results_[f"split{i}_test_score"] for i in range(3)])
        if reference is None:
            reference, baseline = scores, min(times)
        same = "yes" if np.array_equal(scores, reference) else "no"
        inner = "default" if inner_threads is None else inner_threads
        print(f"| {n_jobs} | {n_threads} | {inner} | {min(times):.1f} | "
              f"{baseline / min(times):.2f} | {same} |")


if __name__ == "__main__":
    main()
