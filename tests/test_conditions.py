"""Tests for interpretation/_conditions.py: behaviour cut into conditions."""

import numpy as np
import pandas as pd
import pytest

from sklearn_nldisco.interpretation._conditions import discretise, n_bins_for


def cut(values, column="speed", *, is_angle=False, n_bins=4, max_categories=64):
    conditions = discretise(pd.Series(values), column, is_angle=is_angle, n_bins=n_bins,
                            max_categories=max_categories)
    return conditions.labels, conditions.names


def test_quantile_and_circular_binning_boundaries():
    labels, names = cut(np.arange(100.0))
    assert names == ["[0, 24.75)", "[24.75, 49.5)", "[49.5, 74.25)", "[74.25, 99]"]
    np.testing.assert_array_equal(np.bincount(labels), [25, 25, 25, 25])
    assert labels[24] == 0 and labels[25] == 1 and labels[99] == 3
    # tied quantiles merge bins
    labels, names = cut([1.0] * 5 + [2.0, 3, 4, 5, 6])
    assert names == ["[1, 1.5)", "[1.5, 3.75)", "[3.75, 6]"]
    np.testing.assert_array_equal(labels, [0] * 5 + [1, 1, 2, 2, 2])
    angles = [-180.0, -90.0, -0.001, 0.0, 179.9, 180.0, 360.0, 450.0, np.nan]
    labels, names = cut(angles, "direction_deg", is_angle=True)
    assert names == ["[-180, -90)", "[-90, 0)", "[0, 90)", "[90, 180)"]
    np.testing.assert_array_equal(labels, [0, 1, 1, 2, 3, 0, 2, 3, -1])
    # integer columns are discrete; many distinct integers are binned
    labels, names = cut([3, 1, 3, 2], "trial_type")
    assert names == [1, 2, 3]
    labels, names = cut(np.arange(100), "count", max_categories=10)
    assert len(names) == 4


def test_kinds_bounds_and_empty_sectors():
    # only two of the four sectors hold an angle: the empty ones are dropped
    conditions = discretise(pd.Series([10.0, 20.0, -100.0]), "direction_deg", is_angle=True,
                            n_bins=4, max_categories=64)
    assert conditions.kind == "angle"
    assert conditions.names == ["[-180, -90)", "[0, 90)"]
    np.testing.assert_array_equal(conditions.labels, [1, 1, 0])
    np.testing.assert_array_equal(conditions.bounds, [[-180.0, -90.0], [0.0, 90.0]])
    continuous = discretise(pd.Series(np.arange(10.0)), "speed", is_angle=False, n_bins=2,
                            max_categories=64)
    assert continuous.kind == "continuous"
    np.testing.assert_allclose(continuous.bounds, [[0.0, 4.5], [4.5, 9.0]])
    discrete = discretise(pd.Series(["b", "a", None]), "phase", is_angle=False, n_bins=2,
                          max_categories=64)
    assert discrete.kind == "discrete" and discrete.bounds is None
    assert discrete.names == ["a", "b"]
    np.testing.assert_array_equal(discrete.labels, [1, 0, -1])


def test_n_bins_per_column_and_errors():
    assert n_bins_for({"speed": 4}, "speed") == 4
    assert n_bins_for({"speed": 4}, "direction_deg") == 10
    with pytest.raises(ValueError, match="n_bins must be an int >= 2"):
        n_bins_for(1, "speed")
    with pytest.raises(ValueError, match="n_bins must be an int >= 2"):
        n_bins_for(True, "speed")
    with pytest.raises(ValueError, match="angle variable 'direction_deg' must be numeric"):
        cut(["north", "south"], "direction_deg", is_angle=True)
    with pytest.raises(ValueError, match="more than max_categories=2"):
        cut(["a", "b", "c"], "phase", max_categories=2)


def test_zero_inflated_values_get_a_zero_condition_and_quantiles_of_the_rest():
    rng = np.random.RandomState(0)
    # 40 % at rest, where a computed speed is numerical noise
    rest = rng.uniform(1e-20, 7e-12, 400)
    moving = rng.gamma(2.0, 50.0, 600)
    values = np.concatenate([rest, moving, [np.nan]])
    conditions = discretise(pd.Series(values), "speed", is_angle=False, n_bins=10,
                            max_categories=64)
    assert conditions.kind == "continuous"
    assert len(conditions.names) == 10 and conditions.names[0] == "[0, 0]"
    np.testing.assert_array_equal(conditions.labels[:400], 0)
    assert conditions.labels[-1] == -1
    # nine quantile bins of the moving values, about 67 values each
    sizes = np.bincount(conditions.labels[400:1000])
    assert sizes[0] == 0 and np.all(np.abs(sizes[1:] - 600 / 9) <= 2)
    np.testing.assert_array_equal(conditions.bounds[0], [0.0, 0.0])
    assert conditions.bounds[1, 0] == pytest.approx(moving.min())
    # the names are readable and say which values each bin holds
    for index, name in enumerate(conditions.names[1:], start=1):
        assert "e-" not in name
        low, high = (float(edge) for edge in name.strip("[)]").split(", "))
        held = values[conditions.labels == index]
        assert np.all(held >= low)
        assert np.all(held < high) or (index == 9 and np.all(held <= high))


def test_zero_inflation_needs_a_bin_share_at_zero_and_keeps_value_order():
    # 5 % zeros with 10 bins: ordinary quantile bins, the first starting at 0
    values = np.concatenate([np.full(5, 1e-15), np.arange(1.0, 96.0)])
    labels, names = cut(values, n_bins=10)
    assert len(names) == 10 and "[0, 0]" not in names
    assert names[0].startswith("[0, ")
    # a signed variable at rest: the zeros sit between the negative and
    # positive bins
    signed = np.concatenate([np.zeros(50), -np.arange(1.0, 26.0), np.arange(1.0, 26.0)])
    labels, names = cut(signed, n_bins=5)
    assert names == ["[-25, -13)", "[-13, -1]", "[0, 0]", "[1, 13)", "[13, 25]"]
    np.testing.assert_array_equal(labels[:50], 2)
    assert set(labels[50:75]) == {0, 1} and set(labels[75:]) == {3, 4}
    # all values at zero: a single condition
    labels, names = cut(np.zeros(10))
    assert names == ["[0, 0]"]
