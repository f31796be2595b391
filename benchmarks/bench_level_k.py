"""Per-level ``k`` against one shared selection: held-out EV and L0 per level.

Data: ``../shared/data/m1_stevenson_2011.mat`` (171 units, 15,536 bins of
50 ms), first 80 % of time for training, last 20 % held out, each part
smoothed with a Gaussian of sigma = 1 bin (as ``bench_m1_reconstruction``).

Models (``MatryoshkaSAE``, 128 latents, levels (32, 128), BatchTopK,
``random_state=0``, CPU):

* shared ``k=8``: one selection of 8 latents per row on average over all 128;
  level 0 decodes whichever of them fall in its first 32 latents;
* per-level ``{32: 4, 128: 8}`` and ``{32: 8, 128: 8}``: each level selects
  its own latents (level 0 the top 4 or 8 among its 32, level 1 the top 8
  among all 128), with its own threshold at inference.

For each model and level: held-out explained variance of the level's
reconstruction (``reconstruct(X, level=i)``) and its L0, the mean number of
latents per row that the reconstruction uses; ``transform`` L0 is the mean
active latents per row of the codes (for a per-level ``k``, the union of the
levels' selections). Epochs: the epochs run (early stopping on the
default validation split); fit time is on this machine's CPU, where a
per-level ``k`` trains through torch autograd and an int ``k`` through the
fused CPU step.

Run: ``python benchmarks/bench_level_k.py [--max-iter N]``.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.io
from scipy.ndimage import gaussian_filter1d

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.models import explained_variance

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "m1_stevenson_2011.mat"
SEED = 0
LEVELS = (32, 128)
SETTINGS = {
    "shared k=8": dict(k=8, level_sizes=LEVELS),
    "per-level {32: 4, 128: 8}": dict(k={32: 4, 128: 8}),
    "per-level {32: 8, 128: 8}": dict(k={32: 8, 128: 8}),
}


def load(path):
    counts = scipy.io.loadmat(path)["spikes"].T.astype(np.float64)
    split = int(0.8 * len(counts))
    return [gaussian_filter1d(part, 1.0, axis=0) for part in (counts[:split], counts[split:])]


def level_l0(model, X, level):
    """Mean latents per row used by the reconstruction of ``level``."""
    codes = model.transform(X, level=level)
    return float((codes != 0).sum() / X.shape[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-iter", type=int, default=20)
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent; see ../shared/data/README.")
    train, test = load(DATA)
    print(f"M1: {train.shape[0]} training and {test.shape[0]} held-out bins x "
          f"{train.shape[1]} units; n_latents=128, levels {LEVELS}, "
          f"max_iter={args.max_iter}, seed {SEED}")
    print()
    print(f"| {'model':<26} | level | held-out EV | L0 of the level | transform L0 | epochs | fit (s) |")
    print(f"|{'-' * 28}|------:|------------:|----------------:|-------------:|-------:|--------:|")
    for name, setting in SETTINGS.items():
        model = MatryoshkaSAE(n_latents=128, max_iter=args.max_iter, device="cpu",
                              random_state=SEED, **setting)
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        codes_l0 = float((model.transform(test) != 0).sum(axis=1).mean())
        for level, size in enumerate(model.level_sizes_):
            ev = explained_variance(test, model.reconstruct(test, level=level))
            print(f"| {name:<26} | {size:>5} | {ev:>11.3f} | {level_l0(model, test, level):>15.2f} "
                  f"| {codes_l0:>12.2f} | {model.n_iter_:>6} | {fit_s:>7.1f} |")


if __name__ == "__main__":
    main()
