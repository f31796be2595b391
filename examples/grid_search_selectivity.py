"""Choose k and the dictionary size by interpretability, with trial-grouped folds.

Reconstruction always prefers more latents and more active latents per bin;
``SelectivityScorer`` used as the ``scoring`` of ``GridSearchCV`` instead
rates each fitted model by the fraction of its latents that are
significantly selective (q < 0.05 against a circular-shift null, selectivity
>= 0.6, active in at least 10 % of the condition's bins) on the held-out
fold. Folds are whole trials (``GroupKFold`` on ``trial_id``), so no trial
has bins on both sides of a split.

Data: the built-in simulated reaching session, 50 ms bins inside trials,
with task phase, target and hand speed per bin.

Run: ``python examples/grid_search_selectivity.py``
"""

import time

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_nldisco import MatryoshkaSAE, SelectivityScorer
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata

SEED = 0


def main():
    torch.set_num_threads(1)
    recording, _ = make_reaching_session(n_units=80, n_trials=180, random_state=SEED)
    binner = SpikeBinner(bin_size=0.05, intervals=recording.trials, smooth_sigma=0.05)
    X = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)
    print(f"simulated session: {X.shape[1]} units, {len(recording.trials)} trials, "
          f"{len(X):,} bins (seed {SEED})")

    scorer = SelectivityScorer(variables=["phase", "trial_type", "speed"], n_bins=5,
                               n_permutations=100, random_state=SEED)
    search = GridSearchCV(
        MatryoshkaSAE(max_iter=30, random_state=SEED),
        {"k": [2, 4, 8], "n_latents": [16, 64]},
        scoring={"selectivity": scorer, "explained_variance": None},
        refit="selectivity",
        cv=GroupKFold(n_splits=3),
    )
    start = time.perf_counter()
    search.fit(X, metadata, groups=metadata["trial_id"])
    print(f"grid of {len(search.cv_results_['params'])} models x 3 trial-grouped folds "
          f"in {time.perf_counter() - start:.0f} s\n")

    table = pd.DataFrame({
        "k": search.cv_results_["param_k"],
        "n_latents": search.cv_results_["param_n_latents"],
        "selective fraction": search.cv_results_["mean_test_selectivity"],
        "(sd)": search.cv_results_["std_test_selectivity"],
        "explained variance": search.cv_results_["mean_test_explained_variance"],
    }).sort_values(["n_latents", "k"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    best = search.best_params_
    print(f"\nchosen by selectivity: k={best['k']}, n_latents={best['n_latents']}; "
          "reconstruction alone would pick k="
          f"{table.loc[table['explained variance'].idxmax(), 'k']}, n_latents="
          f"{table.loc[table['explained variance'].idxmax(), 'n_latents']}")

    scores = search.cv_results_["mean_test_selectivity"]
    assert np.all((scores >= 0) & (scores <= 1)) and scores.max() > 0
    assert hasattr(search.best_estimator_, "components_")


if __name__ == "__main__":
    main()
