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
    labels, names = cut([0.0] * 5 + [1.0, 2, 3, 4, 5])
    assert names == ["[0, 0.5)", "[0.5, 2.75)", "[2.75, 5]"]
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
