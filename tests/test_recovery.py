"""Recovery of planted features: the criterion, the planted variables, and the pipeline."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.decomposition import PCA

from sklearn_nldisco import MatryoshkaSAE, SelectivityScorer
from sklearn_nldisco.datasets import make_reaching_session
from sklearn_nldisco.interpretation import feature_recovery
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata


def _results(rows):
    """A score_latents-like table from (latent, sign, variable, condition, selectivity, q)."""
    return pd.DataFrame(rows, columns=["latent", "sign", "variable", "condition",
                                       "selectivity", "q"])


TWO_FEATURES = {"moving": ("phase", "move"), "resting": ("phase", "rest")}


def test_recovered_needs_cosine_top_condition_and_q():
    loadings = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    components = np.array([[0.95, 0.3, 0.0],    # cos 0.954 with moving
                           [0.0, 1.0, 1.0],     # cos 0.707 with resting
                           [0.1, 1.0, 0.0]])    # cos 0.995 with resting
    results = _results([
        (0, 1, "phase", "rest", 0.2, 0.5), (0, 1, "phase", "move", 0.9, 0.001),
        (1, 1, "phase", "rest", 0.9, 0.001), (1, 1, "phase", "move", 0.1, 0.9),
        # latent 2 matches resting by weights but prefers "move"
        (2, 1, "phase", "rest", 0.6, 0.001), (2, 1, "phase", "move", 0.7, 0.001),
    ])
    table = feature_recovery(loadings, components, results, TWO_FEATURES)
    assert table["feature"].tolist() == ["moving", "resting"]
    moving, resting = table.iloc[0], table.iloc[1]
    assert moving["recovered"] and moving["latent"] == 0
    assert moving["cosine"] == pytest.approx(0.95 / np.hypot(0.95, 0.3))
    # latent 1 has the behaviour but not the weights, latent 2 the weights only
    assert not resting["recovered"]
    assert resting["latent"] == 2 and resting["top_condition"] == "move"
    assert resting["selectivity"] == pytest.approx(0.6)

    # the same latent with a q-value above alpha is not recovered either
    weak = results.copy()
    weak.loc[(weak["latent"] == 0) & (weak["condition"] == "move"), "q"] = 0.2
    assert not feature_recovery(loadings, components, weak, TWO_FEATURES)["recovered"][0]
    assert feature_recovery(loadings, components, weak, TWO_FEATURES,
                            alpha=0.25)["recovered"][0]
    # a lower cosine bar lets latent 1 recover resting
    loose = feature_recovery(loadings, components, results, TWO_FEATURES, min_cosine=0.7)
    assert loose["recovered"].tolist() == [True, True]
    assert loose["latent"].tolist() == [0, 1]


def test_later_candidate_is_found_and_other_variables_are_ignored():
    loadings = np.array([[1.0, 0.0]])
    components = np.array([[1.0, 0.05], [1.0, 0.2], [0.0, 1.0]])
    results = _results([
        # the best-cosine latent prefers rest; the second one prefers move
        (0, 1, "phase", "rest", 0.8, 0.01), (0, 1, "phase", "move", 0.5, 0.01),
        (1, 1, "phase", "rest", 0.3, 0.01), (1, 1, "phase", "move", 0.9, 0.01),
        # a higher selectivity in another variable does not matter
        (1, 1, "speed", "high", 0.99, 0.001),
    ])
    table = feature_recovery(loadings, components, results, {"moving": ("phase", "move")})
    assert table["recovered"][0] and table["latent"][0] == 1


def test_signed_models_match_the_sign_of_the_component():
    loadings = np.array([[1.0, 1.0, 0.0]])
    components = np.array([[-1.0, -1.0, 0.1]])  # the negative part carries the feature
    results = _results([
        (0, 1, "phase", "move", 0.1, 0.9), (0, 1, "phase", "rest", 0.9, 0.001),
        (0, -1, "phase", "move", 0.95, 0.001), (0, -1, "phase", "rest", 0.05, 0.9),
    ])
    table = feature_recovery(loadings, components, results, {"moving": ("phase", "move")})
    assert table["recovered"][0]
    assert table["sign"][0] == -1 and table["cosine"][0] > 0.99


def test_bad_input_is_refused():
    loadings, components = np.eye(2), np.eye(2)
    results = _results([(0, 1, "phase", "move", 0.9, 0.01), (1, 1, "phase", "rest", 0.9, 0.01)])
    with pytest.raises(ValueError, match="same number of units"):
        feature_recovery(loadings, np.eye(3), results, TWO_FEATURES)
    with pytest.raises(ValueError, match="no planted condition"):
        feature_recovery(loadings, components, results, TWO_FEATURES,
                         feature_names=["moving", "jumping"])
    with pytest.raises(ValueError, match="no condition 'hold'"):
        feature_recovery(loadings, components, results,
                         {"moving": ("phase", "move"), "resting": ("phase", "hold")})
    with pytest.raises(ValueError, match="lacks the columns"):
        feature_recovery(loadings, components, results.drop(columns="q"), TWO_FEATURES)
    with pytest.raises(ValueError, match="min_cosine"):
        feature_recovery(loadings, components, results, TWO_FEATURES, min_cosine=2)
    with pytest.raises(ValueError, match="components has 1 rows"):
        feature_recovery(loadings[:, :1], np.ones((1, 1)), results,
                         TWO_FEATURES)


@pytest.fixture(scope="module")
def small_session():
    recording, truth = make_reaching_session(n_units=30, n_trials=48, random_state=3)
    binner = SpikeBinner(bin_size=0.05).fit(recording)
    metadata = bin_metadata(binner, recording)
    return recording, truth, metadata, truth.condition_variables(metadata)


def test_condition_variables_follow_the_trials(small_session):
    recording, truth, metadata, variables = small_session
    assert list(variables.columns) == ["phase", "epoch", "reach_direction", "reach_speed"]
    assert variables.index.equals(metadata.index)
    outside = (metadata["trial_id"] == -1).to_numpy()
    assert outside.any() and variables[outside].isna().all().all()
    moving = (metadata["phase"] == "movement").to_numpy()
    # direction and speed class exist exactly in the movement phase
    assert variables["reach_direction"].notna().to_numpy().tolist() == moving.tolist()
    assert variables["reach_speed"].notna().to_numpy().tolist() == moving.tolist()
    # the direction is each trial's target, named as in the feature names
    trial_direction = recording.trials["direction_deg"]
    expected = [f"{trial_direction[t]:g}" for t in metadata.loc[moving, "trial_id"]]
    assert variables.loc[moving, "reach_direction"].tolist() == expected
    assert {f"reach_{d}deg" for d in set(expected)} <= set(truth.feature_names)
    # preparation merges delay and reaction
    in_preparation = metadata["phase"].isin(["delay", "reaction"]).to_numpy()
    assert (variables["epoch"] == "preparation").to_numpy().tolist() == in_preparation.tolist()
    # "fast" trials are those with a peak binned speed above the median trial's
    peak = metadata["speed"].where(moving).groupby(metadata["trial_id"]).max()
    fast_trials = set(peak[peak > peak.median()].index)
    labelled = set(metadata.loc[moving & (variables["reach_speed"] == "fast").to_numpy(),
                                "trial_id"])
    assert labelled == fast_trials and 0 < len(fast_trials) < len(peak)
    # the planted conditions exist in these variables
    for name, (variable, condition) in truth.planted_conditions.items():
        assert (variables[variable] == condition).any(), name
    with pytest.raises(ValueError, match="lacks the columns"):
        truth.condition_variables(metadata.drop(columns="speed"))


def test_fast_feature_is_a_gain_on_fast_reaches(small_session):
    recording, truth, _, _ = small_session
    fast = truth.feature_activity[:, truth.feature_index("fast")]
    moving = truth.feature_activity[:, truth.feature_index("moving")]
    trials = recording.trials
    median_peak = 1.875 * 80.0 / 0.375
    for _, trial in trials.iterrows():
        during = ((truth.timestamps >= trial["move_onset_time"])
                  & (truth.timestamps < trial["move_end_time"]))
        gain = fast[during] / np.maximum(moving[during], 1e-12)
        active = moving[during] > 1e-6
        expected = np.clip((trial["peak_speed_mm_s"] - median_peak)
                           / (1.875 * 80.0 / 0.25 - median_peak), 0, 1)
        np.testing.assert_allclose(gain[active], expected, atol=1e-9)
    # nothing outside the outward reaches (returns included)
    reaching = np.zeros(len(fast), dtype=bool)
    for _, trial in trials.iterrows():
        reaching |= ((truth.timestamps >= trial["move_onset_time"])
                     & (truth.timestamps < trial["move_end_time"]))
    assert np.all(fast[~reaching] == 0)


@pytest.mark.slow
def test_pipeline_recovers_planted_features_and_pca_does_not():
    """bin -> MatryoshkaSAE -> SelectivityScorer on a simulated session (seed 0).

    Fit on the first 80 % of the bins, selectivity on the last 20 % (phases
    against circular shifts, trial-level labels against permuted trials); the
    same settings as
    ``benchmarks/bench_feature_recovery.py``.
    """
    torch.set_num_threads(1)
    recording, truth = make_reaching_session(n_units=200, n_trials=2000, random_state=0)
    binner = SpikeBinner(bin_size=0.05, smooth_sigma=0.05)
    counts = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)
    variables = truth.condition_variables(metadata)
    variables["trial_id"] = metadata["trial_id"]
    split = int(0.8 * len(counts))
    scorers = [SelectivityScorer(variables=["phase", "epoch"], random_state=0),
               SelectivityScorer(variables=["reach_direction", "reach_speed"], null="trial",
                                 random_state=0)]

    def recovery(decoder, codes):
        results = pd.concat([scorer.score_latents(codes, variables.iloc[split:])
                             for scorer in scorers], ignore_index=True)
        return feature_recovery(truth.feature_loadings, decoder, results,
                                truth.planted_conditions, feature_names=truth.feature_names)

    # with the defaults (masked-unit training): every planted feature has a
    # latent significant for its own condition (measured: 12 of 12; decoder
    # cosine 0.87-0.99 for ten of them, 0.53 for the speed gain "fast")
    masked = MatryoshkaSAE(n_latents=128, k=4, level_sizes=(4, 16, 128), random_state=0)
    masked.fit(counts[:split])
    masked_table = recovery(masked.components_ * masked.target_scale_,
                            masked.transform(counts[split:]))
    right = (masked_table["q"] < 0.05) & (
        masked_table["top_condition"].astype(str) == masked_table["condition"].astype(str))
    assert right.mean() >= 0.9, masked_table.to_string()
    assert masked_table["recovered"].mean() >= 0.75, masked_table.to_string()

    # without masking the decoder rows match the planted loadings closely
    sae = MatryoshkaSAE(n_latents=128, k=4, level_sizes=(4, 16, 128), mask_fraction=0.0,
                        random_state=0)
    sae.fit(counts[:split])
    table = recovery(sae.components_ * sae.target_scale_, sae.transform(counts[split:]))
    assert table["recovered"].mean() >= 0.9, table.to_string()
    found = table[table["recovered"]]
    assert (found["cosine"] >= 0.9).all() and (found["q"] < 0.05).all()
    assert (found["top_condition"] == found["condition"]).all()
    # the coarse features sit in the first level, the direction features later
    coarse = table.set_index("feature").loc[["moving", "delay"], "latent"]
    assert (coarse < 4).all()

    pca = PCA(n_components=truth.n_features, random_state=0).fit(counts[:split])
    pca_table = recovery(pca.components_, pca.transform(counts[split:]))
    assert pca_table["recovered"].sum() <= table["recovered"].sum() // 2
