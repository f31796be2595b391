"""Calibration and power of SelectivityScorer's p-values, and its speed.

Four tables, seeds fixed and printed:

1. **Calibration on shuffled labels.** The metadata is shifted as a whole
   by a random offset in [n/4, 3n/4] bins against the codes (each variable
   keeps its time structure, the link to the codes is gone), 20 times; every
   discovery (q < alpha) is then false, so the false discovery rate is the
   fraction of shuffles with any discovery. Target: at most 5 %. Codes: the
   latents of a MatryoshkaSAE fitted on the simulated session (with the
   planted features as extra latents), and the raw units of the real M1
   recording (dense: the quantile rule of ``dense="auto"``).
2. **Power on planted features.** The simulated session's 12 planted
   features (their binned activity, among the MSAE's latents), and the
   MSAE latent whose decoder is closest to each feature: significant (q <
   0.05) for the planted condition, which is also the latent's most
   selective condition of the planted variable. Target: at least 90 % of
   the planted features, ``reach_*`` direction features included.
3. **The real M1 recording**, raw units as codes: units with a selective
   condition (q < alpha, selectivity >= 0.6, activation fraction >= 0.1).
4. **Speed**: a few hundred sparse latents x tens of conditions x 10k bins
   (random latents and random-walk variables, 60 latents planted on a
   phase), with the false discoveries among the random latents, also for
   the former smallest circular shift (a tenth of the bins: 700).

Each table compares the default (adaptive empirical draws) with
``p_value="gaussian"`` (the former default p-value, 200 draws) and a fixed
200 draws (``max_permutations=200``), all with the null restricted to the
bins where each variable is defined.

    python benchmarks/bench_selectivity_power.py
    python benchmarks/bench_selectivity_power.py --n-shuffles 5 --skip-m1
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import torch
from scipy import sparse

from sklearn_nldisco import MatryoshkaSAE, SelectivityScorer
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata, kinematics

M1_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "m1_stevenson_2011.mat"
PLANTED_VARIABLES = ["phase", "epoch", "reach_direction", "reach_speed"]
OPTIONS = {
    "adaptive (default)": {},
    "gaussian, 200 draws": {"p_value": "gaussian"},
    "empirical, 200 draws": {"max_permutations": 200},
}
TARGET_FALSE = 0.05
TARGET_POWER = 0.9


def simulated_session(seed, n_units, n_trials):
    """Counts, planted variables, planted-feature activity and ground truth."""
    recording, truth = make_reaching_session(n_units=n_units, n_trials=n_trials,
                                             random_state=seed)
    binner = SpikeBinner(bin_size=0.05, smooth_sigma=0.05)
    counts = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)
    variables = truth.condition_variables(metadata)
    features = truth.binned_activity(binner.bin_edges_)
    return counts, variables, features, truth


def m1_recording(path):
    """Spike counts (15,536 x 171) and direction (8 sectors; missing below the
    25th percentile of speed) and speed from the hand velocity."""
    data = scipy.io.loadmat(path)
    counts = data["spikes"].T.astype(np.float64)
    start = data["time"].ravel()
    velocity = data["handVel"][:2].T
    speed = np.hypot(*velocity.T)
    behaviour = kinematics(np.column_stack([start, start + 0.05]), velocity=velocity,
                           smooth_sigma_bins=1.0, min_speed=float(np.quantile(speed, 0.25)))
    return counts, behaviour[["direction_deg", "speed"]]


def shuffled(metadata, rng):
    offset = rng.randint(len(metadata) // 4, 3 * len(metadata) // 4 + 1)
    return metadata.iloc[np.roll(np.arange(len(metadata)), offset)].reset_index(drop=True)


def calibration_rows(name, codes, metadata, scorer_params, n_shuffles, seed):
    rows = []
    for option, params in OPTIONS.items():
        rng = np.random.RandomState(seed)
        scorer = SelectivityScorer(**scorer_params, **params, random_state=seed)
        discoveries, n_tested, small_p = [], 0, []
        for _ in range(n_shuffles):
            results = scorer.score_latents(codes, shuffled(metadata, rng))
            discoveries.append(int((results["q"] < scorer.alpha).sum()))
            n_tested = int(results["q"].notna().sum())
            small_p.append(float(np.mean(results["p"].dropna() <= 0.01)))
        any_discovery = np.mean(np.asarray(discoveries) > 0)
        rows.append((name, option, n_tested, any_discovery, np.mean(discoveries),
                     np.mean(small_p), "ok" if any_discovery <= TARGET_FALSE else "OVER"))
    return rows


def planted_verdict(results, latent, variable, condition):
    """Whether ``latent`` is significant (q < 0.05) for the planted condition and
    prefers it among the conditions of the planted variable."""
    rows = results[(results["latent"] == latent) & (results["variable"] == variable)]
    if rows["selectivity"].isna().all():
        return False
    top = rows.sort_values(["selectivity", "q"], ascending=[False, True],
                           kind="stable")["condition"].iloc[0]
    at_planted = rows[rows["condition"] == condition]
    return bool(top == condition and (at_planted["q"] < 0.05).any())


def closest_latents(truth, model):
    """The MSAE latent whose decoder direction is closest to each feature's loadings."""
    decoder = model.components_ * model.target_scale_
    loadings = truth.feature_loadings / np.linalg.norm(truth.feature_loadings, axis=1,
                                                       keepdims=True)
    norms = np.linalg.norm(decoder, axis=1)
    cosine = loadings @ (decoder / np.where(norms > 0, norms, 1.0)[:, None]).T
    return cosine.argmax(axis=1), cosine.max(axis=1)


