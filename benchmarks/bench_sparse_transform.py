"""Sparse codes of memmapped recordings: time and memory of ``transform``.

Fits ``MatryoshkaSAE(n_latents=4096, k=8)`` once, for one pass over the
first 16,384 bins of a generated float32 file of 512 units (sparse
Poisson-like counts, as in ``bench_out_of_core.py``), saves it, and then,
each case in a fresh process that loads the saved model, codes a memmap of
the first 5 x 10^5 and of the first 10^6 bins of that file with
``sparse_output=True``. It prints the time,
the size of the CSR codes, the peak resident memory of the process above
what it held after loading the model and coding 2,048 bins (which loads
the compiled kernels), and the size a dense float32 array of
the codes would take; the last line extrapolates the CSR size to 10^7 bins.
Files are deleted at the end.
Run: ``python benchmarks/bench_sparse_transform.py`` (``--sizes``,
``--n-latents``, ``--k``).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_out_of_core import N_UNITS, generate


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(model_path, path, n_rows):
    """One transform in this process; prints a JSON line."""
    import joblib

    model = joblib.load(model_path)
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n_rows, N_UNITS))
    model.transform(X[:2048])  # loads (or compiles) the coding kernels
    baseline = resident_mib()
    start = time.perf_counter()
    codes = model.transform(X)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    csr_bytes = codes.data.nbytes + codes.indices.nbytes + codes.indptr.nbytes
    print(json.dumps({"rows": n_rows, "seconds": seconds, "nnz": int(codes.nnz),
                      "csr_mib": csr_bytes / 2**20, "extra_peak_mib": peak - baseline,
                      "dense_mib": n_rows * codes.shape[1] * 4 / 2**20,
                      "format": codes.format}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500_000, 1_000_000])
    parser.add_argument("--n-latents", type=int, default=4096)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--case", nargs=3, metavar=("MODEL", "PATH", "ROWS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        model_path, path, rows = args.case
        run_case(model_path, path, int(rows))
        return

    import joblib

    from sklearn_nldisco import MatryoshkaSAE

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # one recording: the smaller inputs are prefixes of the file (the
        # units' rates depend on the generator's seed, so separate files
        # would be different recordings, coded with many more latents)
        path = os.path.join(tmp, "x.f32")
        generate(path, max(args.sizes), seed=0)
        paths = {n_rows: path for n_rows in args.sizes}
        X_fit = np.fromfile(path, dtype=np.float32, count=16_384 * N_UNITS)
        model = MatryoshkaSAE(
            n_latents=args.n_latents, k=args.k, max_iter=1, early_stopping=False,
            device="cpu", random_state=0, sparse_output=True,
        ).fit(X_fit.reshape(-1, N_UNITS))
        model_path = os.path.join(tmp, "model.joblib")
        joblib.dump(model, model_path)
        for n_rows in args.sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--case", model_path, paths[n_rows], str(n_rows)],
                check=True, capture_output=True, text=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"done {n_rows}", file=sys.stderr, flush=True)

    print(f"model: n_latents={args.n_latents}, k={args.k}, code_refit='auto' (nnls), "
          f"{N_UNITS} units, float32 memmaps, CSR output")
    print(f"{'bins':>10} {'time (s)':>9} {'bins/s':>8} {'mean L0':>8} {'CSR (MiB)':>10} "
          f"{'extra peak RSS (MiB)':>21} {'dense float32 (MiB)':>20}")
    for r in results:
        print(f"{r['rows']:>10,d} {r['seconds']:>9.1f} {r['rows'] / r['seconds']:>8,.0f} "
              f"{r['nnz'] / r['rows']:>8.2f} {r['csr_mib']:>10,.0f} "
              f"{r['extra_peak_mib']:>21,.0f} {r['dense_mib']:>20,.0f}")
    last = results[-1]
    per_row = last["csr_mib"] / last["rows"]
    print(f"CSR codes at 10^7 bins, extrapolated: {per_row * 1e7 / 1024:,.2f} GiB "
          f"(dense float32: {1e7 * args.n_latents * 4 / 2**30:,.0f} GiB)")


if __name__ == "__main__":
    main()
