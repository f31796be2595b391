"""Discovery measured against noise: structure control, co-smoothing, single-unit latents.

Data: ``../shared/data/m1_stevenson_2011.mat`` (171 units, 15,536 bins of
50 ms, raw counts). Train on the first 80 % of time, test on the last 20 %.

Sections:

1. **Structure control.** Held-out explained variance on the real counts and
   on the same counts with every unit circularly shifted in time by its own
   offset (each block on its own: every unit keeps its rate and
   autocorrelation, all cross-unit structure is gone), and the difference,
   "structure explained". PCA(k) against the MSAE at the same L0 (k),
   without masking (``mask_fraction=0``, the behaviour before masked-unit
   training) and with the defaults (``mask_fraction=0.25``).
2. **Co-smoothing.** 43 of 171 units held out (``held_out=0.25``, seed 0);
   models see the held-in units, a Poisson readout (ridge chosen on
   training blocks only) predicts the held-out units; bits per spike on the
   test block. Models get counts smoothed with a Gaussian of sigma = 1 bin
   (``GaussianSmoother(1.0)`` first in the pipeline, applied to each block
   on its own) or raw counts, as labelled; the smoothing baseline is the
   smoothed held-in counts themselves.
3. **Single-unit latents.** Median single-unit dominance (share of a
   latent's decoder energy in its strongest unit) and the fraction of
   latents above 0.8, for the MSAEs of section 2 (live latents).
4. **Selective latents.** ``SelectivityScorer`` (defaults) on the test
   block: on M1, direction (8 sectors, missing below the 25th percentile of
   speed) and speed from the hand velocity; on the simulated session
   (``make_reaching_session``, 100 units, 300 trials, seed 0, 50 ms bins
   smoothed with sigma 50 ms, last 20 % of bins held out), its planted
   variables. The MSAE (k = 8) is fitted on the training block; how many
   latents are selective, how many of those are single-unit (dominance >
   0.8), and the same on labels circularly shifted by half the test block
   (the null: selective latents there are false).

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

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder, SelectivityScorer
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.evaluation import (
    GaussianSmoother,
    co_smoothing,
    single_unit_dominance,
    single_unit_fraction,
    structure_control,
)
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata, kinematics

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "m1_stevenson_2011.mat"
SEED = 0


def load(path):
    counts = scipy.io.loadmat(path)["spikes"].T.astype(np.float64)
    split = int(0.8 * len(counts))
    return counts[:split], counts[split:]


def m1_behaviour(path):
    """Direction (missing below the 25th percentile of speed) and speed of every bin."""
    data = scipy.io.loadmat(path)
    start = data["time"].ravel()
    velocity = data["handVel"][:2].T
    speed = np.hypot(*velocity.T)
    behaviour = kinematics(np.column_stack([start, start + 0.05]), velocity=velocity,
                           smooth_sigma_bins=1.0, min_speed=float(np.quantile(speed, 0.25)))
    return behaviour[["direction_deg", "speed"]].reset_index(drop=True)


def simulated():
    recording, truth = make_reaching_session(n_units=100, n_trials=300, random_state=SEED)
    binner = SpikeBinner(bin_size=0.05, smooth_sigma=0.05)
    counts = binner.fit_transform(recording)
    variables = truth.condition_variables(bin_metadata(binner, recording))
    return counts, variables.reset_index(drop=True)


def section_selective(datasets):
    print("\n4. Selective latents (SelectivityScorer defaults, test block; MSAE k=8, seed 0)")
    print(f"{'data':<10}{'model':<34}{'pairs q<0.05':>13}{'selective':>10}{'single-unit':>12}"
          f"{'shifted labels: selective':>27}")
    for data_name, (counts, metadata) in datasets.items():
        split = int(0.8 * len(counts))
        test_metadata = metadata.iloc[split:].reset_index(drop=True)
        shifted = test_metadata.iloc[np.roll(np.arange(len(test_metadata)),
                                             len(test_metadata) // 2)].reset_index(drop=True)
        for name, mask in (("MSAE, mask_fraction=0 (before)", 0.0),
                           ("MSAE, defaults (masked)", None)):
            extra = {} if mask is None else {"mask_fraction": mask}
            model = MatryoshkaSAE(k=8, random_state=SEED, **extra).fit(counts[:split])
            codes = model.transform(counts[split:])
            scorer = SelectivityScorer(random_state=SEED)
            results = scorer.score_latents(codes, test_metadata)
            latents = np.unique(results.loc[scorer.selective(results), "latent"])
            null = scorer.score_latents(codes, shifted)
            n_null = np.unique(null.loc[scorer.selective(null), "latent"]).size
            fraction = single_unit_fraction(model, latents=latents) if latents.size else np.nan
            n_pairs = int((results["q"] < 0.05).sum())
            print(f"{data_name:<10}{name:<34}{n_pairs:>13}{latents.size:>10}{fraction:>12.2f}"
                  f"{n_null:>27}", flush=True)


def section_structure(train, test, ks):
    print("\n1. Structure control: held-out EV on real and unit-shifted counts (raw counts)")
    print(f"{'k':>3}  {'model':<36}{'EV real':>9}{'EV shifted':>12}{'structure':>11}{'time (s)':>10}")
    for k in ks:
        models = [
            (f"PCA({k})", PCA(n_components=k)),
            ("MSAE, mask_fraction=0 (before)", MatryoshkaSAE(k=k, mask_fraction=0.0,
                                                             random_state=SEED)),
            ("MSAE, defaults (masked)", MatryoshkaSAE(k=k, random_state=SEED)),
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
        rows.append((f"MSAE k={k}, mask_fraction=0 (before), smoothed",
                     make_pipeline(smooth, MatryoshkaSAE(k=k, mask_fraction=0.0,
                                                         random_state=SEED))))
        rows.append((f"MSAE k={k}, defaults (masked), smoothed",
                     make_pipeline(smooth, MatryoshkaSAE(k=k, random_state=SEED))))
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
    # dead latents keep their initial decoder rows: left out
    for name, model in fitted:
        final = model[-1] if hasattr(model, "steps") else model
        if not isinstance(final, (MatryoshkaSAE, MatryoshkaTranscoder)):
            continue
        dominance = single_unit_dominance(final)[final.latent_frequency_ > 0]
        print(f"{name:<52}{np.nanmedian(dominance):>17.2f}{np.nanmean(dominance > 0.8):>16.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--quick", action="store_true", help="k = 8 only")
    parser.add_argument("--only-selective", action="store_true",
                        help="section 4 only")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"data not found: {args.data}")
    train, test = load(args.data)
    ks = (8,) if args.quick else (4, 8, 16)
    print(f"M1: {train.shape[0]} training and {test.shape[0]} test bins, {train.shape[1]} units; "
          f"seed {SEED}")
    if args.only_selective:
        counts = np.concatenate([train, test])
        section_selective({"M1": (counts, m1_behaviour(args.data)), "simulated": simulated()})
        return
    section_structure(train, test, ks)
    fitted = section_co_smoothing(train, test, ks)
    section_dominance(fitted)
    counts = np.concatenate([train, test])
    section_selective({"M1": (counts, m1_behaviour(args.data)), "simulated": simulated()})


if __name__ == "__main__":
    main()
