"""Data-driven statistics used before training: scaling and bias initialisation."""

import numpy as np

SCALINGS = ("standard", "center", "scale", "none")
BIAS_INITS = ("geometric_median", "median", "mean", "zeros")


def scaling_statistics(X, scaling):
    """Per-column ``(mean, scale)`` so that ``(X - mean) / scale`` is the input.

    ``"standard"`` removes each column's mean and divides by its standard
    deviation; ``"center"`` only removes the mean; ``"scale"`` only divides
    (counts stay non-negative); ``"none"`` leaves the data as it is. Columns
    with zero variance keep a scale of 1.
    """
    n_columns = X.shape[1]
    mean = np.zeros(n_columns)
    scale = np.ones(n_columns)
    if scaling in ("standard", "center"):
        mean = X.mean(axis=0, dtype=np.float64)
    if scaling in ("standard", "scale"):
        std = X.std(axis=0, dtype=np.float64)
        scale = np.where(std > np.finfo(np.float32).eps, std, 1.0)
    return mean, scale


def geometric_median(X, max_iter=50, tol=1e-6):
    """Weiszfeld's algorithm: the point minimising the sum of distances."""
    X = np.asarray(X, dtype=np.float64)
    point = X.mean(axis=0)
    for _ in range(max_iter):
        distances = np.linalg.norm(X - point, axis=1)
        weights = 1.0 / np.maximum(distances, 1e-8)
        new_point = weights @ X / weights.sum()
        shift = np.linalg.norm(new_point - point)
        point = new_point
        if shift <= tol * max(np.linalg.norm(point), 1.0):
            break
    return point


def bias_from_data(X, method, rng, max_rows=10_000):
    """Initial bias of a layer from (a random sample of at most ``max_rows``) rows."""
    if method == "zeros" or X.shape[0] == 0:
        return np.zeros(X.shape[1])
    if X.shape[0] > max_rows:
        X = X[np.sort(rng.choice(X.shape[0], max_rows, replace=False))]
    if method == "mean":
        return X.mean(axis=0, dtype=np.float64)
    if method == "median":
        return np.median(X, axis=0)
    return geometric_median(X)


def random_unit_rows(n_rows, n_columns, rng):
    """Gaussian rows normalised to unit length."""
    rows = rng.standard_normal((n_rows, n_columns))
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return rows


def validation_rows(n_rows, fraction, rng):
    """Boolean mask of held-out rows, drawn as contiguous blocks.

    Neighbouring time bins are correlated, so single random rows would leak
    into the training set; blocks of about 1 % of the data keep the held-out
    part honest for early stopping. Returns None when no row can be spared.
    """
    n_val = int(round(fraction * n_rows))
    if n_val < 1 or n_rows - n_val < 1:
        return None
    block = max(1, n_rows // 100)
    n_blocks = -(-n_rows // block)
    n_val_blocks = min(max(1, int(round(n_val / block))), n_blocks - 1)
    if n_val_blocks < 1:
        return None
    chosen = rng.choice(n_blocks, n_val_blocks, replace=False)
    mask = np.zeros(n_blocks * block, dtype=bool)
    for start in chosen * block:
        mask[start : start + block] = True
    return mask[:n_rows]
