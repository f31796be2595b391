"""Quick start: recover planted features from simulated spike counts.

A population of 60 units is simulated for 20,000 time bins (about 17 minutes
at 50 ms). Its firing is driven by a few sparse, non-negative latent features
with a hierarchy, as in a reaching task:

* ``moving``: a broad feature, on during every movement, that raises the rate
  of about half of the units;
* ``reach 0`` ... ``reach 300``: six direction-specific features, each on
  during the middle of the movements towards its own direction, adding to
  ``moving`` on a small group of units;
* ``reward``: a short burst after about half of the movements.

Counts are Poisson draws from the resulting rates. The first 80 % of the
time bins train a ``MatryoshkaSAE``; the last 20 % test it against PCA with
as many components as the SAE has active latents per bin. The script then
checks whether each planted feature has a decoder row (``components_``)
pointing the same way.

Run: ``python examples/quickstart.py [--out DIR]``
"""

import argparse
import time
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.decomposition import PCA

from sklearn_nldisco import MatryoshkaSAE

N_UNITS = 60
N_BINS = 20_000
DIRECTIONS_DEG = (0, 60, 120, 180, 240, 300)
FEATURE_NAMES = ("moving",) + tuple(f"reach {d}" for d in DIRECTIONS_DEG) + ("reward",)


