"""Fit overhead: the whole ``fit`` against its optimiser steps.

Fits ``MatryoshkaSAE`` (1,024 latents, ``k=16``, batches of 1,024 rows) on
simulated Poisson counts of 191 units, sized so that the fit takes exactly
400 optimiser steps, in two shapes: 10 epochs of 40 steps and 2 epochs of
200 steps (with the default 10 % held out for early stopping, whose patience
is set so that every epoch runs). The
time inside ``MatryoshkaTrainer.step`` is measured by wrapping it; the rest
of ``fit`` (validation each epoch, threshold calibration, initialisation,
scaling, the latent frequencies) is the overhead. Prints one row per
setting: fit time, step time, overhead and overhead / steps (the goal is at
most 0.5). The default ``code_refit="auto"`` (NNLS values at inference)
also costs the latent-frequency pass at the end of ``fit``; the second row
shows ``code_refit="none"``.

Run: ``python benchmarks/bench_fit_overhead.py [--repeats 3] [--n-threads 2]``.
"""

import argparse

import numpy as np

import _timing
from sklearn_nldisco import MatryoshkaSAE

N_UNITS, N_LATENTS, K, BATCH = 191, 1024, 16, 1024
SHAPES = ((10, 40), (2, 200))  # (epochs, steps per epoch): 400 steps each


def simulated(n_rows, seed=0):
    """Counts driven by sparse sources (so that the dictionary has work to do)."""
    rng = np.random.RandomState(seed)
    sources = rng.exponential(1.0, size=(n_rows, 40)) * (rng.uniform(size=(n_rows, 40)) < 0.1)
    loadings = rng.gamma(1.0, 0.5, size=(40, N_UNITS)) * (rng.uniform(size=(40, N_UNITS)) < 0.2)
    return rng.poisson(0.5 + sources @ loadings).astype(np.float32)


def timed_fit(X, n_threads, code_refit, epochs):
    return _timing.timed_fit(MatryoshkaSAE(
        N_LATENTS, k=K, batch_size=BATCH, max_iter=epochs, n_iter_no_change=epochs,
        code_refit=code_refit, device="cpu", n_threads=n_threads, random_state=0,
    ), X)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many fits")
    parser.add_argument("--n-threads", type=int, default=None,
                        help="the estimator's n_threads (default: every core)")
    args = parser.parse_args()

    X = simulated(int(np.ceil(max(s for _, s in SHAPES) * BATCH / 0.9)) + 1)
    timed_fit(X[:4096], args.n_threads, "none", 1)  # compile the kernels first
    print(f"{N_UNITS} units, {N_LATENTS} latents, k={K}, batch {BATCH}; "
          f"n_threads={args.n_threads}; best of {args.repeats}")
    print()
    print("| bins | epochs x steps | code_refit | fit (s) | steps (s) | overhead (s) "
          "| overhead / steps |")
    print("|---|---|---|---|---|---|---|")
    for epochs, steps_per_epoch in SHAPES:
        # n_train = steps_per_epoch batches once the validation blocks are held out
        n_rows = int(np.ceil(steps_per_epoch * BATCH / 0.9)) + 1
        for code_refit in ("auto", "none"):
            best = None
            for _ in range(args.repeats):
                fit_time, step_time, n_steps, _ = timed_fit(
                    X[:n_rows], args.n_threads, code_refit, epochs)
                if best is None or fit_time < best[0]:
                    best = (fit_time, step_time, n_steps)
            fit_time, step_time, n_steps = best
            overhead = fit_time - step_time
            print(f"| {n_rows} | {epochs} x {n_steps // epochs} | {code_refit} | "
                  f"{fit_time:.2f} | {step_time:.2f} | {overhead:.2f} | "
                  f"{overhead / step_time:.2f} |")

if __name__ == "__main__":
    main()
