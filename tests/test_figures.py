"""Tests for interpretation/_figures.py: diagnostic figures."""

import matplotlib

matplotlib.use("Agg")

import warnings  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.projections.polar import PolarAxes  # noqa: E402
from scipy import sparse  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from sklearn_nldisco.interpretation._attribution import latent_units  # noqa: E402
from sklearn_nldisco.interpretation._figures import (  # noqa: E402
    plot_decoder_weights,
    plot_feature_card,
    plot_l0,
    plot_latent_frequency,
    plot_training_curves,
    plot_unit_r2,
)
from sklearn_nldisco.interpretation._selectivity import SelectivityScorer  # noqa: E402
from sklearn_nldisco.models import MatryoshkaSAE  # noqa: E402

N_ROWS = 300
N_UNITS = 12


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.poisson(2.0, (N_ROWS, N_UNITS)).astype(np.float64)


@pytest.fixture(scope="module")
def model(data, one_torch_thread):
    return MatryoshkaSAE(n_latents=16, k=2, max_iter=5, random_state=0).fit(data)


@pytest.fixture(scope="module")
def codes(model, data):
    return model.transform(data)


@pytest.fixture(scope="module")
def metadata():
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "direction_deg": rng.uniform(0, 360, N_ROWS),
            "phase": rng.choice(["hold", "reach", "return"], N_ROWS),
            "speed": rng.gamma(2.0, 5.0, N_ROWS),
        }
    )


def bar_heights(ax):
    return np.array([patch.get_height() for patch in ax.patches], dtype=float)


def saves_png(fig, tmp_path):
    path = tmp_path / "figure.png"
    fig.savefig(path)
    return path.stat().st_size > 0


# ------------------------------------------------------------------ decoder


def test_decoder_weights_from_model_uses_levels(model, tmp_path):
    fig = plot_decoder_weights(model)
    assert isinstance(fig, Figure)
    ax_hist, ax_pr = fig.axes
    n_latents, n_units = model.components_.shape
    assert bar_heights(ax_hist).sum() == n_latents * n_units
    # One stacked bar container per level.
    assert len(ax_hist.containers) == len(model.level_sizes_)
    squares = model.components_.astype(np.float64) ** 2
    expected = squares.sum(axis=1) ** 2 / (squares**2).sum(axis=1)
    np.testing.assert_allclose(bar_heights(ax_pr), expected)
    assert saves_png(fig, tmp_path)


def test_decoder_weights_any_model_with_components(data):
    pca = PCA(n_components=4).fit(data)
    fig = plot_decoder_weights(pca, bins=10)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].containers) == 1
    assert bar_heights(fig.axes[0]).sum() == 4 * N_UNITS


@pytest.mark.parametrize("level_sizes", [(4, 8), (8, 4, 16), (0, 16), (4.0, 16.0)])
def test_decoder_weights_bad_level_sizes(model, level_sizes):
    with pytest.raises(ValueError, match="level_sizes"):
        plot_decoder_weights(model.components_, level_sizes=level_sizes)


def test_decoder_weights_bad_shape():
    with pytest.raises(ValueError):
        plot_decoder_weights(np.ones(5))


# ------------------------------------------------------------------ codes


@pytest.mark.parametrize("as_sparse", [False, True])
def test_l0_histogram_counts_rows(codes, as_sparse, tmp_path):
    given = sparse.csr_matrix(codes) if as_sparse else codes
    fig = plot_l0(given)
    (ax,) = fig.axes
    heights = bar_heights(ax)
    assert heights.sum() == N_ROWS
    l0 = (codes > 0).sum(axis=1)
    np.testing.assert_array_equal(heights, np.bincount(l0))
    assert saves_png(fig, tmp_path)


def test_l0_draws_into_given_axes(codes):
    fig, axes = plt.subplots(1, 2)
    assert plot_l0(codes, ax=axes[1]) is fig
    assert len(axes[1].patches) > 0 and len(axes[0].patches) == 0


