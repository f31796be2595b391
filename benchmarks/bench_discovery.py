"""Discovery measured against noise: structure control, co-smoothing, single-unit latents.

Data: ``../shared/data/m1_stevenson_2011.mat`` (171 units, 15,536 bins of
50 ms, raw counts). Train on the first 80 % of time, test on the last 20 %.

Sections:

1. **Structure control.** Held-out explained variance on the real counts and
   on the same counts with every unit circularly shifted in time by its own
   offset (each block on its own: every unit keeps its rate and
   autocorrelation, all cross-unit structure is gone), and the difference,
   "structure explained". PCA(k) against the MSAE at the same L0 (k),
   with the defaults and with masked-unit training (``mask_fraction=0.25``).
2. **Co-smoothing.** 43 of 171 units held out (``held_out=0.25``, seed 0);
   models see the held-in units, a Poisson readout (ridge chosen on
   training blocks only) predicts the held-out units; bits per spike on the
   test block. Models get counts smoothed with a Gaussian of sigma = 1 bin
   (``GaussianSmoother(1.0)`` first in the pipeline, applied to each block
   on its own) or raw counts, as labelled; the smoothing baseline is the
   smoothed held-in counts themselves.
3. **Single-unit latents.** Median single-unit dominance (share of a
   latent's decoder energy in its strongest unit) and the fraction of
   latents above 0.8, for the MSAEs of section 2.

Run: ``python benchmarks/bench_discovery.py`` (about 10 minutes on two
cores). ``--quick`` runs k = 8 only. Seeds are fixed (0) and printed.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.io
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.pipeline import make_pipeline

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.evaluation import (
    GaussianSmoother,
    co_smoothing,
    single_unit_dominance,
    structure_control,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "m1_stevenson_2011.mat"
SEED = 0


def load(path):
    counts = scipy.io.loadmat(path)["spikes"].T.astype(np.float64)
    split = int(0.8 * len(counts))
    return counts[:split], counts[split:]


def section_structure(train, test, ks):
    print("\n1. Structure control: held-out EV on real and unit-shifted counts (raw counts)")
    print(f"{'k':>3}  {'model':<36}{'EV real':>9}{'EV shifted':>12}{'structure':>11}{'time (s)':>10}")
    for k in ks:
        models = [
            (f"PCA({k})", PCA(n_components=k)),
            ("MSAE, defaults", MatryoshkaSAE(k=k, random_state=SEED)),
            ("MSAE, mask_fraction=0.25", MatryoshkaSAE(k=k, mask_fraction=0.25,
                                                       random_state=SEED)),
        ]
        for name, model in models:
            start = time.perf_counter()
            result = structure_control(model, train, test, random_state=SEED)
            print(f"{k:>3}  {name:<36}{result.real:>9.3f}{result.shifted:>12.3f}"
                  f"{result.structure:>11.3f}{time.perf_counter() - start:>10.1f}", flush=True)


def section_co_smoothing(train, test, ks):
    print("\n2. Co-smoothing: bits/spike of 43 held-out units (held_out=0.25, seed 0), test block")
    print(f"{'model':<52}{'bits/spike':>11}{'time (s)':>10}")
    smooth = GaussianSmoother(1.0)
    rows = [
        ("smoothing (sigma=1) + GLM", GaussianSmoother(1.0)),
        ("smoothing (sigma=2) + GLM", GaussianSmoother(2.0)),
        ("PCA(32) + GLM, raw", PCA(n_components=32)),
        ("PCA(32) + GLM, smoothed", make_pipeline(smooth, PCA(n_components=32))),
        ("FA(16) + GLM, raw", FactorAnalysis(n_components=16, random_state=SEED)),
        ("FA(16) + GLM, smoothed", make_pipeline(smooth, FactorAnalysis(n_components=16,
                                                                          random_state=SEED))),
    ]
    for k in ks:
        rows.append((f"MSAE k={k}, defaults, smoothed",
                     make_pipeline(smooth, MatryoshkaSAE(k=k, random_state=SEED))))
        rows.append((f"MSAE k={k}, mask_fraction=0.25, smoothed",
                     make_pipeline(smooth, MatryoshkaSAE(k=k, mask_fraction=0.25,
                                                         random_state=SEED))))
    rows.append(("MatryoshkaTranscoder(loss='poisson', k=16), smoothed",
                 make_pipeline(smooth, MatryoshkaTranscoder(loss="poisson", k=16,
                                                            random_state=SEED))))
    fitted = []
    for name, model in rows:
        start = time.perf_counter()
        result = co_smoothing(model, train, test, held_out=0.25, random_state=SEED)
        print(f"{name:<52}{result.bits_per_spike:>11.4f}{time.perf_counter() - start:>10.1f}",
              flush=True)
        fitted.append((name, result.model.estimator_))
    return fitted


def section_dominance(fitted):
    print("\n3. Single-unit latents (MSAEs of section 2, decoder rows in counts)")
    print(f"{'model':<52}{'median dominance':>17}{'fraction > 0.8':>16}")
    for name, model in fitted:
        final = model[-1] if hasattr(model, "steps") else model
        if not isinstance(final, (MatryoshkaSAE, MatryoshkaTranscoder)):
            continue
        dominance = single_unit_dominance(final)
        print(f"{name:<52}{np.nanmedian(dominance):>17.2f}{np.nanmean(dominance > 0.8):>16.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--quick", action="store_true", help="k = 8 only")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"data not found: {args.data}")
    train, test = load(args.data)
    ks = (8,) if args.quick else (4, 8, 16)
    print(f"M1: {train.shape[0]} training and {test.shape[0]} test bins, {train.shape[1]} units; "
          f"seed {SEED}")
    section_structure(train, test, ks)
    fitted = section_co_smoothing(train, test, ks)
    section_dominance(fitted)


if __name__ == "__main__":
    main()
