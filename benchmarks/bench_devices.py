"""Training throughput on the CPU and on a GPU at MC_Maze scale, with parity.

Simulates Poisson counts of MC_Maze's size (447,000 bins x 191 units,
float32; sparse non-negative sources mixed into the units, seed 0), fits
``MatryoshkaSAE`` on the first 90 % of the bins for a fixed number of passes
(``early_stopping=False``) on each device present, and prints a table: fit
time, training samples per second, held-out explained variance on the last
10 %, and, for a GPU, the largest difference of its decoder from the CPU
model's (same seed). A device that is absent gets a line that says so. The
GPU is warmed up by a small fit first, so that CUDA's start-up is not timed.
Run: ``python benchmarks/bench_devices.py`` (``--devices cpu cuda``,
``--epochs``, ``--n-latents``, ``--k``, ``--batch-size``, ``--n-bins``).
"""

import argparse
import time

import numpy as np


def simulate(n_bins, n_units, n_sources=24, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.gamma(1.0, 0.5, size=(n_sources, n_units)) * (
        rng.random((n_sources, n_units)) < 0.2
    )
    baseline = rng.gamma(1.0, 0.3, size=n_units)
    X = np.empty((n_bins, n_units), dtype=np.float32)
    for start in range(0, n_bins, 65_536):
        n = min(65_536, n_bins - start)
        sources = rng.exponential(1.0, size=(n, n_sources)) * (
            rng.random((n, n_sources)) < 0.1
        )
        X[start : start + n] = rng.poisson(baseline + sources @ mixing)
    return X


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--n-bins", type=int, default=447_000)
    parser.add_argument("--n-units", type=int, default=191)
    parser.add_argument("--n-latents", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    import torch

    from sklearn_nldisco import MatryoshkaSAE

    X = simulate(args.n_bins, args.n_units)
    n_train = int(0.9 * len(X))
    X_train, X_test = X[:n_train], X[n_train:]
    settings = dict(
        n_latents=args.n_latents, k=args.k, batch_size=args.batch_size,
        max_iter=args.epochs, early_stopping=False, random_state=0,
    )
    print(f"data: {args.n_bins:,d} bins x {args.n_units} units (float32), "
          f"fit on {n_train:,d}, held out {len(X_test):,d}; "
          f"n_latents={args.n_latents}, k={args.k}, batch_size={args.batch_size}, "
          f"{args.epochs} passes, seed 0; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    rows, models = [], {}
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device}: not available on this machine (no CUDA device)")
            continue
        name = device
        if device.startswith("cuda"):
            name = f"{device} ({torch.cuda.get_device_name(0)})"
            MatryoshkaSAE(n_latents=64, k=4, max_iter=1, device=device,
                          random_state=0).fit(X_train[:8192])
            torch.cuda.synchronize()
        start = time.perf_counter()
        model = MatryoshkaSAE(device=device, **settings).fit(X_train)
        seconds = time.perf_counter() - start
        models[device] = model
        rows.append((name, device, seconds, model.score(X_test)))
    print(f"{'device':<40} {'fit (s)':>9} {'samples/s':>11} {'held-out EV':>12} "
          f"{'max |decoder - cpu|':>20}")
    cpu_seconds = None
    for name, device, seconds, score in rows:
        if device == "cpu":
            cpu_seconds = seconds
        rate = n_train * args.epochs / seconds
        parity = "-"
        if device != "cpu" and "cpu" in models:
            parity = f"{np.abs(models[device].components_ - models['cpu'].components_).max():.2e}"
        print(f"{name:<40} {seconds:>9.1f} {rate:>11,.0f} {score:>12.4f} {parity:>20}")
    for name, device, seconds, _ in rows:
        if device != "cpu" and cpu_seconds:
            print(f"speed-up of {device} over the CPU: {cpu_seconds / seconds:.1f}x")


if __name__ == "__main__":
    main()
