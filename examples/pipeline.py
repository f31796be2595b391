"""Spike trains in, sparse codes out: one scikit-learn Pipeline, saved and reloaded.

``SpikeBinner`` takes spike trains (a ``Recording``, or a list of
spike-time arrays, one per unit), not a 2-D array, so it can be the first
step of a ``Pipeline`` whose last step is a ``MatryoshkaSAE``:
``pipe.fit(recording)`` bins the spikes and fits the autoencoder,
``pipe.transform(recording)`` gives the sparse codes (bins x latents) and
``pipe.score(recording)`` the explained variance of the binned counts.

The binner's grid of bins is fixed at ``fit``: here the session's train
trials. To score the fitted autoencoder on the test trials, a second
pipeline puts a binner laid out on the test trials in front of the same
fitted autoencoder. Finally the whole fitted pipeline is saved with joblib
and loaded again; the reloaded pipeline gives identical codes.

Data: the built-in simulated reaching session (``make_reaching_session``).

Run: ``python examples/pipeline.py``
"""

import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.pipeline import Pipeline

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.preprocessing import SpikeBinner

SEED = 0


def main():
    torch.set_num_threads(1)
    recording, _ = make_reaching_session(n_units=60, n_trials=120, random_state=SEED)
    split = recording.trials["split"]
    train_trials = recording.trials[split == "train"]
    test_trials = recording.trials[split == "test"]
    print(f"simulated session: {recording.n_units} units, {len(recording.trials)} trials "
          f"({len(train_trials)} train, {len(test_trials)} test), seed {SEED}")

    pipe = Pipeline([
        ("bin", SpikeBinner(bin_size=0.05, intervals=train_trials, smooth_sigma=0.05)),
        ("sae", MatryoshkaSAE(n_latents=32, k=4, random_state=SEED)),
    ])
    start = time.perf_counter()
    pipe.fit(recording)  # spike trains in: the binner makes the samples
    print(f"pipe.fit(recording) in {time.perf_counter() - start:.1f} s: "
          f"{len(pipe['bin'].bin_edges_):,} bins of 50 ms on the train trials, "
          f"{pipe['sae'].n_iter_} epochs ({pipe['sae'].stop_reason_})")

    codes = pipe.transform(recording)
    active = np.count_nonzero(codes, axis=1)
    print(f"pipe.transform(recording): codes {codes.shape}, "
          f"{active.mean():.2f} active latents per bin on average")

    # The same fitted autoencoder behind a binner laid out on the test trials.
    heldout = Pipeline([
        ("bin", SpikeBinner(bin_size=0.05, intervals=test_trials,
                            smooth_sigma=0.05).fit(recording)),
        ("sae", pipe["sae"]),
    ])
    train_score = pipe.score(recording)
    test_score = heldout.score(recording)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pipeline.joblib"
        joblib.dump(pipe, path)
        size_kb = path.stat().st_size / 1024
        reloaded = joblib.load(path)
    reloaded_codes = reloaded.transform(recording)
    identical = np.array_equal(codes, reloaded_codes)

    print("\n  what                                   value")
    print(f"  {'explained variance, train trials':<36}{train_score:>8.3f}")
    print(f"  {'explained variance, test trials':<36}{test_score:>8.3f}")
    print(f"  {'saved pipeline (joblib), KiB':<36}{size_kb:>8.0f}")
    print(f"  {'reloaded codes identical':<36}{identical!s:>8}")

    # The example checks its own headline results.
    assert codes.shape == (len(pipe["bin"].bin_edges_), 32)
    assert np.all(codes >= 0) and 2.0 <= active.mean() <= 8.0
    # masked-unit training explains the population's part of each unit
    # (about 0.23 here), not each unit's own noise
    assert test_score > 0.15, "the autoencoder should explain held-out trials"
    assert train_score - test_score < 0.1, "train and test trials are alike"
    assert identical, "a reloaded pipeline must give the same codes"
    assert reloaded.score(recording) == train_score


if __name__ == "__main__":
    main()
