"""Co-smoothing on M1: which training choices help a single-bin model predict held-out neurons.

Data: ``../shared/data/m1_stevenson_2011.mat`` (171 units, 50 ms bins, raw
counts); first 80 % of time to train, last 20 % to test. 43 units held out
(``held_out=0.25``, seed 0); every model sees the held-in counts smoothed
with a Gaussian of sigma = 1 bin (``GaussianSmoother(1.0)`` first in the
pipeline) and a ``PoissonReadout`` (ridge chosen on training blocks only)
predicts the held-out units from its output; bits per spike on the test
block. The reference rows are the smoothing baseline (the smoothed held-in
counts themselves), PCA and FA.

Each row changes the defaults (``MatryoshkaSAE(k=8, n_latents=256,
loss="mse", sparsity="batchtopk", mask_fraction=0.25)``) as labelled.

Run: ``python benchmarks/bench_cosmoothing_sweep.py`` (about 25 minutes on two
cores); ``--rows NAME ...`` runs some rows only (``--list`` shows them).
Seeds are fixed (0).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.io
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.pipeline import make_pipeline

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.evaluation import GaussianSmoother, co_smoothing

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "m1_stevenson_2011.mat"
SEED = 0


def _smoothed(model, sigma=1.0):
    return make_pipeline(GaussianSmoother(sigma), model)


def _msae(**changes):
    return _smoothed(MatryoshkaSAE(random_state=SEED, **changes))


def _transcoder(**changes):
    return _smoothed(MatryoshkaTranscoder(random_state=SEED, **changes))


ROWS = {
    "smoothing": ("smoothing (sigma=1) + GLM", lambda: GaussianSmoother(1.0)),
    "pca32": ("PCA(32), smoothed", lambda: _smoothed(PCA(n_components=32))),
    "fa16": ("FA(16), smoothed", lambda: _smoothed(FactorAnalysis(n_components=16,
                                                                  random_state=SEED))),
    "default": ("MSAE defaults", lambda: _msae()),
    "poisson": ("MSAE loss='poisson'", lambda: _msae(loss="poisson")),
    "mask0.5": ("MSAE mask_fraction=0.5", lambda: _msae(mask_fraction=0.5)),
    "n64": ("MSAE n_latents=64", lambda: _msae(n_latents=64)),
    "topk": ("MSAE sparsity='topk'", lambda: _msae(sparsity="topk")),
    "smoothcodes": ("MSAE defaults, codes smoothed (sigma=1)",
                    lambda: make_pipeline(GaussianSmoother(1.0), MatryoshkaSAE(random_state=SEED),
                                          GaussianSmoother(1.0))),
    "sigma2": ("MSAE defaults, input smoothed sigma=2",
               lambda: _smoothed(MatryoshkaSAE(random_state=SEED), sigma=2.0)),
    "k32": ("MSAE k=32", lambda: _msae(k=32)),
    "combo": ("MSAE poisson + topk + n_latents=64",
              lambda: _msae(loss="poisson", sparsity="topk", n_latents=64)),
    "combo_k32": ("MSAE poisson + topk + n_latents=64, k=32",
                  lambda: _msae(loss="poisson", sparsity="topk", n_latents=64, k=32)),
    "tc_default": ("MatryoshkaTranscoder defaults", lambda: _transcoder()),
    "tc_mask0": ("MatryoshkaTranscoder mask_fraction=0", lambda: _transcoder(mask_fraction=0.0)),
    "tc_poisson": ("MatryoshkaTranscoder loss='poisson'", lambda: _transcoder(loss="poisson")),
    "tc_poisson_k32": ("MatryoshkaTranscoder loss='poisson', k=32",
                       lambda: _transcoder(loss="poisson", k=32)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--list", action="store_true", help="list the rows and stop")
    args = parser.parse_args()
    if args.list:
        for key, (label, _) in ROWS.items():
            print(f"{key:<16}{label}")
        return
    if not args.data.exists():
        raise SystemExit(f"data not found: {args.data}")
    counts = scipy.io.loadmat(args.data)["spikes"].T.astype(np.float64)
    split = int(0.8 * len(counts))
    train, test = counts[:split], counts[split:]
    print(f"M1: {train.shape[0]} training and {test.shape[0]} test bins, {train.shape[1]} units; "
          f"43 held out; seed {SEED}")
    print(f"{'model':<48}{'bits/spike':>11}{'time (s)':>10}")
    for key in args.rows:
        label, make = ROWS[key]
        start = time.perf_counter()
        result = co_smoothing(make(), train, test, held_out=0.25, random_state=SEED)
        print(f"{label:<48}{result.bits_per_spike:>11.4f}{time.perf_counter() - start:>10.1f}",
              flush=True)


if __name__ == "__main__":
    main()
