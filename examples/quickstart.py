"""Quick start: recover known features from a simulated reaching session.

The built-in data is a simulated delayed centre-out reaching session
(``make_reaching_session``): 100 units, 300 trials, hand trajectories, and
Poisson spike trains driven by a known hierarchy of sparse features:

* ``moving``: a broad feature, on during every movement;
* ``reach_0deg`` ... ``reach_315deg``: direction-specific features that
  refine it, each on only during reaches towards its own direction;
* ``fast`` (speed-tuned), ``delay`` (preparation after target onset) and
  ``go`` (a transient at the go cue).

Spikes are binned into 50 ms bins inside the trials (``SpikeBinner``), each
bin gets its trial, phase and kinematics (``bin_metadata``), the session's
train trials fit a ``MatryoshkaSAE`` and its test trials score it against
PCA with as many components as the SAE has active latents per bin. The
script then checks, on the test trials, how well each known feature's time
course is matched by one latent, and each feature's unit loadings by one
decoder row.

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
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.evaluation import structure_control
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata

SEED = 0


def best_correlations(features, codes):
    """For each feature's time course, the best Pearson correlation with a code column."""
    def standardise(a):
        return (a - a.mean(axis=0)) / np.maximum(a.std(axis=0), 1e-12)

    correlation = standardise(features).T @ standardise(codes) / len(features)
    best = correlation.argmax(axis=1)
    return correlation[np.arange(len(correlation)), best], best


def explained_variance(X, X_hat):
    """``1 - SSE / SST`` over all entries (the measure ``MatryoshkaSAE.score`` uses)."""
    total = np.square(X - X.mean(axis=0)).sum()
    return 1.0 - np.square(X - X_hat).sum() / total


def matched_cosines(loadings, dictionary, rows):
    """Cosine of each feature's loadings with its matched dictionary row."""
    planted = loadings / np.linalg.norm(loadings, axis=1, keepdims=True)
    chosen = dictionary[rows]
    chosen = chosen / np.maximum(np.linalg.norm(chosen, axis=1, keepdims=True), 1e-12)
    return np.einsum("fu,fu->f", planted, chosen)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder in which to save the fitted model (joblib)")
    args = parser.parse_args()

    recording, truth = make_reaching_session(n_units=100, n_trials=300, random_state=SEED)
    binner = SpikeBinner(bin_size=0.05, intervals=recording.trials, smooth_sigma=0.05)
    counts = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)
    features = truth.binned_activity(binner.bin_edges_)
    # split by trial: the session's own train and test trials
    train = (metadata["split"] == "train").to_numpy()
    test = (metadata["split"] == "test").to_numpy()
    X_train, X_test = counts[train], counts[test]
    print(f"simulated session: {recording.n_units} units, {len(recording.trials)} trials, "
          f"{len(truth.feature_names)} known features; {len(counts):,} bins of 50 ms "
          f"inside trials, train {len(X_train):,} bins, test {len(X_test):,} bins "
          f"(seed {SEED})")

    # A model this small trains fastest on one thread; torch's thread pool
    # also slows down sharply when another process is busy on the same cores.
    torch.set_num_threads(1)
    k = 4  # about as many features as are active together in the simulation
    sae = MatryoshkaSAE(n_latents=64, k=k, random_state=SEED)
    start = time.perf_counter()
    sae.fit(X_train)
    fit_seconds = time.perf_counter() - start
    print(f"MatryoshkaSAE(n_latents=64, k={k}) fitted in {fit_seconds:.1f} s: "
          f"{sae.n_iter_} epochs ({sae.stop_reason_}, best epoch {sae.best_iter_}), "
          f"device {sae.device_}")

    pca = PCA(n_components=k, random_state=SEED).fit(X_train)
    pca_ev = explained_variance(X_test, pca.inverse_transform(pca.transform(X_test)))
    codes = sae.transform(X_test)
    l0 = np.count_nonzero(codes, axis=1).mean()

    print("\nHeld-out explained variance (test trials)")
    print(f"  {'model':<38}{'active per bin':>15}{'explained var.':>16}")
    print(f"  {f'PCA, {k} components':<38}{k:>15d}{pca_ev:>16.3f}")
    for level, size in enumerate(sae.level_sizes_):
        name = f"MSAE level {level} (latents 0-{size - 1})"
        level_ev = explained_variance(X_test, sae.reconstruct(X_test, level=level))
        print(f"  {name:<38}{'':>15}{level_ev:>16.3f}")
    print(f"  {'MSAE, all latents (score)':<38}{l0:>15.2f}{sae.score(X_test):>16.3f}")

    # Explained variance alone measures capacity: the same metric on counts
    # whose units were each shifted in time (no population structure left)
    # is the control, and the difference the structure explained.
    msae_control = structure_control(MatryoshkaSAE(n_latents=64, k=k, random_state=SEED),
                                     X_train, X_test, random_state=SEED)
    pca_control = structure_control(PCA(n_components=k, random_state=SEED),
                                    X_train, X_test, random_state=SEED)
    print("\nControl: the same models on unit-shifted counts (each unit shifted in time)")
    print(f"  {'model':<38}{'EV real':>9}{'EV shifted':>12}{'structure':>11}")
    for name, control in ((f"PCA, {k} components", pca_control), ("MSAE", msae_control)):
        print(f"  {name:<38}{control.real:>9.3f}{control.shifted:>12.3f}"
              f"{control.structure:>11.3f}")

    dead = sae.dead_latents_
    print(f"\nDead latents (never active on the training bins): {len(dead)} of "
          f"{sae.n_latents}" + (f" {dead.tolist()}" if len(dead) else ""))

    # Time courses: PCA scores are signed, so both signs are offered.
    pca_scores = pca.transform(X_test)
    correlation, latent = best_correlations(features[test], codes)
    pca_correlation, _ = best_correlations(features[test], np.hstack([pca_scores, -pca_scores]))
    # Loadings: components_ are in scaled units; target_scale_ brings them to counts.
    cosine = matched_cosines(truth.feature_loadings, sae.components_ * sae.target_scale_, latent)
    print("\nKnown features on the test trials: best correlation of the feature's time "
          "course with one latent (PCA: one signed component), and the cosine of the "
          "feature's loadings with that latent's decoder row")
    print(f"  {'feature':<14}{'active bins':>12}{'latent':>8}{'level':>7}"
          f"{'corr.':>7}{'PCA':>7}{'cosine':>8}")
    for i, name in enumerate(truth.feature_names):
        level = int(np.searchsorted(sae.level_sizes_, latent[i], side="right"))
        active = (features[test, i] > 0.05).mean()
        print(f"  {name:<14}{active:>12.1%}{latent[i]:>8d}{level:>7d}"
              f"{correlation[i]:>7.2f}{pca_correlation[i]:>7.2f}{cosine[i]:>8.2f}")
    found = correlation > 0.7
    print(f"  matched (correlation > 0.7): {found.sum()} of {len(found)} by the MSAE, "
          f"{(pca_correlation > 0.7).sum()} by PCA")

    # The example checks its own headline results.
    assert msae_control.structure > pca_control.structure, \
        "the MSAE should explain more population structure than PCA"
    assert correlation[truth.feature_index("moving")] > 0.9
    assert found.sum() >= len(found) // 2

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "quickstart_msae.joblib"
        joblib.dump(sae, path)
        print(f"\nsaved the fitted model to {path}")


if __name__ == "__main__":
    main()
