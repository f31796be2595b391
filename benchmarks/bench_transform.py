"""Transform speed and memory at scale: 10^6 bins x 200 units, 1024 latents.

Prints the time of ``MatryoshkaSAE.transform`` (dense and sparse output)
beside the encoder's forward matrix product alone (NumPy float32, the same
library and chunking that ``transform`` uses), and the peak memory that
``tracemalloc`` sees during each call. Run: ``python benchmarks/bench_transform.py``.
"""

import argparse
import time
import tracemalloc

import numpy as np

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.models._inference import CODING_CHUNK_ROWS


def fitted_model(n_units, n_latents, k, seed):
    """Two epochs on Poisson noise: the worst case for the refit's solver."""
    rng = np.random.RandomState(seed)
    X_small = rng.poisson(2.0, size=(4096, n_units)).astype(np.float32)
    return MatryoshkaSAE(n_latents=n_latents, k=k, max_iter=2, random_state=seed,
                         device="cpu").fit(X_small)


def planted_data(n_units, seed, n_atoms=400, density=0.03):
    """A generator of Poisson counts driven by sparse non-negative planted features."""
    rng = np.random.RandomState(seed)
    atoms = np.abs(rng.standard_normal((n_atoms, n_units))) * (rng.rand(n_atoms, n_units) < 0.1) * 2

    def generate(n_rows):
        codes = rng.exponential(1.0, (n_rows, n_atoms)) * (rng.rand(n_rows, n_atoms) < density)
        return rng.poisson(0.5 + codes @ atoms).astype(np.float32)

    return generate


def timed(function, repeats):
    """Best wall time over ``repeats`` runs, then the peak traced memory of one
    more run (tracing slows allocation-heavy code, so it is never timed)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
        del result
    tracemalloc.start()
    result = function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return best, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-rows", type=int, default=1_000_000)
    parser.add_argument("--n-units", type=int, default=200)
    parser.add_argument("--n-latents", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--refit-fraction", type=int, default=20,
                        help="time the refit on 1/N of the rows and scale up")
    parser.add_argument("--data", choices=["noise", "planted"], default="noise",
                        help="noise: Poisson noise and a model trained 2 epochs on it; "
                             "planted: counts driven by sparse planted features and a "
                             "model trained 20 epochs on 50,000 such rows")
    args = parser.parse_args()

    if args.data == "noise":
        model = fitted_model(args.n_units, args.n_latents, args.k, seed=0)
        rng = np.random.RandomState(1)
        X = rng.poisson(2.0, size=(args.n_rows, args.n_units)).astype(np.float32)
    else:
        generate = planted_data(args.n_units, seed=0)
        model = MatryoshkaSAE(n_latents=args.n_latents, k=args.k, max_iter=20, random_state=0,
                              device="cpu").fit(generate(50_000))
        X = generate(args.n_rows)
    weight = model.encoder_weight_.astype(np.float32)
    chunk = 2048
    buffer = np.empty((chunk, args.n_latents), dtype=np.float32)

    def forward_product():
        for start in range(0, args.n_rows, chunk):
            block = X[start : start + chunk]
            np.matmul(block, weight, out=buffer[: len(block)])

    rows = []
    floor, floor_mem = timed(forward_product, args.repeats)
    rows.append(("encoder forward product (floor)", floor, floor_mem, None))
    # The encoder's own values: the fast path this benchmark's target is about.
    model.set_params(sparse_output=True, code_refit="none")
    model.transform(X[:1000])  # compiled kernels loaded (or compiled) first
    t_sparse, m_sparse = timed(lambda: model.transform(X), args.repeats)
    codes = model.transform(X)
    rows.append(("transform, code_refit='none', sparse", t_sparse, m_sparse,
                 codes.nnz / args.n_rows))
    # The default for the autoencoder (NNLS refit of the codes), timed on a
    # slice and scaled to all rows.
    n_slice = max(1, args.n_rows // args.refit_fraction)
    for name, mode in (("transform, default (nnls refit) *", "auto"),
                       ("transform, code_refit='pursuit' *", "pursuit")):
        model.set_params(code_refit=mode)
        model.transform(X[:1000])  # compiled kernels loaded (or compiled) first
        t_refit, m_refit = timed(lambda: model.transform(X[:n_slice]), 1)
        refit_codes = model.transform(X[:n_slice])
        rows.append((name, t_refit * args.n_rows / n_slice, m_refit, refit_codes.nnz / n_slice))
    dense_bytes = args.n_rows * args.n_latents * 4
    rows.append(("(dense float32 codes would take)", np.nan, dense_bytes, None))

    print(f"transform benchmark ({args.data} data): {args.n_rows:,} rows x {args.n_units} units -> "
          f"{args.n_latents} latents, k={args.k}; transform chunks of {CODING_CHUNK_ROWS} rows, "
          f"floor in chunks of {chunk} rows with multi-threaded BLAS")
    print(f"{'what':<40}{'time (s)':>10}{'x floor':>9}{'peak MiB':>10}{'L0':>7}")
    for name, seconds, peak, l0 in rows:
        ratio = seconds / floor if np.isfinite(seconds) else np.nan
        l0_text = f"{l0:7.2f}" if l0 is not None else " " * 7
        print(f"{name:<40}{seconds:>10.2f}{ratio:>9.2f}{peak / 2**20:>10.0f}{l0_text}")
    print(f"* timed on the first {n_slice:,} rows and scaled to {args.n_rows:,}; peak "
          "memory is for that slice.")


if __name__ == "__main__":
    main()
