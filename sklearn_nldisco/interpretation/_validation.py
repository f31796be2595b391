"""Checks of the arguments shared by the interpretation functions, each defined once."""

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_array


def _check_latent(latent, n_latents):
    """``latent`` as an int in ``[0, n_latents)``."""
    if isinstance(latent, (bool, np.bool_)) or not isinstance(latent, Integral):
        raise ValueError(f"latent must be an integer index, got {latent!r}.")
    if not 0 <= latent < n_latents:
        raise ValueError(
            f"latent={latent} is out of range; expected 0 <= latent < {n_latents}."
        )
    return int(latent)


def _check_codes(codes, n_rows=None, rows_of="X"):
    """Codes as a float array or a CSR/CSC matrix, with ``n_rows`` rows when given."""
    codes = check_array(
        codes, accept_sparse=("csr", "csc"), dtype=np.float64, input_name="codes"
    )
    if n_rows is not None and codes.shape[0] != n_rows:
        raise ValueError(
            f"codes has {codes.shape[0]} rows but {rows_of} has {n_rows}; "
            f"expected one row of codes per row of {rows_of}."
        )
    return codes


def _check_n_top(n_top):
    if isinstance(n_top, (bool, np.bool_)) or not isinstance(n_top, Integral) or n_top < 1:
        raise ValueError(f"n_top must be a positive integer, got {n_top!r}.")
    return int(n_top)


def _check_activity_threshold(activity_threshold, *, non_negative=False):
    """A finite threshold (and >= 0 where the codes are counted as non-negative)."""
    if (
        isinstance(activity_threshold, (bool, np.bool_))
        or not isinstance(activity_threshold, Real)
        or not np.isfinite(activity_threshold)
        or (non_negative and activity_threshold < 0)
    ):
        expected = "a finite number >= 0" if non_negative else "a finite real number"
        raise ValueError(
            f"activity_threshold must be {expected}, got {activity_threshold!r}."
        )
    return float(activity_threshold)


def _unit_names(unit_names, n_units, X=None, estimator=None):
    """Names of the units, or None when none are known.

    The first source that exists wins: ``unit_names``, the columns of a
    DataFrame ``X``, the estimator's ``feature_names_in_``.
    """
    sources = (
        unit_names,
        X.columns if isinstance(X, pd.DataFrame) else None,
        getattr(estimator, "feature_names_in_", None),
    )
    for names in sources:
        if names is None:
            continue
        names = np.asarray(names)
        if names.shape != (n_units,):
            raise ValueError(
                f"unit_names has shape {names.shape}; expected ({n_units},), "
                "one name per unit."
            )
        return names
    return None


def _dictionary(components, name="components"):
    """The decoder rows of a dictionary given as an array or a fitted estimator.

    Returns a finite float array of shape ``(n_latents, n_features)``; an
    estimator gives its ``components_``.
    """
    if hasattr(components, "components_"):
        return _dictionary(components.components_, f"{name}.components_")
    if hasattr(components, "fit") and hasattr(components, "get_params"):
        raise ValueError(
            f"{name} is an estimator without components_; fit it first."
        )
    try:
        weights = np.asarray(components, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a numeric array of shape (n_latents, n_features) or a "
            f"fitted estimator with components_; got {type(components).__name__}."
        ) from error
    if weights.ndim != 2:
        raise ValueError(
            f"{name} must be a 2D array of shape (n_latents, n_features); "
            f"got an array of shape {weights.shape}."
        )
    if weights.shape[0] == 0 or weights.shape[1] == 0:
        raise ValueError(
            f"{name} must hold at least one latent and one feature; got shape "
            f"{weights.shape}."
        )
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{name} must be finite; got NaN or infinite entries.")
    return weights
