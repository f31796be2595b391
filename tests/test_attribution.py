"""Tests for interpretation/_attribution.py: the units behind a latent."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.decomposition import NMF, PCA

from sklearn_nldisco.interpretation._attribution import (
    latent_units,
    ranking_agreement,
    top_units_table,
)

N_UNITS = 30
N_FEATURES = 4
UNITS_PER_FEATURE = 5


def planted(n_bins=3000, seed=0):
    """Poisson counts from a few sparse nonnegative features on disjoint units."""
    rng = np.random.default_rng(seed)
    loadings = np.zeros((N_FEATURES, N_UNITS))
    loaded = {}
    for feature in range(N_FEATURES):
        units = np.arange(UNITS_PER_FEATURE) + feature * UNITS_PER_FEATURE
        loaded[feature] = set(units.tolist())
        # Distinct loadings so the three rankings have an order to agree on.
        loadings[feature, units] = np.linspace(3.0, 1.0, UNITS_PER_FEATURE)
    activity = rng.exponential(1.0, (n_bins, N_FEATURES))
    activity *= rng.random((n_bins, N_FEATURES)) < 0.15
    rates = 0.5 + activity @ loadings
    X = rng.poisson(rates).astype(np.float64)
    return X, activity, loadings, loaded


def test_planted_truth_ranks_loaded_units_first_and_rankings_agree():
    X, activity, loadings, loaded = planted()
    for feature in range(N_FEATURES):
        units = latent_units(
            feature, X, activity, components=loadings, encoder=loadings.T,
            n_top=UNITS_PER_FEATURE,
        )
        assert list(units.columns) == [
            "latent", "unit", "decoder_weight", "encoder_weight", "activity_z",
            "decoder_rank", "encoder_rank", "activity_rank",
        ]
        assert len(units) == N_UNITS
        top = set(units.nsmallest(UNITS_PER_FEATURE, "activity_rank")["unit"])
        assert top == loaded[feature]
        agreement = units.attrs["agreement"]
        assert agreement["jaccard_decoder_activity"] == 1.0
        assert agreement["jaccard_encoder_activity"] == 1.0
        assert units.attrs["n_active_bins"] == int((activity[:, feature] > 0).sum())
        # Across the loaded units the activity order follows the loadings.
        loaded_rows = units[units["unit"].isin(loaded[feature])]
        assert loaded_rows["activity_rank"].tolist() == [1, 2, 3, 4, 5]
        assert agreement["spearman_decoder_encoder"] == pytest.approx(1.0)
        # Unloaded units tie at zero weight, which caps the correlation below 1.
        assert agreement["spearman_decoder_activity"] > 0.5


def test_activity_z_matches_definition():
    X, activity, loadings, _ = planted(n_bins=500)
    units = latent_units(2, X, activity, components=loadings)
    active = activity[:, 2] > 0
    expected = (X[active].mean(axis=0) - X.mean(axis=0)) / X.std(axis=0)
    np.testing.assert_allclose(units["activity_z"], expected)
    assert units["encoder_weight"].isna().all()
    assert units["encoder_rank"].isna().all()


def test_weights_only_without_X():
    X, activity, loadings, _ = planted(n_bins=300)
    with_data = latent_units(1, X, activity, components=loadings, encoder=loadings.T)
    without = latent_units(1, None, activity, components=loadings, encoder=loadings.T)
    assert without["activity_z"].isna().all()
    np.testing.assert_array_equal(without["decoder_rank"], with_data["decoder_rank"])
    np.testing.assert_array_equal(without["encoder_rank"], with_data["encoder_rank"])
    assert without.attrs["n_active_bins"] == with_data.attrs["n_active_bins"]
    with pytest.raises(ValueError, match="no weights to rank"):
        latent_units(1, None, activity)
    with pytest.raises(ValueError, match="codes is None"):
        latent_units(1, None, components=loadings)


def test_fitted_model_as_components_gives_codes_and_names():
    X, _, _, _ = planted(n_bins=300)
    frame = pd.DataFrame(X, columns=[f"cell{i}" for i in range(N_UNITS)])
    nmf = NMF(n_components=3, init="nndsvda", max_iter=200, random_state=0).fit(frame)
    units = latent_units(0, frame, components=nmf)
    explicit = latent_units(0, X, nmf.transform(frame), components=nmf.components_,
                            unit_names=frame.columns)
    pd.testing.assert_frame_equal(units, explicit)
    # without a DataFrame, the names come from the model's feature_names_in_
    named_by_model = latent_units(0, X, nmf.transform(frame), components=nmf)
    assert named_by_model["unit"].tolist() == list(frame.columns)


def test_sparse_inputs_match_dense():
    X, activity, loadings, _ = planted(n_bins=400)
    dense = latent_units(1, X, activity, components=loadings)
    from_sparse = latent_units(
        1, sparse.csr_matrix(X), sparse.csr_matrix(activity), components=loadings
    )
    pd.testing.assert_frame_equal(dense, from_sparse)


def test_activity_threshold_selects_strong_bins():
    X = np.array([[1.0, 0.0], [2.0, 0.0], [9.0, 1.0], [0.0, 0.0]])
    codes = np.array([[0.2], [0.4], [2.0], [0.0]])
    loose = latent_units(0, X, codes)
    strict = latent_units(0, X, codes, activity_threshold=1.0)
    assert loose.attrs["n_active_bins"] == 3
    assert strict.attrs["n_active_bins"] == 1
    expected = (X[2] - X.mean(axis=0)) / X.std(axis=0)
    np.testing.assert_allclose(strict["activity_z"], expected)


def test_constructed_disagreement_gives_low_agreement():
    rng = np.random.default_rng(1)
    n_bins, n_units = 2000, 20
    X = rng.poisson(2.0, (n_bins, n_units)).astype(np.float64)
    codes = (rng.random((n_bins, 1)) < 0.2).astype(np.float64)
    # Activity favours units 0..4 strongly and the rest by decreasing amounts.
    boost = np.linspace(6.0, 0.0, n_units)
    X[codes[:, 0] > 0] += rng.poisson(boost, (int(codes.sum()), n_units))
    decoder = boost[::-1][None, :]  # exactly reversed order
    encoder = rng.permutation(n_units)[:, None].astype(np.float64)
    units = latent_units(0, X, codes, components=decoder, encoder=encoder, n_top=5)
    agreement = units.attrs["agreement"]
    assert agreement["spearman_decoder_activity"] < -0.9
    assert agreement["jaccard_decoder_activity"] == 0.0
    assert abs(agreement["spearman_encoder_activity"]) < 0.6
    table = ranking_agreement(units, n_top=5)
    row = table[(table.ranking_a == "decoder") & (table.ranking_b == "activity")]
    assert row["spearman"].item() == pytest.approx(
        agreement["spearman_decoder_activity"]
    )
    assert row["n_units"].item() == n_units


def test_never_active_latent_warns_and_leaves_activity_nan():
    X, activity, loadings, _ = planted(n_bins=300)
    codes = np.hstack([activity, np.zeros((len(X), 1))])
    decoder = np.vstack([loadings, np.linspace(1.0, 0.0, N_UNITS)])
    with pytest.warns(UserWarning, match="never active"):
        units = latent_units(N_FEATURES, X, codes, components=decoder)
    assert units["activity_z"].isna().all()
    assert units["activity_rank"].isna().all()
    assert units["decoder_rank"].tolist() == list(range(1, N_UNITS + 1))
    assert units.attrs["n_active_bins"] == 0
    assert np.isnan(units.attrs["agreement"]["spearman_decoder_activity"])
    assert np.isnan(units.attrs["agreement"]["jaccard_decoder_activity"])


def test_pca_components_without_encoder():
    X, _, _, loaded = planted(n_bins=1500)
    pca = PCA(n_components=6, random_state=0).fit(X)
    units = latent_units(0, X, components=pca, absolute=True, n_top=5)
    assert units["encoder_weight"].isna().all()
    np.testing.assert_allclose(units["decoder_weight"], pca.components_[0])
    assert units["decoder_rank"].notna().all()
    assert np.isnan(units.attrs["agreement"]["spearman_decoder_encoder"])
    # Each PCA component spans loaded units only, not the baseline units.
    top = set(units.nsmallest(5, "decoder_rank")["unit"])
    assert top <= set().union(*loaded.values())


def test_nmf_recovers_planted_units():
    X, _, _, loaded = planted(n_bins=1500)
    nmf = NMF(n_components=N_FEATURES + 1, init="nndsvda", max_iter=400,
              random_state=0).fit(X)
    codes = nmf.transform(X)
    matched = []
    for latent in range(nmf.n_components_):
        units = latent_units(latent, X, codes, components=nmf,
                             n_top=UNITS_PER_FEATURE)
        top = set(units.nsmallest(UNITS_PER_FEATURE, "decoder_rank")["unit"])
        if top in loaded.values():
            matched.append(units.attrs["agreement"]["jaccard_decoder_activity"])
    assert len(matched) >= 3
    assert min(matched) >= 0.6


def test_unit_names_propagate():
    X, activity, loadings, _ = planted(n_bins=300)
    names = [f"cell{i:02d}" for i in range(N_UNITS)]
    explicit = latent_units(0, X, activity, components=loadings, unit_names=names)
    assert explicit["unit"].tolist() == names
    frame = pd.DataFrame(X, columns=names)
    from_frame = latent_units(0, frame, activity, components=loadings)
    assert from_frame["unit"].tolist() == names
    table = top_units_table([0, 1], frame, activity, components=loadings, n_top=3)
    assert set(table["unit"]) <= set(names)


def test_top_units_table_is_long_and_sorted():
    X, activity, loadings, loaded = planted(n_bins=1000)
    table = top_units_table(range(N_FEATURES), X, activity, components=loadings,
                            n_top=UNITS_PER_FEATURE)
    assert len(table) == N_FEATURES * UNITS_PER_FEATURE
    for feature, group in table.groupby("latent"):
        assert set(group["unit"]) == loaded[feature]
        assert group["activity_rank"].is_monotonic_increasing
    assert {"n_active_bins", "spearman_decoder_activity"} <= set(table.columns)
    by_decoder = top_units_table([0], X, activity, components=loadings, n_top=2,
                                 by="decoder")
    assert by_decoder["decoder_rank"].tolist() == [1, 2]


def test_top_units_table_skips_never_active_latent():
    X, activity, _, _ = planted(n_bins=200)
    codes = np.hstack([activity, np.zeros((len(X), 1))])
    with pytest.warns(UserWarning, match="never active"):
        table = top_units_table([0, N_FEATURES], X, codes, n_top=3)
    assert table["latent"].tolist() == [0, 0, 0]


# Decoder and activity rankings of a latent's units agree less under masked
# training (measured: Spearman 0.26-0.62 with mask_fraction=0.25, 0.75-0.78
# without): a masked latent's decoder row predicts its units from the others
# rather than copying the ones that drive it.
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("mask_fraction, min_agreement", [(0.0, 0.5), (0.25, 0.2)])
def test_matryoshka_sae_latent_matches_planted_feature(mask_fraction, min_agreement):
    from sklearn_nldisco.models import MatryoshkaSAE

    X, _, _, loaded = planted(n_bins=2000)
    model = MatryoshkaSAE(n_latents=16, k=2, max_iter=50, random_state=0,
                          mask_fraction=mask_fraction, device="cpu").fit(X)
    codes = model.transform(X)
    best = {}
    for latent in range(16):
        if not np.any(codes[:, latent] > 0):
            continue
        units = latent_units(latent, X, codes, components=model,
                             n_top=UNITS_PER_FEATURE)
        assert units["encoder_weight"].notna().all()
        top = set(units.nsmallest(UNITS_PER_FEATURE, "activity_rank")["unit"])
        for feature, members in loaded.items():
            overlap = len(top & members) / UNITS_PER_FEATURE
            if overlap > best.get(feature, (0.0,))[0]:
                best[feature] = (overlap, units.attrs["agreement"])
    # Most planted features have a latent whose active bins light up its units.
    recovered = [f for f, (overlap, _) in best.items() if overlap >= 0.8]
    assert len(recovered) >= 3
    for feature in recovered:
        agreement = best[feature][1]
        assert agreement["spearman_decoder_activity"] > min_agreement


def test_errors():
    X, activity, loadings, _ = planted(n_bins=100)
    with pytest.raises(ValueError, match="latent=4 is out of range"):
        latent_units(4, X, activity)
    with pytest.raises(ValueError, match="latent=-1 is out of range"):
        latent_units(-1, X, activity)
    with pytest.raises(ValueError, match="latent must be an integer"):
        latent_units(1.5, X, activity)
    with pytest.raises(ValueError, match="codes has 99 rows"):
        latent_units(0, X, activity[:-1])
    with pytest.raises(ValueError, match=r"components has shape \(4, 29\)"):
        latent_units(0, X, activity, components=loadings[:, :-1])
    with pytest.raises(ValueError, match=r"encoder has shape \(4, 30\)"):
        latent_units(0, X, activity, encoder=loadings)
    with pytest.raises(ValueError, match="unit_names has shape"):
        latent_units(0, X, activity, unit_names=["a", "b"])
    with pytest.raises(ValueError, match="n_top must be a positive integer"):
        latent_units(0, X, activity, n_top=0)
    with pytest.raises(ValueError, match="activity_threshold"):
        latent_units(0, X, activity, activity_threshold=np.nan)
    with pytest.raises(ValueError, match="codes is None"):
        latent_units(0, X)
    pca = PCA(n_components=4).fit(X)
    with pytest.raises(ValueError, match="encoder is given with a fitted estimator"):
        latent_units(0, X, activity, components=pca, encoder=loadings.T)
    with pytest.raises(ValueError, match="without components_; fit it first"):
        latent_units(0, X, activity, components=PCA(n_components=4))
    with pytest.raises(ValueError, match="by must be one of"):
        top_units_table([0], X, activity, by="weights")
    with pytest.raises(ValueError, match="latents is empty"):
        top_units_table([], X, activity)
    with pytest.raises(ValueError, match="rank columns"):
        ranking_agreement(pd.DataFrame({"decoder_rank": [1, 2]}))
    with pytest.raises(TypeError, match="DataFrame"):
        ranking_agreement(np.ones((3, 3)))
