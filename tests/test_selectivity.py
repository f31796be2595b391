import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.datasets._simulate import make_reaching_session
from sklearn_nldisco.interpretation._conditions import discretise
from sklearn_nldisco.interpretation._selectivity import (
    SelectivityScorer,
    _beyond_reach,
    top_selective_latents,
)
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata


def block_labels(n_samples, n_conditions, mean_block, rng):
    """Conditions that hold for random stretches of time, like task phases."""
    lengths = rng.randint(mean_block // 2, 3 * mean_block // 2 + 1, size=n_samples)
    values = rng.randint(0, n_conditions, size=n_samples)
    return np.repeat(values, lengths)[:n_samples]


def bursty_latents(n_samples, n_latents, rng, rate=0.02, burst=8):
    """Independent non-negative latents active in bursts (autocorrelated)."""
    starts = rng.random_sample((n_samples, n_latents)) < rate
    active = np.zeros((n_samples, n_latents), dtype=bool)
    for offset in range(burst):
        active[offset:] |= starts[: n_samples - offset]
    return active * rng.exponential(1.0, size=(n_samples, n_latents))


def test_selectivity_formula_on_a_hand_made_example():
    metadata = pd.DataFrame({"phase": ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b"]})
    z = np.array([1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0])
    results = SelectivityScorer(n_permutations=5, random_state=0).score_latents(
        z[:, None], metadata)
    row_a = results[results["condition"] == "a"].iloc[0]
    row_b = results[results["condition"] == "b"].iloc[0]
    # P(active | a) = 2 / 4, P(active | b) = 1 / 6
    assert row_a["frac_during"] == 0.5
    assert row_a["frac_outside"] == pytest.approx(1 / 6)
    assert row_a["selectivity"] == pytest.approx(0.5 / (0.5 + 1 / 6))  # 0.75
    assert row_a["selectivity"] == pytest.approx(0.75)
    assert row_b["selectivity"] == pytest.approx(0.25)
    assert row_a["mean_during"] == pytest.approx(3 / 4)
    assert row_a["mean_outside"] == pytest.approx(3 / 6)
    assert row_a["n_during"] == 4
    assert list(results.columns[:4]) == ["latent", "sign", "variable", "condition"]


def test_effect_matches_roc_auc_score_with_ties_and_missing_values():
    rng = np.random.RandomState(0)
    n_samples = 300
    Z = rng.poisson(0.4, size=(n_samples, 4)).astype(float)  # many ties, zeros
    Z[:, 3] = rng.normal(size=n_samples)  # signed latent: ranks of each part
    speed = rng.normal(size=n_samples)
    speed[rng.random_sample(n_samples) < 0.2] = np.nan
    metadata = pd.DataFrame({"phase": rng.choice(["x", "y", "z"], n_samples), "speed": speed})
    scorer = SelectivityScorer(n_bins=3, n_permutations=3, signed=True, random_state=0)
    results = scorer.score_latents(Z, metadata)
    for variable in ["phase", "speed"]:
        conditions = discretise(metadata[variable], variable, is_angle=False, n_bins=3,
                                max_categories=64)
        labels, names = conditions.labels, conditions.names
        valid = labels >= 0
        for latent in range(4):
            for sign in (1, -1):
                part = np.maximum(sign * Z[:, latent], 0)
                for index, name in enumerate(names):
                    expected = roc_auc_score(labels[valid] == index, part[valid])
                    row = results[(results["latent"] == latent) & (results["sign"] == sign)
                                  & (results["variable"] == variable)
                                  & (results["condition"] == name)]
                    assert row["effect"].item() == pytest.approx(expected, abs=1e-12)
                    in_c = valid & (labels == index)
                    assert row["mean_during"].item() == pytest.approx(part[in_c].mean())


def test_planted_latent_is_found_and_ranked_first():
    rng = np.random.RandomState(1)
    n_samples = 4000
    phase = block_labels(n_samples, 5, 20, rng)
    Z = bursty_latents(n_samples, 20, rng)
    Z[:, 7] = np.where((phase == 3) & (rng.random_sample(n_samples) < 0.6), 2.0, 0.0)
    metadata = pd.DataFrame({"phase": phase})
    fixed = SelectivityScorer(max_permutations=200, random_state=0)
    empirical = fixed.score_latents(sparse.csr_matrix(Z), metadata)
    planted = empirical[(empirical["latent"] == 7) & (empirical["condition"] == 3)].iloc[0]
    assert planted["selectivity"] == 1.0
    # 200 draws, none reaching it: the smallest p, too coarse for 100 tests
    assert planted["n_draws"] == 200
    assert planted["p"] == pytest.approx(1 / 201)
    assert planted["q"] == pytest.approx(100 / 201)
    # the adaptive draws go on for this pair only, here through all 3,999 shifts
    scorer = SelectivityScorer(random_state=0)
    results = scorer.score_latents(sparse.csr_matrix(Z), metadata)
    planted = results[(results["latent"] == 7) & (results["condition"] == 3)].iloc[0]
    assert planted["n_draws"] == n_samples - 1
    assert planted["p"] == pytest.approx(1 / n_samples)
    assert planted["q"] < 0.05
    assert planted["effect"] > 0.7
    assert results["n_draws"].median() <= 400
    top = top_selective_latents(results, n_top=1)
    assert top.loc[top["condition"] == 3, "latent"].item() == 7
    significant = results[results["q"] < 0.05]
    assert set(significant["latent"]) == {7}
    gaussian = scorer.set_params(p_value="gaussian").score_latents(Z, metadata)
    assert (gaussian["n_draws"][gaussian["p"].notna()] == 200).all()
    assert set(gaussian.loc[gaussian["q"] < 0.05, "latent"]) == {7}


def test_adaptive_draws_find_a_direction_latent_that_the_former_default_missed():
    """Direction is defined during movements only; a latent fires through half
    of the movements towards one target and nowhere else. The former default
    (a Gaussian tail over 200 circular shifts of all bins, which land the
    latent's bins on undefined direction as often as not) gave it q = 0.15."""
    rng = np.random.RandomState(0)
    n_samples = 8000
    lengths = rng.randint(4, 13, size=n_samples)
    movement = np.repeat(np.arange(n_samples), lengths)[:n_samples]
    moving = movement % 2 == 1
    target = rng.randint(0, 8, size=n_samples)[movement]
    metadata = pd.DataFrame({"direction_deg": np.where(moving, 45.0 * target - 179.0,
                                                       np.nan)})
    Z = bursty_latents(n_samples, 10, rng, rate=0.01)
    chosen = rng.random_sample(n_samples)[movement] < 0.5
    Z[:, 0] = (moving & (target == 4) & chosen) * 1.0
    scorer = SelectivityScorer(n_bins=8, random_state=0)
    results = scorer.score_latents(Z, metadata)
    planted = results[(results["latent"] == 0) & (results["condition"] == "[0, 45)")].iloc[0]
    assert planted["selectivity"] == 1.0 and planted["frac_during"] > 0.45
    # every shift of the 4,008 moving bins drawn, none reaching it
    assert planted["n_draws"] == int(metadata["direction_deg"].notna().sum()) - 1
    assert planted["q"] < 0.05
    assert (results["q"] < 0.05).sum() == 1
    # 200 draws cannot resolve it among 80 tests
    fixed = scorer.set_params(max_permutations=200).score_latents(Z, metadata)
    assert not (fixed["q"] < 0.05).any()


def test_pairs_stop_drawing_once_benjamini_hochberg_cannot_reach_them():
    exceedances = np.array([[0, 5, 50, 3]])
    n_draws = np.array([[200, 200, 200, 1000]])
    is_open = np.array([[True, True, True, False]])
    tested = np.ones((1, 4), dtype=bool)
    # best cases 1e-4, ~0.002, ~0.15 and 0.004 (closed): Benjamini-Hochberg
    # could reject at most 3 pairs, none above 0.05 * 3 / 4
    stop = _beyond_reach(is_open, exceedances, n_draws, tested, 10_000, alpha=0.05)
    assert stop.tolist() == [[False, False, True, False]]
    # with many more tests the second pair is beyond reach as well
    many = np.ones((1, 400), dtype=bool)
    wide = _beyond_reach(np.pad(is_open, ((0, 0), (0, 396))),
                         np.pad(exceedances, ((0, 0), (0, 396)), constant_values=100),
                         np.pad(n_draws, ((0, 0), (0, 396)), constant_values=200), many,
                         10_000, alpha=0.05)
    assert wide[0, :4].tolist() == [False, True, True, False]


def test_exhaustive_circular_null_is_the_exact_test_over_the_defined_bins():
    rng = np.random.RandomState(12)
    n_samples = 240
    speed = np.abs(np.cumsum(rng.normal(size=n_samples)))
    phase = block_labels(n_samples, 3, 10, rng)
    # direction is defined on 150 of the bins
    direction = np.where(rng.random_sample(n_samples) < 0.625,
                         rng.uniform(-180, 180, n_samples), np.nan)
    metadata = pd.DataFrame({"phase": phase, "direction_deg": direction})
    Z = bursty_latents(n_samples, 6, rng, rate=0.05, burst=4)
    Z[:, 0] += (phase == 2) * (speed > np.median(speed))
    scorer = SelectivityScorer(n_bins=4, n_permutations=5000, max_permutations=5000,
                               random_state=0)
    results = scorer.score_latents(Z, metadata)
    for variable in ("phase", "direction_deg"):
        conditions = discretise(metadata[variable], variable,
                                is_angle=variable == "direction_deg", n_bins=4,
                                max_categories=64)
        defined = conditions.labels >= 0
        labels = conditions.labels[defined]
        n_defined = int(defined.sum())
        for latent in range(6):
            active = (Z[:, latent] > 0)[defined]
            for index, name in enumerate(conditions.names):
                row = results[(results["latent"] == latent) & (results["variable"] == variable)
                              & (results["condition"] == name)].iloc[0]
                observed = np.sum(active & (labels == index))
                if not active.any() or observed == 0:
                    continue
                shifted = [np.sum(np.roll(active, shift) & (labels == index))
                           for shift in range(1, n_defined)]
                expected = (1 + np.sum(np.asarray(shifted) >= observed)) / n_defined
                assert row["n_draws"] == n_defined - 1
                assert row["p"] == pytest.approx(expected)


@pytest.mark.parametrize("null", ["circular", "trial"])
def test_activity_where_a_variable_is_undefined_leaves_its_test_unchanged(null):
    rng = np.random.RandomState(13)
    metadata = trial_session(rng, n_trials=80)
    n_samples = len(metadata)
    moving = rng.random_sample(n_samples) < 0.4
    metadata["direction"] = pd.array(np.where(moving, metadata["trial_type"], -1),
                                      dtype="Int64")
    metadata.loc[~moving, "direction"] = pd.NA
    Z = bursty_latents(n_samples, 12, rng, rate=0.05)
    Z[:, 0] += (metadata["trial_type"] == 1).to_numpy()
    scorer = SelectivityScorer(variables=["direction"], null=null, dense=False,
                               random_state=0)
    results = scorer.score_latents(Z, metadata)
    # more activity where direction is missing: the test of direction is the same
    busier = Z + (~moving)[:, None] * rng.exponential(size=Z.shape)
    changed = scorer.score_latents(busier, metadata)
    columns = ["selectivity", "frac_during", "frac_outside", "n_draws", "p", "q"]
    pd.testing.assert_frame_equal(changed[columns], results[columns])
    planted = (results["latent"] == 0) & (results["condition"] == 1)
    assert results.loc[planted, "p"].item() == results["p"].min() < 0.01


def test_independent_latents_give_calibrated_p_values_and_few_discoveries():
    rng = np.random.RandomState(2)
    n_samples = 3000
    speed = np.abs(np.cumsum(rng.normal(size=n_samples)))
    metadata = pd.DataFrame({
        "phase": block_labels(n_samples, 4, 30, rng),
        "speed": speed,
        # defined at a third of the bins
        "direction_deg": np.where(speed > np.quantile(speed, 2 / 3),
                                  np.degrees(np.cumsum(rng.normal(0, 0.2, n_samples))),
                                  np.nan),
    })
    Z = bursty_latents(n_samples, 150, rng)
    results = SelectivityScorer(n_bins=4, random_state=0).score_latents(Z, metadata)
    p_values = results["p"].to_numpy()
    assert len(p_values) == 150 * 12
    # one-sided p of autocorrelated latents against autocorrelated behaviour:
    # uniform under the circular-shift null, the lower tail included, where
    # the adaptive draws resolve it
    for level in (0.01, 0.05, 0.1, 0.25, 0.5):
        assert np.mean(p_values <= level) <= level + max(0.01, level / 5)
        assert np.mean(p_values <= level) >= level - max(0.01, level / 5)
    assert np.mean(results["q"] < 0.05) <= 0.002
    gaussian = SelectivityScorer(n_bins=4, n_permutations=99, random_state=0,
                                 p_value="gaussian").score_latents(Z, metadata)
    assert abs(np.mean(gaussian["p"] <= 0.1) - 0.1) < 0.06
    assert np.mean(gaussian["q"] < 0.05) <= 0.05 + 0.02


def test_shifted_metadata_gives_no_discovery_in_most_shuffles():
    """Under the complete null, Benjamini-Hochberg's FDR is the chance of any discovery."""
    rng = np.random.RandomState(14)
    n_samples = 2000
    metadata = pd.DataFrame({"phase": block_labels(n_samples, 5, 15, rng),
                             "speed": np.abs(np.cumsum(rng.normal(size=n_samples)))})
    Z = bursty_latents(n_samples, 40, rng, rate=0.01, burst=12)
    scorer = SelectivityScorer(n_bins=5, random_state=0)
    with_discovery = 0
    for _ in range(20):
        offset = rng.randint(n_samples // 4, 3 * n_samples // 4)
        shifted = metadata.iloc[np.roll(np.arange(n_samples), offset)]
        with_discovery += (scorer.score_latents(Z, shifted)["q"] < 0.05).any()
    assert with_discovery <= 2


def test_shuffled_metadata_gives_no_significant_results():
    rng = np.random.RandomState(3)
    n_samples = 2000
    phase = block_labels(n_samples, 4, 20, rng)
    Z = bursty_latents(n_samples, 10, rng)
    Z[:, 0] = (phase == 1) * 1.0
    metadata = pd.DataFrame({"phase": phase})
    scorer = SelectivityScorer(n_permutations=99, p_value="gaussian", random_state=0)
    assert (scorer.score_latents(Z, metadata)["q"] < 0.05).any()
    shuffled = pd.DataFrame({"phase": block_labels(n_samples, 4, 20, rng)})
    assert not (scorer.score_latents(Z, shuffled)["q"] < 0.05).any()


def trial_session(rng, n_trials=60):
    lengths = rng.randint(15, 30, size=n_trials)
    trial_id = np.repeat(np.arange(n_trials), lengths)
    trial_type = np.repeat(rng.randint(0, 4, size=n_trials), lengths)
    return pd.DataFrame({"trial_id": trial_id, "trial_type": trial_type})


def test_trial_null_finds_a_trial_level_latent_and_stays_calibrated():
    rng = np.random.RandomState(4)
    metadata = trial_session(rng)
    n_samples = len(metadata)
    Z = bursty_latents(n_samples, 100, rng)
    Z[:, 0] = np.where(metadata["trial_type"] == 2, rng.exponential(size=n_samples), 0.0)
    scorer = SelectivityScorer(null="trial", n_permutations=99, p_value="gaussian",
                               random_state=0)
    results = scorer.score_latents(Z, metadata)
    planted = results[(results["latent"] == 0) & (results["condition"] == 2)].iloc[0]
    assert planted["q"] < 0.05
    others = results[results["latent"] > 0]
    assert abs(np.mean(others["p"] <= 0.1) - 0.1) < 0.05
    assert np.mean(others["q"] < 0.05) <= 0.03
    # bins outside trials (missing ids) keep their own labels
    with_gap = metadata.astype({"trial_id": float})
    with_gap.loc[:10, "trial_id"] = np.nan
    gap_results = scorer.score_latents(Z, with_gap)
    assert len(gap_results) == len(results)
    # bin_metadata's -1 marks the same bins as outside trials, not as one trial
    marked = metadata.copy()
    marked.loc[:10, "trial_id"] = -1
    pd.testing.assert_frame_equal(scorer.score_latents(Z, marked), gap_results)
    lumped = metadata.copy()
    lumped.loc[:10, "trial_id"] = 10**6  # one extra trial made of those bins
    assert not scorer.score_latents(Z, lumped)["p"].equals(gap_results["p"])
    # interleaved trials (same first-appearance order, same order inside
    # each trial) give the same draws, hence the same results
    position = metadata.groupby("trial_id").cumcount().to_numpy()
    interleaved = np.lexsort((metadata["trial_id"].to_numpy(), position))
    pd.testing.assert_frame_equal(
        scorer.score_latents(Z[interleaved], metadata.iloc[interleaved]), results)


def test_signed_codes_test_each_sign_of_a_pca_component():
    rng = np.random.RandomState(5)
    n_samples = 2000
    phase = block_labels(n_samples, 3, 25, rng)
    X = rng.normal(size=(n_samples, 6))
    X[:, 0] += 4.0 * (phase == 0) - 4.0 * (phase == 2)
    Z = PCA(n_components=3, random_state=0).fit_transform(X)
    results = SelectivityScorer(n_permutations=99, p_value="gaussian",
                                random_state=0).score_latents(Z, pd.DataFrame({"phase": phase}))
    assert set(results["sign"]) == {1, -1}
    assert len(results) == 3 * 2 * 3
    # the first component separates phase 0 from phase 2, its sign is arbitrary
    sign_0 = 1 if results.query("latent == 0 and sign == 1 and condition == 0")[
        "selectivity"].item() > 0.5 else -1
    for sign, condition in ((sign_0, 0), (-sign_0, 2)):
        row = results.query(f"latent == 0 and sign == {sign} and condition == {condition}")
        assert row["selectivity"].item() > 0.9
        assert row["q"].item() < 0.05
    # active: |z| above its 90th percentile, about 10 % of the bins over both signs
    active_total = results.query("latent == 1").groupby("sign").apply(
        lambda rows: (rows["frac_during"] * rows["n_during"]).sum()).sum()
    assert active_total == pytest.approx(0.1 * n_samples, abs=2)
    with pytest.raises(ValueError, match="negative values but signed=False"):
        SelectivityScorer(signed=False).score_latents(Z, pd.DataFrame({"phase": phase}))


def test_dense_codes_are_active_above_their_own_quantile():
    rng = np.random.RandomState(15)
    n_samples = 3000
    phase = block_labels(n_samples, 4, 20, rng)
    metadata = pd.DataFrame({"phase": phase})
    # NMF-like codes, positive in every bin
    Z = 1.0 + rng.exponential(size=(n_samples, 3))
    Z[:, 0] += 3.0 * (phase == 2) * rng.random_sample(n_samples)
    Z[:, 2] = bursty_latents(n_samples, 1, rng)[:, 0]  # sparse: the threshold rule
    scorer = SelectivityScorer(random_state=0)
    results = scorer.score_latents(Z, metadata)
    above = results.groupby("latent")["active_above"].first()
    assert above[0] == pytest.approx(np.quantile(Z[:, 0], 0.9))
    assert above[1] == pytest.approx(np.quantile(Z[:, 1], 0.9))
    assert above[2] == 0.0
    planted = results[(results["latent"] == 0) & (results["condition"] == 2)].iloc[0]
    assert planted["selectivity"] > 0.8 and planted["q"] < 0.05
    assert planted["frac_during"] == pytest.approx(
        np.mean(Z[phase == 2, 0] > above[0]))
    assert not (results.loc[results["latent"] == 1, "q"] < 0.05).any()
    # active "everywhere" under the threshold rule: nothing to compare
    everywhere = SelectivityScorer(dense=False, random_state=0).score_latents(Z, metadata)
    row = everywhere[(everywhere["latent"] == 0) & (everywhere["condition"] == 2)].iloc[0]
    assert row["frac_during"] == 1.0 and row["selectivity"] == 0.5 and row["p"] == 1.0
    # the quantile rule for every latent, the sparse one included
    forced = SelectivityScorer(dense=True, activity_quantile=0.95,
                               random_state=0).score_latents(Z, metadata)
    assert forced.groupby("latent")["active_above"].first()[2] == pytest.approx(
        np.quantile(Z[:, 2], 0.95))
    # a binary code active in most bins: ties at the quantile are active
    binary = (phase != 0).astype(float)[:, None]
    tied = scorer.score_latents(binary, metadata)
    assert tied["active_above"].iloc[0] == 0.0
    assert tied.loc[tied["condition"] == 1, "frac_during"].item() == 1.0


def test_signed_quantile_is_a_deprecated_alias_of_activity_quantile():
    rng = np.random.RandomState(16)
    Z = rng.normal(size=(500, 2))
    metadata = pd.DataFrame({"phase": block_labels(500, 2, 10, rng)})
    expected = SelectivityScorer(activity_quantile=0.8, n_permutations=20,
                                 random_state=0).score_latents(Z, metadata)
    with pytest.warns(FutureWarning, match="signed_quantile is deprecated"):
        old = SelectivityScorer(signed_quantile=0.8, n_permutations=20,
                                random_state=0).score_latents(Z, metadata)
    pd.testing.assert_frame_equal(old, expected)


def test_a_zero_inflated_variable_gets_a_zero_condition():
    rng = np.random.RandomState(17)
    n_samples = 2000
    moving = block_labels(n_samples, 2, 20, rng) == 1
    # at rest the speed is numerical noise, as in the simulated session
    speed = np.where(moving, rng.gamma(2.0, 50.0, n_samples),
                     rng.uniform(1e-20, 1e-12, n_samples))
    Z = bursty_latents(n_samples, 3, rng)
    Z[:, 0] = (~moving) * 1.0
    results = SelectivityScorer(n_bins=5, random_state=0).score_latents(
        Z, pd.DataFrame({"speed": speed}))
    conditions = results.loc[results["latent"] == 0, "condition"].tolist()
    assert len(conditions) == 5 and conditions[0] == "[0, 0]"
    assert not any("e-" in name for name in conditions)
    at_rest = results[(results["latent"] == 0) & (results["condition"] == "[0, 0]")].iloc[0]
    assert at_rest["n_during"] == np.count_nonzero(~moving)
    assert at_rest["selectivity"] == 1.0 and at_rest["q"] < 0.05


def test_missing_values_count_neither_during_nor_outside():
    direction = np.array([10.0, 10.0, np.nan, np.nan, -100.0, -100.0, -100.0, 10.0])
    z = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    metadata = pd.DataFrame({"direction_deg": direction})
    results = SelectivityScorer(n_bins=4, n_permutations=5, random_state=0).score_latents(
        z[:, None], metadata)
    # empty sectors are dropped; 3 bins in [0, 90), 3 in [-180, -90)
    assert results["condition"].tolist() == ["[-180, -90)", "[0, 90)"]
    row = results[results["condition"] == "[0, 90)"].iloc[0]
    assert row["frac_during"] == pytest.approx(1 / 3)
    assert row["frac_outside"] == pytest.approx(1 / 3)
    assert row["selectivity"] == pytest.approx(0.5)
    assert row["n_during"] == 3


def test_sparse_and_dense_codes_agree_and_results_are_deterministic():
    rng = np.random.RandomState(6)
    n_samples = 1500
    metadata = pd.DataFrame({"phase": block_labels(n_samples, 3, 20, rng),
                             "speed": rng.random_sample(n_samples)})
    Z = bursty_latents(n_samples, 12, rng)
    scorer = SelectivityScorer(n_bins=5, n_permutations=50, random_state=7)
    dense = scorer.score_latents(Z, metadata)
    pd.testing.assert_frame_equal(dense, scorer.score_latents(sparse.csr_matrix(Z), metadata))
    pd.testing.assert_frame_equal(dense, scorer.score_latents(Z, metadata))
    other = SelectivityScorer(n_bins=5, n_permutations=50, random_state=8)
    assert not np.array_equal(dense["p"], other.score_latents(Z, metadata)["p"])
    # the metadata index is ignored
    shifted = metadata.set_index(metadata.index + 1000)
    pd.testing.assert_frame_equal(dense, scorer.score_latents(Z, shifted))


def test_levels_filter_and_ranking():
    rng = np.random.RandomState(7)
    n_samples = 1000
    phase = block_labels(n_samples, 2, 20, rng)
    Z = bursty_latents(n_samples, 8, rng)
    Z[:, 5] = (phase == 1) * 1.0
    scorer = SelectivityScorer(n_permutations=50, level_sizes=(2, 4, 8), p_value="gaussian",
                               random_state=0)
    results = scorer.score_latents(Z, pd.DataFrame({"phase": phase}))
    assert results.groupby("latent")["level"].first().tolist() == [0, 0, 1, 1, 2, 2, 2, 2]
    top = top_selective_latents(results, n_top=3, min_activation_frac=0.05)
    assert top.groupby("condition").size().tolist() == [3, 3]
    assert top.loc[top["condition"] == 1].iloc[0]["latent"] == 5
    assert (top["frac_during"] >= 0.05).all()
    assert top["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    strict = top_selective_latents(results, min_activation_frac=0.0, alpha=0.05)
    assert (strict["q"] < 0.05).all()
    assert len(strict) < len(top_selective_latents(results, min_activation_frac=0.0))
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\]"):
        top_selective_latents(results, alpha=0.0)
    assert scorer.score_from_results(results, n_latents=8) == pytest.approx(1 / 8)
    with pytest.raises(ValueError, match="level_sizes=.* must be strictly increasing"):
        scorer.score_latents(Z, pd.DataFrame({"phase": phase}), level_sizes=(4, 2))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_permutations": 0}, "'n_permutations' parameter of SelectivityScorer must be"),
        ({"max_permutations": 100}, "max_permutations must be at least n_permutations=200"),
        ({"null": "shuffle"}, "'null' parameter of SelectivityScorer must be a str among"),
        ({"variables": ["nope"]}, r"variables \['nope'\] are not columns"),
        ({"variables": "phase"}, "'variables' parameter of SelectivityScorer must be"),
        ({"min_shift": 600}, "min_shift=600 leaves no circular shift for the 1000 bins "
                             "where 'phase' is defined"),
        ({"null": "trial", "trial_column": "trial"}, "needs the trial column 'trial'"),
        ({"n_bins": 1}, "'n_bins' parameter of SelectivityScorer must be"),
        ({"n_bins": {"speed": 1}}, "n_bins must be an int >= 2"),
        ({"p_value": "exact"}, "'p_value' parameter of SelectivityScorer must be a str among"),
        ({"dense": "yes"}, "'dense' parameter of SelectivityScorer must be"),
        ({"activity_quantile": 1.5}, "'activity_quantile' parameter of SelectivityScorer"),
        ({"alpha": 0.0}, "'alpha' parameter of SelectivityScorer must be"),
        ({"activity_threshold": np.nan}, "'activity_threshold' parameter"),
        ({"activity_threshold": np.inf}, "'activity_threshold' parameter"),
    ],
)
def test_parameter_errors_name_the_argument(params, match):
    metadata = pd.DataFrame({"phase": np.arange(1000) % 3, "speed": np.arange(1000.0)})
    Z = np.abs(np.random.RandomState(0).normal(size=(1000, 2)))
    with pytest.raises(ValueError, match=match):
        SelectivityScorer(**params).score_latents(Z, metadata)


def test_input_errors():
    scorer = SelectivityScorer(n_permutations=5)
    Z = np.ones((10, 2))
    with pytest.raises(ValueError, match="metadata has 9 rows but the activations have 10"):
        scorer.score_latents(Z, pd.DataFrame({"phase": np.arange(9) % 2}))
    with pytest.raises(TypeError, match="metadata must be a pandas DataFrame"):
        scorer.score_latents(Z, np.arange(10))
    with pytest.raises(ValueError, match="no metadata variable has two or more conditions"):
        scorer.score_latents(Z, pd.DataFrame({"phase": ["a"] * 10}))
    with pytest.raises(ValueError, match="more than max_categories=3"):
        SelectivityScorer(max_categories=3, n_permutations=5).score_latents(
            Z, pd.DataFrame({"name": list("abcdeabcde")}))
    with pytest.raises(TypeError, match="needs the per-bin metadata DataFrame as y"):
        scorer(None, Z, None)


def test_scorer_selects_models_in_a_grid_search_with_trial_groups():
    recording, _ = make_reaching_session(n_units=30, n_trials=40, random_state=0)
    binner = SpikeBinner(bin_size=0.05, intervals=recording.trials)
    X = binner.fit_transform(recording.spike_times)
    metadata = bin_metadata(binner, recording)
    scorer = SelectivityScorer(variables=["phase", "trial_type", "speed", "direction_deg"],
                               n_bins=6, n_permutations=49, p_value="gaussian",
                               random_state=0)
    search = GridSearchCV(
        MatryoshkaSAE(max_iter=5, k=2, batch_size=256, random_state=0),
        {"n_latents": [16, 32]},
        scoring=scorer,
        cv=GroupKFold(n_splits=2),
        error_score="raise",
    )
    search.fit(X, metadata, groups=metadata["trial_id"])
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.max() > 0  # simulated movement features are found
    assert search.best_params_["n_latents"] in (16, 32)
    # the score is the fraction of selective latents of the fitted model
    model = search.best_estimator_
    results = scorer.score_latents(model.transform(X), metadata,
                                   level_sizes=model.level_sizes_)
    assert "level" in results.columns
    assert scorer(model, X, metadata) == scorer.score_from_results(results, model.n_latents)


@pytest.fixture(scope="module")
def fitted_session():
    """A small simulated session, its metadata and the codes of a fitted MSAE."""
    recording, _ = make_reaching_session(n_units=100, n_trials=320, random_state=7)
    binner = SpikeBinner(bin_size=0.05, smooth_sigma=0.05)
    X = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)
    sae = MatryoshkaSAE(n_latents=32, k=4, level_sizes=(4, 16, 32), max_iter=30,
                        random_state=0).fit(X)
    return metadata, sae.transform(X)


# the fixture simulates a session and fits a model for 30 epochs: slow
@pytest.mark.slow
def test_shuffled_metadata_of_a_fitted_model_gives_no_more_discoveries_than_the_fdr(
        fitted_session):
    metadata, codes = fitted_session
    variables = ["phase", "trial_type", "speed", "direction_deg"]
    scorer = SelectivityScorer(variables=variables, n_bins=6, random_state=0)
    real = scorer.score_latents(codes, metadata)
    n_tested = real["q"].notna().sum()
    # the real metadata: the model's latents are selective for the task
    assert (real["q"] < 0.05).sum() >= 20
    rng = np.random.RandomState(0)
    fractions = []
    for _ in range(5):
        # shift the metadata, as a whole, far from its own alignment: each
        # variable keeps its time structure, the link to the latents is gone
        offset = rng.randint(len(metadata) // 4, 3 * len(metadata) // 4)
        shifted = metadata.iloc[np.roll(np.arange(len(metadata)), offset)]
        results = scorer.score_latents(codes, shifted.reset_index(drop=True))
        assert results["q"].notna().sum() >= n_tested // 2
        fractions.append(np.mean(results["q"] < 0.05))
    # Benjamini-Hochberg at 0.05 under a complete null: discoveries are rare
    assert np.mean(fractions) <= 0.05
    assert max(fractions) <= 0.1


@pytest.mark.slow
def test_permuted_trial_labels_give_no_more_discoveries_than_the_fdr(fitted_session):
    metadata, codes = fitted_session
    scorer = SelectivityScorer(variables=["trial_type"], null="trial", random_state=0)
    real = scorer.score_latents(codes, metadata)
    assert (real["q"] < 0.05).any()  # direction-tuned latents are found in the real labels
    rng = np.random.RandomState(1)
    in_trial = metadata["trial_id"] >= 0
    trial_types = metadata[in_trial].groupby("trial_id")["trial_type"].first()
    fractions = []
    for _ in range(5):
        relabel = pd.Series(rng.permutation(trial_types.to_numpy()), index=trial_types.index)
        permuted = metadata.copy()
        permuted.loc[in_trial, "trial_type"] = metadata.loc[in_trial, "trial_id"].map(relabel)
        fractions.append(np.mean(scorer.score_latents(codes, permuted)["q"] < 0.05))
    assert np.mean(fractions) <= 0.05
    assert max(fractions) <= 0.1


def test_selective_rows_are_those_the_score_counts():
    results = pd.DataFrame({
        "latent": [0, 0, 1, 2, 3],
        "q": [0.01, 0.2, 0.01, 0.01, np.nan],
        "selectivity": [0.7, 0.9, 0.55, 0.8, 0.9],
        "frac_during": [0.2, 0.5, 0.5, 0.05, 0.5],
    })
    scorer = SelectivityScorer()
    assert scorer.selective(results).tolist() == [True, False, False, False, False]
    assert scorer.score_from_results(results, n_latents=4) == 0.25
    loose = SelectivityScorer(min_selectivity=0.5, min_activation_frac=0.0)
    assert loose.selective(results).tolist() == [True, False, True, True, False]
    assert loose.score_from_results(results, n_latents=4) == 0.75
