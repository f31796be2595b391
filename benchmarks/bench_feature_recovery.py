"""Recovery of planted features: MatryoshkaSAE against PCA and NMF, rated by the same code.

The simulated reaching session (``make_reaching_session``) has 12 known
features. Its spikes are binned over the whole session (50 ms bins, 50 ms
Gaussian smoothing; the returns between trials are kept, since they are the
only movements where ``moving`` is active without a direction feature). Every
model is fitted on the first 80 % of the bins; selectivity is scored on the
last 20 % (held-out time): the task phases against circular shifts, the
trial-level labels (target direction, speed class of the reach) against
permuted trials (a circular shift lands a sparse latent's few active bins on
the few movement bins only by chance, which makes its null selectivity noisy
and its p-values weak; permuting trials keeps them on movement bins). A feature is recovered
when one latent's decoder direction has cosine >= 0.9 with the feature's
loadings and that latent's most selective condition of the planted variable
is the planted condition with q < 0.05 (``feature_recovery``).

Target: the MSAE recovers at least 90 % of the features; PCA and NMF (as many
components as there are features) clearly fewer.

    python benchmarks/bench_feature_recovery.py
    python benchmarks/bench_feature_recovery.py --seeds 0 1 2 --verbose
"""

import argparse
import time

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import NMF, PCA

from sklearn_nldisco import MatryoshkaSAE, SelectivityScorer
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.interpretation import feature_recovery
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata

TARGET = 0.9
N_LATENTS = 128


def planted_scorers(seed):
    """Task phases against circular shifts; trial-level labels against permuted trials."""
    return [
        SelectivityScorer(variables=["phase", "epoch"], random_state=seed),
        SelectivityScorer(variables=["reach_direction", "reach_speed"], null="trial",
                          random_state=seed),
    ]


def session(n_units, n_trials, seed):
    """Counts, planted variables and ground truth of one simulated session."""
    recording, truth = make_reaching_session(
        n_units=n_units, n_trials=n_trials, random_state=seed)
    binner = SpikeBinner(bin_size=0.05, smooth_sigma=0.05)
    counts = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)
    variables = truth.condition_variables(metadata)
    variables["trial_id"] = metadata["trial_id"]
    return counts, variables, truth


def models(n_features, seed, n_latents=N_LATENTS):
    return {
        f"MSAE ({n_latents} latents, k=4)": MatryoshkaSAE(
            n_latents=n_latents, k=4, level_sizes=(4, 16, n_latents), random_state=seed),
        f"PCA ({n_features} components)": PCA(n_components=n_features, random_state=seed),
        f"NMF ({n_features} components)": NMF(
            n_components=n_features, max_iter=1000, random_state=seed),
    }


def decoder(model):
    if isinstance(model, MatryoshkaSAE):
        return model.components_ * model.target_scale_
    return model.components_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-units", type=int, default=200)
    parser.add_argument("--n-trials", type=int, default=2000)
    parser.add_argument("--n-latents", type=int, default=N_LATENTS)
    parser.add_argument("--models", nargs="+", default=["MSAE", "PCA", "NMF"],
                        help="which models to run (MSAE, PCA, NMF)")
    parser.add_argument("--verbose", action="store_true", help="print every feature")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"simulated sessions: {args.n_units} units, {args.n_trials} trials; "
          f"seeds {args.seeds} (simulation, models and null draws)")
    print(f"{'seed':>4}  {'model':<26}{'recovered':>10}{'fraction':>10}{'cos>=0.9':>10}"
          f"{'fit s':>8}  result")
    for seed in args.seeds:
        counts, variables, truth = session(args.n_units, args.n_trials, seed)
        split = int(0.8 * len(counts))
        scorers = planted_scorers(seed)
        n_features = truth.n_features
        for name, model in models(n_features, seed, args.n_latents).items():
            if name.split()[0] not in args.models:
                continue
            start = time.perf_counter()
            model.fit(counts[:split])
            fit_seconds = time.perf_counter() - start
            codes = model.transform(counts[split:])
            results = pd.concat([scorer.score_latents(codes, variables.iloc[split:])
                                 for scorer in scorers], ignore_index=True)
            table = feature_recovery(truth.feature_loadings, decoder(model), results,
                                     truth.planted_conditions,
                                     feature_names=truth.feature_names)
            n_found = int(table["recovered"].sum())
            n_cosine = int((table["cosine"] >= 0.9).sum())
            fraction = n_found / n_features
            verdict = ""
            if name.startswith("MSAE"):
                verdict = "ok" if fraction >= TARGET else "MISSED"
            print(f"{seed:>4}  {name:<26}{n_found:>7d}/{n_features:<2d}{fraction:>10.0%}"
                  f"{n_cosine:>10d}{fit_seconds:>8.1f}  {verdict}")
            if args.verbose:
                print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
