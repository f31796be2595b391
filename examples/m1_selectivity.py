"""Direction- and speed-selective latents in a real M1 recording, on held-out time.

The recording (``../shared/data/m1_stevenson_2011.mat``: macaque M1,
centre-out reaching, 171 units, 50 ms bins, about 13 minutes) has no trial
labels, so the behaviour comes from the hand velocity: the reach direction
(8 sectors of 45 degrees from -180; undefined while the hand is slower than
the 25th percentile of speed) and the speed (quintiles of the fitting part:
"slowest" ... "fastest").

Every model is fitted on the first 80 % of the recording. Selectivity is
scored on both parts with the same ``SelectivityScorer`` (circular-shift
null, Benjamini-Hochberg q-values): a latent is *selective* for a variable
on held-out time when one of its conditions has q < 0.05, selectivity >= 0.6
and an activation fraction >= 0.1 in the last 20 % of the recording (the
scorer's own criteria), and it *holds* when its most selective condition of
that variable is the same on the first 80 % (and significant there too).
The MatryoshkaSAE is compared with PCA and NMF with as many components as
the SAE has active latents per bin, rated by the same code.

Run: ``python examples/m1_selectivity.py [--data PATH]``
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.io
import torch
from scipy.ndimage import gaussian_filter1d
from sklearn.decomposition import NMF, PCA

from sklearn_nldisco import MatryoshkaSAE, SelectivityScorer
from sklearn_nldisco.preprocessing import kinematics

SEED = 0
N_LATENTS = 64
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "m1_stevenson_2011.mat"
VARIABLES = ("direction_deg", "speed")


def load(path):
    """Smoothed counts (n_bins, 171) and per-bin direction and speed."""
    data = scipy.io.loadmat(path)
    counts = gaussian_filter1d(data["spikes"].T.astype(np.float64), 1.0, axis=0)
    start = data["time"].ravel()
    edges = np.column_stack([start, start + 0.05])
    velocity = data["handVel"][:2].T
    speed = np.hypot(*velocity.T)
    behaviour = kinematics(edges, velocity=velocity, smooth_sigma_bins=1.0,
                           min_speed=float(np.quantile(speed, 0.25)))
    return counts, behaviour[list(VARIABLES)]


def speed_classes(speed, split):
    """Speed quintiles with edges from the fitting part, so that both parts are
    scored on the same conditions (the scorer's own quantiles would follow
    each part's data)."""
    edges = np.quantile(speed[:split], [0.2, 0.4, 0.6, 0.8])
    names = np.array(["slowest", "slow", "medium", "fast", "fastest"], dtype=object)
    return names[np.searchsorted(edges, speed, side="right")]


def selective(results, scorer):
    """Per (latent, sign): the variables' most selective condition, if it passes."""
    best = (results[scorer.selective(results)].sort_values("selectivity", ascending=False, kind="stable")
            .groupby(["latent", "sign", "variable"], sort=False).head(1))
    return {(row.latent, row.sign, row.variable): row.condition for row in best.itertuples()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"m1_selectivity: the recording is not at {args.data}; pass --data PATH.",
              file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)

    counts, behaviour = load(args.data)
    split = int(0.8 * len(counts))
    behaviour = behaviour.assign(speed=speed_classes(behaviour["speed"].to_numpy(), split))
    print(f"M1 recording: {counts.shape[1]} units, {len(counts):,} bins of 50 ms; fit on "
          f"the first {split:,}, held out the last {len(counts) - split:,} (seed {SEED})")

    k = 8
    models = {
        f"MSAE ({N_LATENTS} latents, k={k})": MatryoshkaSAE(
            n_latents=N_LATENTS, k=k, random_state=SEED),
        f"PCA ({k} components)": PCA(n_components=k, random_state=SEED),
        f"NMF ({k} components)": NMF(n_components=k, max_iter=1000, random_state=SEED),
    }
    scorer = SelectivityScorer(variables=list(VARIABLES), n_bins=8, random_state=SEED)
    print(f"\n{'model':<26}{'variable':<15}{'selective (held out)':>22}{'hold':>6}"
          f"{'of latents':>12}")
    found, held = {}, {}
    for name, model in models.items():
        model.fit(counts[:split])
        on_train = selective(scorer.score_latents(model.transform(counts[:split]),
                                                  behaviour.iloc[:split]), scorer)
        on_test = selective(scorer.score_latents(model.transform(counts[split:]),
                                                 behaviour.iloc[split:]), scorer)
        n_latents = model.components_.shape[0]
        for variable in VARIABLES:
            held_out = {key for key in on_test if key[2] == variable}
            hold = {key for key in held_out if on_train.get(key) == on_test[key]}
            # latents, not signed parts: a PCA component counts once
            n_held_out = len({key[0] for key in held_out})
            n_hold = len({key[0] for key in hold})
            found[name, variable] = (n_held_out, n_hold)
            held[name, variable] = sorted((key[0], on_test[key]) for key in hold)
            print(f"{name:<26}{variable:<15}{n_held_out:>22d}{n_hold:>6d}{n_latents:>12d}")

    msae = next(iter(models))
    for variable in VARIABLES:
        shown = ", ".join(f"latent {latent}: {condition}"
                          for latent, condition in held[msae, variable][:6])
        print(f"  MSAE {variable}-selective latents that hold (preferred condition): {shown}")
    for variable in VARIABLES:
        assert found[msae, variable][1] >= 1, f"no {variable}-selective MSAE latent holds"
    print("\nThe MSAE finds direction- and speed-selective latents that hold on held-out "
          "time; each count is of latents (a PCA component's two signs count once).")


if __name__ == "__main__":
    main()
