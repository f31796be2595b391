"""The one discretisation of behaviour into conditions.

The selectivity scorer tests, the feature card draws and the report shows the
conditions made here, so that all three describe a latent over the same bins:

- angle variables (degrees): ``n_bins`` equal sectors of the circle starting
  at -180, ``[-180, -180 + 360 / n_bins)`` first;
- discrete variables (object, categorical, boolean, or integer columns with
  at most ``max_categories`` distinct values): one condition per value, in
  sorted order;
- other numeric columns: ``n_bins`` quantile bins ``[low, high)`` (the last
  closed; tied quantiles merge bins). Values within ``ZERO_TOLERANCE`` of
  the largest absolute value count as 0 (numerical noise such as a speed of
  1e-19 at rest). A zero-inflated column, where at least a bin's share
  (``1 / n_bins``) of the values is 0, gets a condition ``"[0, 0]"`` for
  them and ``n_bins - 1`` quantile bins of the other values (shared between
  the negative and the positive ones in proportion, when there are both). Interior edges
  are rounded to 4 significant digits, the precision of the names, and
  rows are assigned by the rounded edges, so a name says exactly which
  values it holds.

Missing values belong to no condition, and conditions without rows (an empty
sector) are dropped.
"""

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd

DEFAULT_N_BINS = 10
DEFAULT_MAX_CATEGORIES = 64
# Relative to the largest absolute value of a column: smaller values are 0.
ZERO_TOLERANCE = 1e-9
_SIGNIFICANT_DIGITS = 4


@dataclass(frozen=True)
class Conditions:
    """The conditions of one behavioural variable.

    Attributes
    ----------
    labels : ndarray of shape (n_rows,)
        Condition index of each row, -1 where the value is missing.
    names : list
        Name of each condition: the value of a discrete variable, or
        ``"[low, high)"`` for a bin.
    kind : {"angle", "continuous", "discrete"}
        How the variable was cut.
    bounds : ndarray of shape (n_conditions, 2) or None
        Lower and upper edge of each bin; None for a discrete variable.
    """

    labels: np.ndarray
    names: list
    kind: str
    bounds: np.ndarray = None


def n_bins_for(n_bins, column):
    """Bins of ``column`` from an int or a dict of column to int (10 for the others)."""
    if isinstance(n_bins, dict):
        n_bins = n_bins.get(column, DEFAULT_N_BINS)
    if isinstance(n_bins, bool) or not isinstance(n_bins, Integral) or n_bins < 2:
        raise ValueError(
            f"n_bins must be an int >= 2 (or a dict of them); got {n_bins!r} for "
            f"{column!r}.")
    return int(n_bins)


def _format_edge(value):
    return f"{value:.{_SIGNIFICANT_DIGITS}g}"


def _round_edges(edges):
    """Edges rounded to the digits of their names (0 stays 0)."""
    return np.array([float(_format_edge(edge)) for edge in edges])


def _bin_names(edges):
    names = [f"[{_format_edge(low)}, {_format_edge(high)})"
             for low, high in zip(edges[:-2], edges[1:-1])]
    names.append(f"[{_format_edge(edges[-2])}, {_format_edge(edges[-1])}]")
    return names