def test_l0_rejects_bad_input(codes):
    with pytest.raises(ValueError):
        plot_l0(codes[0])
    with pytest.raises(ValueError, match="activity_threshold"):
        plot_l0(codes, activity_threshold=-1.0)


@pytest.mark.parametrize("as_sparse", [False, True])
def test_latent_frequency_per_level_counts_dead(model, codes, as_sparse, tmp_path):
    codes = codes.copy()
    codes[:, [1, 9]] = 0.0  # two dead latents, in levels 0 and 2
    given = sparse.csr_matrix(codes) if as_sparse else codes
    fig = plot_latent_frequency(given, model.level_sizes_)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(model.level_sizes_)
    starts = np.concatenate([[0], model.level_sizes_[:-1]])
    for ax, start, stop in zip(fig.axes, starts, model.level_sizes_):
        assert bar_heights(ax).sum() == stop - start
    dead = [ax.patches[-1].get_height() for ax in fig.axes]
    assert dead == [1, 0, 1]
    assert saves_png(fig, tmp_path)


def test_latent_frequency_histogram_matches_frequencies():
    codes = np.zeros((100, 3))
    codes[:10, 0] = 1.0  # frequency 0.1
    codes[:, 1] = 1.0  # frequency 1
    fig = plot_latent_frequency(codes, bins=2)
    (ax,) = fig.axes
    # Bins [1e-2, 1e-1) and [1e-1, 1e0]; the last bar is the dead one.
    np.testing.assert_array_equal(bar_heights(ax), [0, 2, 1])


def test_latent_frequency_level_mismatch(codes):
    with pytest.raises(ValueError, match="level_sizes"):
        plot_latent_frequency(codes, level_sizes=(4, 8))


# ------------------------------------------------------------------ reconstruction


@pytest.mark.parametrize("sort", [False, True])
def test_unit_r2_matches_direct_computation(model, data, codes, sort, tmp_path):
    X_hat = model.inverse_transform(codes)
    fig = plot_unit_r2(data, X_hat, sort=sort)
    (ax,) = fig.axes
    expected = 1 - ((data - X_hat) ** 2).sum(0) / ((data - data.mean(0)) ** 2).sum(0)
    heights = bar_heights(ax)
    if sort:
        np.testing.assert_allclose(heights, np.sort(expected)[::-1])
    else:
        np.testing.assert_allclose(heights, expected)
    assert saves_png(fig, tmp_path)


def test_unit_r2_names_from_dataframe_and_constant_unit():
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [1.0, 1.0, 1.0]})
    X_hat = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    fig = plot_unit_r2(X, sparse.csr_matrix(X_hat), sort=False)
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["a", "b"]
    heights = bar_heights(ax)
    assert heights[0] == pytest.approx(0.5)
    assert np.isnan(heights[1])


def test_unit_r2_bad_shapes(data):
    with pytest.raises(ValueError, match="same shape"):
        plot_unit_r2(data, data[:, :-1])
    with pytest.raises(ValueError, match="unit_names"):
        plot_unit_r2(data, data, unit_names=["a", "b"])


# ------------------------------------------------------------------ training


def test_training_curves_one_line_per_level(model, tmp_path):
    fig = plot_training_curves(model)
    ax_loss, ax_ev, ax_l0, ax_dead = fig.axes
    n_epochs, n_levels = model.history_["train_loss"].shape
    assert n_epochs == model.n_iter_

    def curves(ax):
        return [line for line in ax.get_lines() if line.get_label() != "_best epoch"]

    # Training and held-out loss per level.
    assert len(curves(ax_loss)) == 2 * n_levels
    assert len(curves(ax_ev)) == n_levels
    for level, line in enumerate(curves(ax_ev)):
        assert len(line.get_xdata()) == n_epochs
        np.testing.assert_allclose(
            line.get_ydata(), model.history_["val_explained_variance"][:, level]
        )
    np.testing.assert_allclose(curves(ax_l0)[0].get_ydata(), model.history_["l0"])
    np.testing.assert_allclose(
        curves(ax_dead)[0].get_ydata(), model.history_["dead_fraction"]
    )
    best = [line for line in ax_loss.get_lines() if line.get_label() == "_best epoch"]
    assert best[0].get_xdata()[0] == model.best_iter_
    assert saves_png(fig, tmp_path)