def print_table(header, rows, formats):
    widths = [max(len(h), *(len(f.format(row[i])) for row in rows))
              for i, (h, f) in enumerate(zip(header, formats))]
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(
        zip(header, widths))))
    for row in rows:
        print("  ".join(f.format(v).rjust(w) if i else f.format(v).ljust(w)
                        for i, (v, f, w) in enumerate(zip(row, formats, widths))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-shuffles", type=int, default=20)
    parser.add_argument("--n-units", type=int, default=100)
    parser.add_argument("--n-trials", type=int, default=300)
    parser.add_argument("--n-latents", type=int, default=64)
    parser.add_argument("--m1-data", type=Path, default=M1_DATA)
    parser.add_argument("--skip-m1", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seed = args.seed

    counts, variables, features, truth = simulated_session(seed, args.n_units, args.n_trials)
    split = int(0.8 * len(counts))
    model = MatryoshkaSAE(n_latents=args.n_latents, k=4, random_state=seed).fit(
        counts[:split])
    latents = model.transform(counts)
    # the planted features first, then the model's latents
    codes = np.hstack([features, latents])
    print(f"simulated session: {args.n_units} units, {args.n_trials} trials, "
          f"{len(counts):,} bins of 50 ms; MSAE ({args.n_latents} latents, k=4) fitted on "
          f"the first 80 %; seed {seed} (simulation, model, null draws, shuffles)")
    m1 = None
    if not args.skip_m1:
        if args.m1_data.exists():
            m1 = m1_recording(args.m1_data)
        else:
            print(f"M1 recording not found at {args.m1_data}: its rows are skipped")

    print(f"\n1. Calibration: {args.n_shuffles} shifts of the metadata against the codes "
          f"(alpha = 0.05; target: at most {TARGET_FALSE:.0%} of shuffles with a "
          "discovery)\n")
    rows = calibration_rows(f"simulated: {truth.n_features} features + "
                            f"{args.n_latents} latents", codes, variables,
                            {"variables": PLANTED_VARIABLES}, args.n_shuffles, seed)
    if m1 is not None:
        rows += calibration_rows("M1: 171 raw units", m1[0], m1[1],
                                 {"variables": ["direction_deg", "speed"], "n_bins": 8},
                                 args.n_shuffles, seed)
    print_table(["codes", "p-value", "pairs", "shuffles with a discovery",
                 "discoveries per shuffle", "P(p <= 0.01)", "result"], rows,
                ["{}", "{}", "{:d}", "{:.0%}", "{:.2f}", "{:.4f}", "{}"])

    print(f"\n2. Power on the {truth.n_features} planted features (q < 0.05 at the planted "
          f"condition, the most selective of its variable; target: {TARGET_POWER:.0%})\n")
    closest, cosine = closest_latents(truth, model)
    rows, missed = [], {}
    for part, rows_of in (("all bins", slice(None)), ("last 20 % (held out)",
                                                      slice(split, None))):
        for option, params in OPTIONS.items():
            scorer = SelectivityScorer(variables=PLANTED_VARIABLES, random_state=seed,
                                       **params)
            start = time.perf_counter()
            results = scorer.score_latents(codes[rows_of], variables.iloc[rows_of])
            seconds = time.perf_counter() - start
            planted, msae = {}, {}
            for index, name in enumerate(truth.feature_names):
                variable, condition = truth.planted_conditions[name]
                planted[name] = planted_verdict(results, index, variable, condition)
                msae[name] = planted_verdict(results, truth.n_features + closest[index],
                                             variable, condition)
            directions = [name for name in planted if name.startswith("reach_")]
            fraction = np.mean(list(planted.values()))
            missed[part, option] = [name for name, found in planted.items() if not found]
            rows.append((part, option, f"{sum(planted.values())}/{truth.n_features}",
                         f"{sum(planted[name] for name in directions)}/{len(directions)}",
                         f"{sum(msae.values())}/{truth.n_features}", seconds,
                         "ok" if fraction >= TARGET_POWER else "MISSED"))
    print_table(["bins scored", "p-value", "planted", "of them reach_*",
                 "closest MSAE latent", "score_latents s", "result"], rows,
                ["{}", "{}", "{}", "{}", "{}", "{:.1f}", "{}"])
    for (part, option), names in missed.items():
        if names and option in ("adaptive (default)",):
            print(f"  missed by the default ({part}): {', '.join(names)}")
    print(f"  closest MSAE latents: decoder cosine {cosine.min():.2f}-{cosine.max():.2f} "
          f"({int((cosine >= 0.9).sum())} of {truth.n_features} >= 0.9)")

    if m1 is not None:
        print("\n3. The real M1 recording: raw units as codes (171 units, 15,536 bins; "
              "direction: 8 sectors, speed: 8 quantile bins)\n")
        rows = []
        for option, params in OPTIONS.items():
            scorer = SelectivityScorer(variables=["direction_deg", "speed"], n_bins=8,
                                       random_state=seed, **params)
            start = time.perf_counter()
            results = scorer.score_latents(m1[0], m1[1])
            seconds = time.perf_counter() - start
            selective = results[scorer.selective(results)]
            rows.append((option, int((results["q"] < 0.05).sum()),
                         selective["latent"].nunique(),
                         selective.loc[selective["variable"] == "direction_deg",
                                       "latent"].nunique(),
                         selective.loc[selective["variable"] == "speed", "latent"].nunique(),
                         seconds))
        print_table(["p-value", "pairs q < 0.05", "selective units", "direction", "speed",
                     "score_latents s"], rows,
                    ["{}", "{:d}", "{:d}", "{:d}", "{:d}", "{:.1f}"])

    print("\n4. Speed: sparse codes, 10,000 bins x 300 latents (4 active per bin, 60 of "
          "them selective) x 50 conditions, warm\n")
    rng = np.random.RandomState(seed)
    n_bins, n_latents = 10_000, 300
    columns = rng.randint(0, n_latents, size=(n_bins, 4))
    sparse_codes = sparse.csr_matrix(
        (rng.exponential(size=4 * n_bins), (np.repeat(np.arange(n_bins), 4),
                                            columns.ravel())),
        shape=(n_bins, n_latents)).toarray()
    trial = np.arange(n_bins) // 40
    phase = np.repeat(rng.randint(0, 10, size=n_bins // 10), 10)
    metadata = pd.DataFrame({
        "phase": phase,
        "speed": np.abs(np.cumsum(rng.normal(size=n_bins))),
        "hand_pos_x": np.cumsum(rng.normal(size=n_bins)),
        "hand_pos_y": np.cumsum(rng.normal(size=n_bins)),
        "direction_deg": np.where(rng.random_sample(n_bins) < 0.3, np.nan,
                                  rng.uniform(-180, 180, n_bins)),
        "trial_id": trial,
    })
    for latent in range(60):
        sparse_codes[:, latent] = (phase == latent % 10) & (rng.random_sample(n_bins) < 0.3)
    SelectivityScorer(random_state=seed).score_latents(sparse_codes[:500],
                                                       metadata.iloc[:500])
    rows = []
    # the former smallest shift, a tenth of the bins, as a fourth option: the
    # shifts far from 0 are not a group, and with many draws the random walks
    # line up with random latents at shift 0 better than at all of them
    options = {**OPTIONS, "adaptive, min_shift=700": {"min_shift": 700}}
    for option, params in options.items():
        scorer = SelectivityScorer(random_state=seed, **params)
        start = time.perf_counter()
        results = scorer.score_latents(sparse_codes, metadata)
        seconds = time.perf_counter() - start
        discovered = results["q"] < 0.05
        rows.append((option, len(results), int((discovered & (results["latent"] < 60)).sum()),
                     int((discovered & (results["latent"] >= 60)).sum()),
                     float(results["n_draws"].mean()), seconds))
    print_table(["p-value", "pairs", "q < 0.05: planted (60)", "false (240 random latents)",
                 "mean draws per pair", "score_latents s"], rows,
                ["{}", "{:,}", "{:d}", "{:d}", "{:.0f}", "{:.2f}"])


if __name__ == "__main__":
    main()