def discretise(series, column, *, is_angle, n_bins, max_categories):
    """Cut one metadata column into conditions.

    Parameters
    ----------
    series : Series of shape (n_rows,)
        The column's values.
    column : str
        Its name, for the error messages and a per-column ``n_bins``.
    is_angle : bool
        Whether the values are angles in degrees.
    n_bins : int or dict of str to int
        Sectors of an angle variable, quantile bins of a continuous one.
    max_categories : int
        Integer columns with more distinct values are binned as continuous;
        non-numeric columns with more raise a ``ValueError``.

    Returns
    -------
    conditions : Conditions
        Empty conditions already dropped.
    """
    n_bins = n_bins_for(n_bins, column)
    is_numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if is_angle:
        if not is_numeric:
            raise ValueError(
                f"angle variable {column!r} must be numeric (degrees); got dtype "
                f"{series.dtype}.")
        values = series.to_numpy(np.float64)
        width = 360.0 / n_bins
        missing = ~np.isfinite(values)
        wrapped = np.mod(np.where(missing, 0.0, values) + 180.0, 360.0)
        labels = np.minimum(np.floor(wrapped / width).astype(np.int64), n_bins - 1)
        labels[missing] = -1
        edges = -180.0 + width * np.arange(n_bins + 1)
        names = [f"[{_format_edge(low)}, {_format_edge(high)})"
                 for low, high in zip(edges[:-1], edges[1:])]
        return _drop_empty(labels, names, "angle", np.column_stack([edges[:-1], edges[1:]]))
    n_unique = series.nunique(dropna=True)
    is_integer = pd.api.types.is_integer_dtype(series)
    if not is_numeric or (is_integer and n_unique <= max_categories):
        if n_unique > max_categories:
            raise ValueError(
                f"discrete variable {column!r} has {n_unique} distinct values, more than "
                f"max_categories={max_categories}; leave it out of variables or raise "
                "max_categories.")
        codes, uniques = pd.factorize(series, sort=True)
        return _drop_empty(codes.astype(np.int64), list(uniques), "discrete", None)
    values = series.to_numpy(np.float64)
    missing = ~np.isfinite(values)
    labels = np.full(len(values), -1, dtype=np.int64)
    if missing.all():
        return Conditions(labels, [], "continuous", np.zeros((0, 2)))
    present = values[~missing]
    scale = np.max(np.abs(present))
    is_zero = np.abs(present) <= ZERO_TOLERANCE * scale
    present = np.where(is_zero, 0.0, present)
    if scale > 0 and is_zero.mean() >= 1.0 / n_bins:
        return _zero_inflated(present, is_zero, missing, labels, n_bins)
    present_labels, names, bounds = _quantile_bins(present, n_bins)
    labels[~missing] = present_labels
    return _drop_empty(labels, names, "continuous", bounds)


def _quantile_bins(values, n_bins):
    """Labels, names and bounds of ``n_bins`` quantile bins of finite values."""
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)))
    if len(edges) < 2:
        return (np.zeros(len(values), dtype=np.int64),
                [f"[{_format_edge(edges[0])}, {_format_edge(edges[0])}]"],
                np.array([[edges[0], edges[0]]]))
    # interior edges as the names print them; the extremes are the data's
    interior = np.unique(_round_edges(edges[1:-1]))
    interior = interior[(interior > edges[0]) & (interior < edges[-1])]
    edges = np.concatenate([edges[:1], interior, edges[-1:]])
    labels = np.searchsorted(edges[1:-1], values, side="right")
    return labels, _bin_names(edges), np.column_stack([edges[:-1], edges[1:]])


def _zero_inflated(present, is_zero, missing, labels, n_bins):
    """A ``[0, 0]`` condition for the zeros, quantile bins of the other values
    (of the negative and the positive ones apart, when there are both)."""
    negative = present < 0
    positive = present > 0
    n_rest = n_bins - 1
    n_negative = 0
    if negative.any():
        n_negative = n_rest if not positive.any() else int(np.clip(
            round(n_rest * negative.sum() / (~is_zero).sum()), 1, max(n_rest - 1, 1)))
    present_labels = np.zeros(len(present), dtype=np.int64)
    names, bounds = [], []
    for part, n_part in ((negative, n_negative), (None, 0), (positive, n_rest - n_negative)):
        if part is None:
            present_labels[is_zero] = len(names)
            names.append("[0, 0]")
            bounds.append([[0.0, 0.0]])
            continue
        if not part.any():
            continue
        part_labels, part_names, part_bounds = _quantile_bins(present[part], max(n_part, 1))
        present_labels[part] = part_labels + len(names)
        names += part_names
        bounds.append(part_bounds)
    labels[~missing] = present_labels
    return _drop_empty(labels, names, "continuous", np.concatenate(bounds))


def _drop_empty(labels, names, kind, bounds):
    # e.g. angular sectors that no row falls in
    sizes = np.bincount(labels[labels >= 0], minlength=len(names))
    kept = np.flatnonzero(sizes > 0)
    if len(kept) < len(names):
        new_index = np.full(len(names) + 1, -1, dtype=np.int64)
        new_index[kept] = np.arange(len(kept))
        labels = new_index[labels]
        names = [names[index] for index in kept]
        bounds = None if bounds is None else bounds[kept]
    return Conditions(labels, names, kind, bounds)
