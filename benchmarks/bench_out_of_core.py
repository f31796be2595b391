"""Out-of-core fitting: one pass over float32 memmaps of 512 units.

Generates (in chunks, so generation itself stays small) raw float32 files
of sparse Poisson-like counts with 10^6 and 2 x 10^6 bins in a temporary
directory, fits ``MatryoshkaSAE`` for one pass (``max_iter=1``,
``early_stopping=False``) from each memmap and, for comparison, from the
10^6-bin array loaded into RAM. Each case runs in its own process, which
reports its own peak resident memory, so the cases do not contaminate each
other. Files are deleted at the end.
Run: ``python benchmarks/bench_out_of_core.py``.
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

N_UNITS = 512
GENERATION_ROWS = 65_536


def generate(path, n_rows, seed):
    """Poisson counts with sparse bursts, written chunk by chunk."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.5, 0.2, size=N_UNITS)
    with open(path, "wb") as f:
        for start in range(0, n_rows, GENERATION_ROWS):
            n = min(GENERATION_ROWS, n_rows - start)
            burst = rng.random((n, 1)) < 0.05
            block = rng.poisson(rates * (1.0 + 4.0 * burst)).astype(np.float32)
            f.write(block.tobytes())


def run_case(mode, path, n_rows, args):
    """One fit in this process; prints a JSON line with time and peak RSS."""
    from sklearn_nldisco import MatryoshkaSAE

    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n_rows, N_UNITS))
    if mode == "ram":
        X = np.fromfile(path, dtype=np.float32).reshape(n_rows, N_UNITS)
    model = MatryoshkaSAE(
        n_latents=args.n_latents, k=args.k, max_iter=1, early_stopping=False,
        batch_size=args.batch_size, device="cpu", random_state=0,
    )
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "rows": n_rows, "seconds": seconds,
                      "peak_mib": peak_kib / 1024}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--n-latents", type=int, default=256)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where to write the files")
    parser.add_argument("--case", nargs=3, metavar=("MODE", "PATH", "ROWS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        mode, path, rows = args.case
        run_case(mode, path, int(rows), args)
        return

    options = ["--n-latents", str(args.n_latents), "--k", str(args.k),
               "--batch-size", str(args.batch_size)]
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        cases = []
        for n_rows in args.sizes:
            path = os.path.join(tmp, f"x_{n_rows}.f32")
            generate(path, n_rows, seed=n_rows)
            cases.append(("memmap", path, n_rows))
            if n_rows == min(args.sizes):
                cases.append(("ram", path, n_rows))
        for mode, path, n_rows in cases:
            out = subprocess.run(
                [sys.executable, __file__, *options, "--case", mode, path, str(n_rows)],
                check=True, capture_output=True, text=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"done {mode} {n_rows}", file=sys.stderr, flush=True)

    print(f"{'input':>8} {'bins':>10} {'time (s)':>9} {'rows/s':>9} {'peak RSS (MiB)':>15}")
    for r in results:
        print(f"{r['mode']:>8} {r['rows']:>10,d} {r['seconds']:>9.1f} "
              f"{r['rows'] / r['seconds']:>9,.0f} {r['peak_mib']:>15,.0f}")
    memmaps = [r for r in results if r["mode"] == "memmap"]
    ram = [r for r in results if r["mode"] == "ram"]
    if len(memmaps) >= 2:
        print(f"peak RSS, largest / smallest memmap: "
              f"{memmaps[-1]['peak_mib'] / memmaps[0]['peak_mib']:.3f}")
    if ram:
        same = [r for r in memmaps if r["rows"] == ram[0]["rows"]][0]
        print(f"time, memmap / RAM at {same['rows']:,d} bins: "
              f"{same['seconds'] / ram[0]['seconds']:.2f}")


if __name__ == "__main__":
    main()