def test_training_curves_without_validation():
    history = {
        "train_loss": np.array([[2.0, 1.5], [1.8, 1.2]]),
        "val_loss": np.full((2, 2), np.nan),
        "val_explained_variance": np.full((2, 2), np.nan),
    }
    fig = plot_training_curves(history)
    assert len(fig.axes[0].get_lines()) == 2
    assert len(fig.axes[1].get_lines()) == 0


def test_training_curves_bad_history():
    with pytest.raises(ValueError, match="train_loss"):
        plot_training_curves({"l0": np.ones(3)})
    with pytest.raises(ValueError, match="l0"):
        plot_training_curves({"train_loss": np.ones((3, 2)), "l0": np.ones(4)})


# ------------------------------------------------------------------ feature card


def test_feature_card_tuning_matches_groupby(model, codes, metadata, data, tmp_path):
    latent = int(np.argmax((codes > 0).mean(axis=0)))
    fig = plot_feature_card(
        latent, sparse.csr_matrix(codes), metadata, X=data, components=model, n_top=5
    )
    assert isinstance(fig, Figure)
    # Mean and fraction panels for three variables, plus the units panel.
    assert len(fig.axes) == 7
    polar = [ax for ax in fig.axes if isinstance(ax, PolarAxes)]
    assert len(polar) == 2
    activation = codes[:, latent]

    # Angle: 10 equal sectors of the circle from -180; the curve closes on itself.
    bins = (np.mod(metadata["direction_deg"] + 180.0, 360.0) // 36).astype(int)
    expected = pd.Series(activation).groupby(bins).mean().reindex(range(10))
    theta, radius = polar[0].get_lines()[0].get_data()
    np.testing.assert_allclose(radius[:-1], expected.to_numpy())
    np.testing.assert_allclose(theta[:-1], np.deg2rad(-180.0 + np.arange(10) * 36 + 18))
    fraction = pd.Series(activation > 0).groupby(bins).mean()
    np.testing.assert_allclose(polar[1].get_lines()[0].get_ydata()[:-1], fraction)

    # Categorical: one bar per phase, sorted.
    ax_phase = fig.axes[2]
    expected = pd.Series(activation).groupby(metadata["phase"]).mean()
    np.testing.assert_allclose(bar_heights(ax_phase), expected.to_numpy())
    labels = [label.get_text() for label in ax_phase.get_xticklabels()]
    assert labels == ["hold", "reach", "return"]

    # Continuous: a line over 10 quantile bins, at the mean value within each bin.
    ax_speed = fig.axes[4]
    edges = np.quantile(metadata["speed"], np.linspace(0, 1, 11))
    quantile = np.searchsorted(edges[1:-1], metadata["speed"], side="right")
    x, y = ax_speed.get_lines()[0].get_data()
    np.testing.assert_allclose(y, pd.Series(activation).groupby(quantile).mean())
    np.testing.assert_allclose(x, metadata["speed"].groupby(quantile).mean())

    # Top units by decoder weight.
    ax_units = fig.axes[-1]
    weights = model.components_[latent]
    np.testing.assert_allclose(
        [patch.get_width() for patch in ax_units.patches], np.sort(weights)[::-1][:5]
    )
    assert saves_png(fig, tmp_path)


def _card_series(ax):
    """Heights of a bar panel or the y values of a line panel."""
    if isinstance(ax, PolarAxes):  # the curve closes on itself
        return np.asarray(ax.get_lines()[0].get_ydata()[:-1])
    if ax.patches:
        return bar_heights(ax)
    return np.asarray(ax.get_lines()[0].get_ydata())


def test_feature_card_shows_the_scorer_conditions():
    rng = np.random.default_rng(3)
    n_rows = 2000
    metadata = pd.DataFrame({
        # angles on both sides of 0: sectors start at -180, as in the scorer
        "direction_deg": rng.uniform(-180, 180, n_rows),
        # an integer column with 25 values: discrete for the scorer (<= 64 values)
        "target": rng.integers(0, 25, n_rows),
        "speed": rng.gamma(2.0, 5.0, n_rows),
    })
    codes = rng.exponential(size=(n_rows, 3)) * (rng.random((n_rows, 3)) < 0.4)
    codes[:, 1] *= metadata["target"].to_numpy() % 3 == 0
    scorer = SelectivityScorer(n_permutations=2, random_state=0)
    results = scorer.score_latents(codes, metadata)
    for latent in range(3):
        fig = plot_feature_card(latent, codes, metadata)
        assert len(fig.axes) == 6
        for index, variable in enumerate(metadata.columns):
            rows = results[(results["latent"] == latent) & (results["variable"] == variable)]
            mean_ax, fraction_ax = fig.axes[2 * index], fig.axes[2 * index + 1]
            np.testing.assert_allclose(_card_series(mean_ax), rows["mean_during"])
            np.testing.assert_allclose(_card_series(fraction_ax), rows["frac_during"])
        labels = [label.get_text() for label in fig.axes[2].get_xticklabels()]
        assert labels == [str(condition) for condition in results.loc[
            (results["latent"] == latent) & (results["variable"] == "target"), "condition"]]
        assert len(labels) == 25
        plt.close(fig)


def test_feature_card_units_are_latent_units(model, codes, data):
    metadata = pd.DataFrame({"phase": np.arange(N_ROWS) % 2})
    for latent in range(4):
        for kwargs, by, column in (({"components": model}, "decoder", "decoder_weight"),
                                   ({}, "activity", "activity_z")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                units = latent_units(latent, data, codes, n_top=4, **kwargs)
            top = units.sort_values(f"{by}_rank", kind="stable").head(4)
            fig = plot_feature_card(latent, codes, metadata, X=data, n_top=4, **kwargs)
            ax_units = fig.axes[-1]
            shown = [label.get_text() for label in ax_units.get_yticklabels()]
            assert shown == [f"unit {unit}" for unit in top["unit"]]
            np.testing.assert_allclose(
                [patch.get_width() for patch in ax_units.patches], top[column])
            plt.close(fig)


def test_feature_card_units_from_activity_and_names(codes, metadata, data):
    X = pd.DataFrame(data, columns=[f"n{i}" for i in range(N_UNITS)])
    fig = plot_feature_card(0, codes, metadata, variables=["phase"], X=X, n_top=3)
    assert len(fig.axes) == 3
    names = [label.get_text() for label in fig.axes[-1].get_yticklabels()]
    assert len(names) == 3 and all(name.startswith("n") for name in names)
    active = codes[:, 0] > 0
    z = ((data - data.mean(0)) / data.std(0))[active].mean(0)
    np.testing.assert_allclose(
        [patch.get_width() for patch in fig.axes[-1].patches], np.sort(z)[::-1][:3]
    )


def test_feature_card_without_units_panel(codes, metadata):
    fig = plot_feature_card(0, codes, metadata, variables=("speed",))
    assert len(fig.axes) == 2
    assert not any(isinstance(ax, PolarAxes) for ax in fig.axes)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latent": 16}, "latent"),
        ({"latent": -1}, "latent"),
        ({"variables": ["missing"]}, "not columns"),
        ({"components": np.ones((3, N_UNITS))}, "one row per latent"),
        ({"n_bins": 1}, "n_bins"),
    ],
)
def test_feature_card_errors(codes, metadata, kwargs, match):
    arguments = {"latent": 0, "codes": codes, "metadata": metadata, **kwargs}
    latent = arguments.pop("latent")
    with pytest.raises(ValueError, match=match):
        plot_feature_card(latent, **arguments)


def test_feature_card_metadata_length(codes, metadata):
    with pytest.raises(ValueError, match="metadata"):
        plot_feature_card(0, codes, metadata.iloc[:-1])
    with pytest.raises(TypeError, match="DataFrame"):
        plot_feature_card(0, codes, metadata.to_numpy())
