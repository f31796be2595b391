"""Speed of the flat-window model at the size of the published timing.

The published method's reference timing is 43 s on one H100 GPU for 10
epochs over 130,507 ten-bin windows of 191 channels (1,280 optimiser steps of
1,024 windows, 192 latents, levels {96: 8, 192: 16}). This script trains our
flat-window model of that size (``TimeWindows(10)`` then ``MatryoshkaSAE``
with 192 latents, levels ``[96, 192]``, batches of 1,024, 10 epochs, no
early stopping) on simulated Poisson counts of that size and prints, for
each row below: the whole fit time, the number of optimiser steps, the time per step (inside the trainer's
step) and the step's matmul floor: the time of the five dense matmuls of one
step measured with torch on the same shapes (the encoder ``X @ W_enc``, the
decoder ``codes @ W_dec``, and the gradients of both weights and of the
codes), fp32, in the same threads.

Rows: the reference's per-level ``k`` (``{96: 8, 192: 16}``: each level its
own BatchTopK over its prefix) and one shared selection of ``k=16``, each
with ``mask_fraction`` 0.25 (the default) and 0. All four train in the fused
CPU step.

Run: ``python benchmarks/bench_window_speed.py`` (the full size; the windows
are 1.0 GB in float32) or ``--quick`` (13,051 windows, 2 epochs).
"""

import argparse
import os
import platform
import time

import numpy as np
import torch

import _timing
from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.preprocessing import TimeWindows

N_UNITS, N_BINS_WINDOW, N_LATENTS, K, BATCH = 191, 10, 192, 16, 1024
LEVEL_SIZES = (96, 192)
LEVEL_K = {96: 8, 192: 16}  # the reference's per-level budgets
REFERENCE_S = 43.0  # one H100, 10 epochs over 130,507 windows
SEED = 0


def simulated_counts(n_bins, seed=SEED):
    """Poisson counts with slowly varying rates shared across units (float32)."""
    rng = np.random.RandomState(seed)
    n_sources = 20
    sources = rng.exponential(1.0, size=(n_bins // 10 + 2, n_sources))
    sources = np.repeat(sources, 10, axis=0)[:n_bins]  # 10-bin steps of a latent drive
    sources *= rng.uniform(size=sources.shape) < 0.3
    loadings = rng.gamma(1.0, 0.3, size=(n_sources, N_UNITS))
    loadings *= rng.uniform(size=loadings.shape) < 0.2
    rates = 0.5 + sources @ loadings
    return rng.poisson(rates).astype(np.float32)


def matmul_floor_s(n_features, n_threads, repeats=20):
    """Median time of one step's five dense fp32 matmuls (forward and backward)."""
    generator = torch.Generator().manual_seed(SEED)
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        X = torch.randn(BATCH, n_features, generator=generator)
        W_enc = torch.randn(n_features, N_LATENTS, generator=generator)
        W_dec = torch.randn(N_LATENTS, n_features, generator=generator)
        codes = torch.randn(BATCH, N_LATENTS, generator=generator)
        grad_out = torch.randn(BATCH, n_features, generator=generator)
        grad_pre = torch.randn(BATCH, N_LATENTS, generator=generator)

        def one_step():
            X @ W_enc                   # encoder forward
            codes @ W_dec               # decoder forward
            grad_out @ W_dec.T          # gradient of the codes
            codes.T @ grad_out          # gradient of W_dec
            X.T @ grad_pre              # gradient of W_enc

        for _ in range(3):
            one_step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            one_step()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return float(np.median(times))


def timed_fit(X, k, mask_fraction, max_iter, n_threads):
    """Fit; return (fit seconds, seconds inside the trainer's step, steps)."""
    return _timing.timed_fit(MatryoshkaSAE(
        N_LATENTS, k=k, level_sizes=LEVEL_SIZES, batch_size=BATCH, max_iter=max_iter,
        early_stopping=False, mask_fraction=mask_fraction, device="cpu",
        n_threads=n_threads, random_state=SEED), X)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="13,051 windows and 2 epochs instead of 130,507 and 10")
    parser.add_argument("--n-threads", type=int, default=os.cpu_count(),
                        help="threads for torch (default: every core)")
    args = parser.parse_args()
    n_windows, max_iter = (13_051, 2) if args.quick else (130_507, 10)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, n_threads={args.n_threads}, seed {SEED}")
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} (1, 5, 15 min)")
    start = time.perf_counter()
    counts = simulated_counts(n_windows + N_BINS_WINDOW - 1)
    simulate_s = time.perf_counter() - start
    start = time.perf_counter()
    # drop the first bins, whose windows would hold filled lags: n_windows full windows
    X = TimeWindows(N_BINS_WINDOW).fit_transform(counts)[N_BINS_WINDOW - 1:]
    window_s = time.perf_counter() - start
    del counts
    print(f"{X.shape[0]:,} windows of {N_BINS_WINDOW} bins x {N_UNITS} units = "
          f"{X.shape[1]} features, {X.dtype}, {X.nbytes / 1e9:.2f} GB; "
          f"simulated in {simulate_s:.1f} s, windowed in {window_s:.1f} s")
    print(f"MatryoshkaSAE({N_LATENTS}, level_sizes={list(LEVEL_SIZES)}, "
          f"batch_size={BATCH}, max_iter={max_iter}, early_stopping=False)")

    configurations = [(LEVEL_K, 0.25), (LEVEL_K, 0.0), (K, 0.25), (K, 0.0)]
    for k, mask_fraction in configurations:  # compile the kernels first
        timed_fit(X[:4 * BATCH], k, mask_fraction, 1, args.n_threads)
    floor_s = matmul_floor_s(X.shape[1], args.n_threads)
    scale = 10 / max_iter * 130_507 / X.shape[0]
    print()
    print("| k | mask_fraction | fit (s) | steps | ms/step | matmul floor (ms/step) "
          "| step / floor | fit x 10 epochs of 130,507 (s) | reference, one H100 (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, mask_fraction in configurations:
        fit_s, step_s, n_steps, model = timed_fit(X, k, mask_fraction, max_iter,
                                                  args.n_threads)
        ms_step = 1e3 * step_s / n_steps
        label = "{96: 8, 192: 16}" if isinstance(k, dict) else f"{k} shared"
        print(f"| {label} | {mask_fraction} | {fit_s:.1f} | {n_steps:,} | {ms_step:.1f} | "
              f"{1e3 * floor_s:.1f} | {ms_step / (1e3 * floor_s):.2f} | "
              f"{fit_s * scale:.1f} | {REFERENCE_S:.0f} |")
    print()
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
