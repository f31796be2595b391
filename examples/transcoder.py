"""Predict M1 activity from PMd activity with a MatryoshkaTranscoder.

In the simulated session every unit belongs to ``M1`` or ``PMd``
(``recording.units["electrode_group"]``), and both areas are driven by the
same hidden features: movement-tuned ones load mostly on M1, preparatory
ones mostly on PMd. A ``MatryoshkaTranscoder`` encodes the PMd counts of
each 50 ms bin into a few active latents (``fit(X, Y)`` with ``X`` = PMd,
``Y`` = M1) and decodes them into the M1 counts of the same bin.

It is fitted on the train trials and rated on the held-out trials (val and
test, from the ``split`` column of ``bin_metadata``) by R^2 pooled over the
M1 units (``1 - SSE / SST`` over all entries, what ``score`` returns),
against two baselines: ridge regression on all PMd units (dense, linear)
and the train mean of each M1 unit (R^2 about 0). The R^2 of each nested
level of the transcoder shows how much of the prediction its first latents
carry. Single-bin counts are mostly Poisson noise, so even the simulation's
own expected counts reach an R^2 well below 1; that row is printed for
scale.

Data: the built-in simulated reaching session, bins inside trials.

Run: ``python examples/transcoder.py``
"""

import time

import numpy as np
import torch
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from sklearn_nldisco import MatryoshkaTranscoder
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata

SEED = 0


def pooled_r2(Y, Y_hat):
    """R^2 pooled over targets (weighted by their variance), as ``score`` reports it."""
    return r2_score(Y, Y_hat, multioutput="variance_weighted")


def main():
    torch.set_num_threads(1)
    recording, truth = make_reaching_session(n_units=100, n_trials=200, random_state=SEED)
    binner = SpikeBinner(bin_size=0.05, intervals=recording.trials, smooth_sigma=0.05)
    counts = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)
    area = recording.units["electrode_group"].to_numpy()
    X, Y = counts[:, area == "PMd"], counts[:, area == "M1"]
    train = (metadata["split"] == "train").to_numpy()
    print(f"simulated session: {X.shape[1]} PMd units -> {Y.shape[1]} M1 units, "
          f"{len(recording.trials)} trials; {train.sum():,} train bins, "
          f"{(~train).sum():,} held-out bins (val + test trials); seed {SEED}")

    transcoder = MatryoshkaTranscoder(n_latents=32, k=4, random_state=SEED)
    start = time.perf_counter()
    transcoder.fit(X[train], Y[train])
    fit_seconds = time.perf_counter() - start
    ridge = Ridge(alpha=1.0).fit(X[train], Y[train])
    mean = DummyRegressor(strategy="mean").fit(X[train], Y[train])
    codes = transcoder.transform(X[~train])
    print(f"MatryoshkaTranscoder(n_latents=32, k=4) fitted in {fit_seconds:.1f} s, "
          f"{transcoder.n_iter_} epochs; {np.count_nonzero(codes, axis=1).mean():.2f} "
          "active latents per held-out bin")

    Y_test = Y[~train]
    scores = {"transcoder, all latents": transcoder.score(X[~train], Y_test)}
    for level, size in enumerate(transcoder.level_sizes_[:-1]):
        scores[f"transcoder, level {level} (latents 0-{size - 1})"] = pooled_r2(
            Y_test, transcoder.predict(X[~train], level=level))
    scores[f"ridge regression ({X.shape[1]} PMd units)"] = pooled_r2(
        Y_test, ridge.predict(X[~train]))
    scores["train mean of each M1 unit"] = pooled_r2(Y_test, mean.predict(X[~train]))
    # For scale: the simulation's own expected counts, which know the hidden
    # features (single-bin counts are mostly Poisson noise).
    expected = truth.expected_counts(binner.bin_edges_)[:, area == "M1"]
    scores["simulation's expected counts (scale)"] = pooled_r2(Y_test, expected[~train])

    print("\nHeld-out R^2 of the M1 counts (pooled over units)")
    for name, value in scores.items():
        print(f"  {name:<38}{value:>8.3f}")

    r2_transcoder = scores["transcoder, all latents"]
    r2_ridge = scores[f"ridge regression ({X.shape[1]} PMd units)"]
    r2_mean = scores["train mean of each M1 unit"]
    # The example checks its own headline results.
    assert np.isclose(r2_transcoder, pooled_r2(Y_test, transcoder.predict(X[~train])))
    assert abs(r2_mean) < 0.05, "the train mean predicts nothing"
    assert r2_transcoder > r2_mean + 0.05, "PMd should predict part of M1"
    assert r2_transcoder > r2_ridge - 0.02, "4 active latents should do as well as ridge"


if __name__ == "__main__":
    main()
