"""Time SelectivityScorer.score_latents on sparse codes of the target size.

Target: 10^6 bins x 1,024 latents (about 12 active per bin) x 50 conditions
(5 variables of 10 conditions: one discrete, three quantile-binned, one
angle with NaN at rest), circular-shift null draws (200 for every pair,
up to 10,000 for the pairs that may be significant), in at most 60 s.

    python benchmarks/bench_selectivity.py
    python benchmarks/bench_selectivity.py --n-bins 200000 --null trial
"""

import argparse
import time

import numba
import numpy as np
import pandas as pd
from scipy import sparse

from sklearn_nldisco.interpretation._selectivity import SelectivityScorer

TARGET_S = 60.0


def make_codes(n_bins, n_latents, active_per_bin, rng):
    columns = rng.randint(0, n_latents, size=(n_bins, active_per_bin))
    rows = np.repeat(np.arange(n_bins), active_per_bin)
    values = rng.exponential(1.0, size=n_bins * active_per_bin).astype(np.float32)
    codes = sparse.csr_matrix((values, (rows, columns.ravel())), shape=(n_bins, n_latents))
    codes.sum_duplicates()
    return codes


def make_metadata(n_bins, rng):
    # smooth behaviour (random walks) and phases in blocks, like binned trials
    trial_length = 40
    n_trials = -(-n_bins // trial_length)
    trial_id = np.repeat(np.arange(n_trials), trial_length)[:n_bins]
    phase = np.repeat(rng.randint(0, 10, size=n_trials * 4), trial_length // 4)[:n_bins]
    speed = np.abs(np.cumsum(rng.normal(size=n_bins)))
    direction = np.degrees(np.arctan2(*np.cumsum(rng.normal(size=(2, n_bins)), axis=1)))
    direction[rng.random_sample(n_bins) < 0.3] = np.nan
    return pd.DataFrame({
        "trial_id": trial_id,
        "phase": phase,
        "speed": speed,
        "hand_pos_x": np.cumsum(rng.normal(size=n_bins)),
        "hand_pos_y": np.cumsum(rng.normal(size=n_bins)),
        "direction_deg": direction,
    })


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-bins", type=int, default=1_000_000)
    parser.add_argument("--n-latents", type=int, default=1024)
    parser.add_argument("--active-per-bin", type=int, default=12)
    parser.add_argument("--n-permutations", type=int, default=200)
    parser.add_argument("--max-permutations", type=int, default=10_000)
    parser.add_argument("--null", choices=["circular", "trial"], default="circular")
    args = parser.parse_args()

    rng = np.random.RandomState(0)
    codes = make_codes(args.n_bins, args.n_latents, args.active_per_bin, rng)
    metadata = make_metadata(args.n_bins, rng)
    scorer = SelectivityScorer(n_permutations=args.n_permutations,
                               max_permutations=args.max_permutations, null=args.null,
                               random_state=0)

    # compile (or load the cached kernels) outside the timing
    SelectivityScorer(n_permutations=3, null=args.null, random_state=0).score_latents(
        codes[:2000], metadata.iloc[:2000])

    start = time.perf_counter()
    results = scorer.score_latents(codes, metadata)
    elapsed = time.perf_counter() - start
    n_conditions = results[["variable", "condition"]].drop_duplicates().shape[0]

    rows = [
        ("bins", f"{args.n_bins:,}"),
        ("latents", f"{args.n_latents:,}"),
        ("active entries", f"{codes.nnz:,} ({codes.nnz / args.n_bins:.1f} per bin)"),
        ("conditions", f"{n_conditions}"),
        ("null", f"{args.null}, {args.n_permutations} to {args.max_permutations:,} draws"),
        ("null draws per pair (mean)", f"{results['n_draws'].mean():.0f}"),
        ("threads", f"{numba.get_num_threads()}"),
        ("score_latents (s)", f"{elapsed:.1f}"),
        ("pairs with q < 0.05", f"{int((results['q'] < 0.05).sum())} of {len(results):,}"),
    ]
    if args.n_bins != 1_000_000 or args.n_latents != 1024:
        # work is about proportional to the active entries times the null draws
        scaled = elapsed * 1_000_000 * 1024 / (args.n_bins * args.n_latents) * (
            12 / args.active_per_bin)
        rows.append(("scaled to 10^6 x 1,024 (s)", f"{scaled:.1f} (linear extrapolation)"))
    rows.append(("target (s)", f"{TARGET_S:.0f}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
