"""MatryoshkaSAE against PCA and NMF with the same number of active latents per bin.

All three models explain each 50 ms bin of spike counts with about ``k = 4``
numbers: the MSAE with its ``k`` active latents (out of 32), PCA and NMF with
``k`` components. They are fitted on the session's train trials and rated on
the held-out trials (``split`` other than "train", from ``bin_metadata``) by

* explained variance of the counts (``1 - SSE / SST`` over all entries);
* how many of the simulation's 12 known features they recover
  (``feature_recovery``): one latent (for PCA, one sign of a component)
  whose decoder direction has cosine >= 0.9 with the feature's loadings and
  whose most selective condition, among those of the feature's planted
  variable, is the planted one with q < 0.05 on the held-out trials.

Task phases are tested against circular shifts, the trial-level labels
(reach direction, speed class) against permuted trials, as in
``benchmarks/bench_feature_recovery.py``. That benchmark's session (200
units, 2000 trials, the whole session binned) is where the MSAE reaches its
90 % recovery target. This small session only shows the comparison: with
about ten held-out trials per reach direction, latents whose decoder
matches a direction feature are highly selective for their direction but
their q-values (corrected over every latent and condition) stay above 0.05,
so the recovery counts printed here are low; the ``cosine >= 0.9`` column
counts features matched by a decoder direction alone. PCA and NMF can match
at most ``k`` features, one per component.

Data: the built-in simulated reaching session, binned over the whole
session; a bin between two trials belongs to the trial before it.

Run: ``python examples/compare_baselines.py``
"""

import time

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import NMF, PCA

from sklearn_nldisco import MatryoshkaSAE, SelectivityScorer
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.evaluation import structure_control
from sklearn_nldisco.interpretation import feature_recovery
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata

SEED = 0
K = 4


def explained_variance(X, X_hat):
    """``1 - SSE / SST`` over all entries (the measure ``MatryoshkaSAE.score`` uses)."""
    return 1.0 - np.square(X - X_hat).sum() / np.square(X - X.mean(axis=0)).sum()


def trial_split(metadata, trials):
    """Each bin's ``split``: its trial's, or that of the trial that started last before it."""
    starts = trials["start_time"].to_numpy()
    centres = (metadata["bin_start"] + metadata["bin_stop"]).to_numpy() / 2
    owner = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, None)
    split = trials["split"].to_numpy()[owner]
    inside = metadata["split"].notna().to_numpy()
    assert np.array_equal(split[inside], metadata["split"].to_numpy()[inside])
    return split


def main():
    torch.set_num_threads(1)
    recording, truth = make_reaching_session(n_units=80, n_trials=400, random_state=SEED)
    # The whole session is binned: the returns to the centre between trials
    # are the only movements where ``moving`` is on without a direction feature.
    binner = SpikeBinner(bin_size=0.05, smooth_sigma=0.05)
    counts = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)
    variables = truth.condition_variables(metadata)
    variables["trial_id"] = metadata["trial_id"]  # -1 outside trials
    # ``split`` is missing between trials: such a bin (return, rest) goes with
    # the trial that started last before it.
    split = trial_split(metadata, recording.trials)
    train = split == "train"
    X_train, X_test = counts[train], counts[~train]
    print(f"simulated session: {recording.n_units} units, {len(recording.trials)} trials, "
          f"{truth.n_features} known features; {len(X_train):,} train bins, "
          f"{len(X_test):,} held-out bins (val + test trials, and what follows them); seed {SEED} "
          "(simulation, models, null draws)")

    scorers = [
        SelectivityScorer(variables=["phase", "epoch"], random_state=SEED),
        SelectivityScorer(variables=["reach_direction", "reach_speed"], null="trial",
                          random_state=SEED),
    ]
    models = {
        f"MSAE (32 latents, k={K})": MatryoshkaSAE(n_latents=32, k=K, random_state=SEED),
        f"PCA ({K} components)": PCA(n_components=K, random_state=SEED),
        f"NMF ({K} components)": NMF(n_components=K, init="nndsvda", tol=1e-3, max_iter=500,
                                     random_state=SEED),
    }

    rows = []
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train)
        fit_seconds = time.perf_counter() - start
        codes = model.transform(X_test)
        if isinstance(model, MatryoshkaSAE):
            X_hat = model.inverse_transform(codes)
            decoder = model.components_ * model.target_scale_  # in count units
            active = np.count_nonzero(codes, axis=1).mean()
        else:
            X_hat = model.inverse_transform(codes)
            decoder = model.components_
            active = float(K)
        results = pd.concat([scorer.score_latents(codes, variables.loc[~train])
                             for scorer in scorers], ignore_index=True)
        table = feature_recovery(truth.feature_loadings, decoder, results,
                                 truth.planted_conditions,
                                 feature_names=truth.feature_names)
        # the control: the same model refitted on unit-shifted counts
        control = structure_control(model, X_train, X_test, random_state=SEED)
        rows.append({"model": name, "active per bin": active,
                     "held-out EV": explained_variance(X_test, X_hat),
                     "EV shifted": control.shifted,
                     "structure": explained_variance(X_test, X_hat) - control.shifted,
                     "recovered": int(table["recovered"].sum()),
                     "cosine >= 0.9": int((table["cosine"] >= 0.9).sum()),
                     "fit s": fit_seconds,
                     "features": ", ".join(table.loc[table["recovered"], "feature"])})

    summary = pd.DataFrame(rows)
    print()
    print(summary.drop(columns="features").to_string(
        index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nrecovered features:")
    for row in rows:
        print(f"  {row['model']:<26}{row['features'] or '-'}")

    msae, pca, nmf = rows
    # The example checks its own headline results.
    assert msae["structure"] > pca["structure"], "the MSAE should explain more structure than PCA"
    assert msae["structure"] > nmf["structure"], "the MSAE should explain more structure than NMF"
    assert msae["recovered"] >= pca["recovered"]
    assert msae["cosine >= 0.9"] > pca["cosine >= 0.9"], \
        "the MSAE's decoder should match more known features than PCA's components"
    assert msae["active per bin"] < 2 * K


if __name__ == "__main__":
    main()