def simulate(seed=0):
    """Spike counts, planted activations and planted loadings.

    Returns
    -------
    counts : ndarray of shape (N_BINS, N_UNITS)
        Poisson spike counts per bin.
    activations : ndarray of shape (N_BINS, n_features)
        The non-negative, sparse activation of each planted feature.
    loadings : ndarray of shape (n_features, N_UNITS)
        How much each feature adds to each unit's rate (spikes per bin at
        unit activation).
    """
    rng = np.random.RandomState(seed)
    n_features = len(FEATURE_NAMES)
    activations = np.zeros((N_BINS, n_features))

    # Alternate rest and movement epochs; each movement has one direction.
    t = int(rng.randint(10, 40))
    while t < N_BINS:
        length = int(rng.randint(16, 30))
        stop = min(t + length, N_BINS)
        span = np.arange(stop - t)
        envelope = np.sin(np.pi * (span + 0.5) / length)  # smooth bump in [0, 1]
        activations[t:stop, 0] = rng.uniform(0.6, 1.4) * envelope
        direction = rng.randint(len(DIRECTIONS_DEG))
        # the direction-specific feature is on in the middle of the movement only
        middle = (span > length // 4) & (span < 3 * length // 4)
        activations[t:stop, 1 + direction] = (
            rng.uniform(0.6, 1.4) * envelope ** 2 * middle
        )
        if rng.uniform() < 0.5 and stop + 6 <= N_BINS:
            activations[stop : stop + 6, -1] = rng.uniform(0.6, 1.4) * np.exp(
                -np.arange(6) / 2.0
            )
        t = stop + int(rng.randint(10, 40))

    loadings = np.zeros((n_features, N_UNITS))
    # "moving": broad, about half of the units
    broad = rng.uniform(size=N_UNITS) < 0.5
    loadings[0, broad] = rng.uniform(1.0, 3.0, size=broad.sum())
    # direction and reward features: small groups of about 8 units each
    for feature in range(1, n_features):
        members = rng.choice(N_UNITS, size=8, replace=False)
        loadings[feature, members] = rng.uniform(2.0, 5.0, size=8)

    baseline = rng.uniform(0.2, 2.0, size=N_UNITS)  # spikes per bin at rest
    rates = baseline + activations @ loadings
    counts = rng.poisson(rates).astype(np.float64)
    return counts, activations, loadings


def explained_variance(X, X_hat):
    """``1 - SSE / SST`` over all entries (the measure ``MatryoshkaSAE.score`` uses)."""
    total = np.square(X - X.mean(axis=0)).sum()
    return 1.0 - np.square(X - X_hat).sum() / total


def best_cosines(loadings, dictionary):
    """For each planted loading, the best cosine with a dictionary row, and that row."""
    planted = loadings / np.linalg.norm(loadings, axis=1, keepdims=True)
    rows = dictionary / np.maximum(np.linalg.norm(dictionary, axis=1, keepdims=True), 1e-12)
    cosine = planted @ rows.T
    best = cosine.argmax(axis=1)
    return cosine[np.arange(len(planted)), best], best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder in which to save the fitted model (joblib)")
    args = parser.parse_args()

    counts, activations, loadings = simulate(seed=0)
    n_train = int(0.8 * N_BINS)  # split in time: train on the past, test on the future
    X_train, X_test = counts[:n_train], counts[n_train:]
    print(f"simulated {N_BINS:,} bins x {N_UNITS} units, {len(FEATURE_NAMES)} planted "
          f"features, mean count {counts.mean():.2f} per bin; "
          f"train {len(X_train):,} bins, test {len(X_test):,} bins (last 20 %)")

    # A model this small trains fastest on one thread; torch's thread pool
    # also slows down sharply when another process is busy on the same cores.
    torch.set_num_threads(1)
    k = 4  # about as many features as are active together in the simulation
    sae = MatryoshkaSAE(n_latents=64, k=k, random_state=0)
    start = time.perf_counter()
    sae.fit(X_train)
    fit_seconds = time.perf_counter() - start
    print(f"MatryoshkaSAE(n_latents=64, k={k}) fitted in {fit_seconds:.1f} s: "
          f"{sae.n_iter_} epochs ({sae.stop_reason_}, best epoch {sae.best_iter_}), "
          f"device {sae.device_}")

    pca = PCA(n_components=k, random_state=0).fit(X_train)
    pca_ev = explained_variance(X_test, pca.inverse_transform(pca.transform(X_test)))
    codes = sae.transform(X_test)
    l0 = np.count_nonzero(codes, axis=1).mean()

    print("\nHeld-out explained variance (test bins)")
    print(f"  {'model':<38}{'active per bin':>15}{'explained var.':>16}")
    print(f"  {f'PCA, {k} components':<38}{k:>15d}{pca_ev:>16.3f}")
    for level, size in enumerate(sae.level_sizes_):
        name = f"MSAE level {level} (latents 0-{size - 1})"
        level_ev = explained_variance(X_test, sae.reconstruct(X_test, level=level))
        print(f"  {name:<38}{'':>15}{level_ev:>16.3f}")
    print(f"  {'MSAE, all latents (score)':<38}{l0:>15.2f}{sae.score(X_test):>16.3f}")

    dead = sae.dead_latents_
    print(f"\nDead latents (never active on the training bins): {len(dead)} of "
          f"{sae.n_latents}" + (f" {dead.tolist()}" if len(dead) else ""))

    # components_ are in scaled units; target_scale_ brings them back to counts
    # (it is 1 for the default scaling="center"). PCA components have an
    # arbitrary sign, so both signs are offered to the comparison.
    cosine, row = best_cosines(loadings, sae.components_ * sae.target_scale_)
    pca_cosine, _ = best_cosines(loadings, np.vstack([pca.components_, -pca.components_]))
    print("\nPlanted features: best cosine between the planted loadings and a "
          "dictionary row")
    print(f"  {'feature':<12}{'active bins':>12}{'MSAE row':>10}{'level':>7}"
          f"{'cosine':>8}{'PCA':>7}{'recovered':>11}")
    for i, name in enumerate(FEATURE_NAMES):
        level = int(np.searchsorted(sae.level_sizes_, row[i], side="right"))
        active = (activations[:, i] > 0).mean()
        print(f"  {name:<12}{active:>12.1%}{row[i]:>10d}{level:>7d}{cosine[i]:>8.3f}"
              f"{pca_cosine[i]:>7.3f}{'yes' if cosine[i] > 0.9 else 'no':>11}")
    print(f"  recovered (cosine > 0.9): {(cosine > 0.9).sum()} of {len(FEATURE_NAMES)} "
          f"by the MSAE, {(pca_cosine > 0.9).sum()} by PCA")

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "quickstart_msae.joblib"
        joblib.dump(sae, path)
        print(f"\nsaved the fitted model to {path}")


if __name__ == "__main__":
    main()
