"""Whether latents are population features or copies of single units."""

import numbers

import numpy as np


def _decoder_rows(model_or_components):
    """Decoder rows ``(n_latents, n_units)`` in the data's units."""
    if hasattr(model_or_components, "components_"):
        components = np.asarray(model_or_components.components_, dtype=np.float64)
        # the Matryoshka models decode in scaled units; undo the per-unit scale
        scale = getattr(model_or_components, "target_scale_", None)
        if scale is not None:
            components = components * np.asarray(scale, dtype=np.float64)[None, :]
        return components
    components = np.asarray(model_or_components, dtype=np.float64)
    if components.ndim != 2:
        raise ValueError(
            "expected a fitted model with components_ or a 2-D array (n_latents, n_units); "
            f"got shape {components.shape}."
        )
    if not np.all(np.isfinite(components)):
        raise ValueError("components must be finite.")
    return components


def single_unit_dominance(model_or_components):
    """Share of each latent's decoder energy carried by its strongest unit.

    ``max_j w_ij^2 / sum_j w_ij^2`` for decoder row ``w_i`` (a latent's
    contribution to every unit, in the data's units): 1 when the latent
    writes to a single unit, ``1 / n_units`` when it spreads evenly. A
    model whose latents are near 1 has rediscovered single neurons, not
    population features.

    Parameters
    ----------
    model_or_components : fitted model or array-like of shape (n_latents, n_units)
        A model with ``components_`` (the Matryoshka models, PCA, NMF, FA,
        dictionary learning), or the decoder rows themselves.

    Returns
    -------
    dominance : ndarray of shape (n_latents,)
        NaN for latents whose decoder row is zero.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.evaluation import single_unit_dominance
    >>> single_unit_dominance(np.array([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0]])).round(3)
    array([1.   , 0.333])
    """
    energy = np.square(_decoder_rows(model_or_components))
    total = energy.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, energy.max(axis=1) / total, np.nan)


def single_unit_fraction(model_or_components, *, threshold=0.8, latents=None):
    """Fraction of latents whose strongest unit carries more than ``threshold`` of the energy.

    Parameters
    ----------
    model_or_components : fitted model or array-like of shape (n_latents, n_units)
        See :func:`single_unit_dominance`.
    threshold : float, default=0.8
        Dominance above which a latent counts as single-unit.
    latents : array-like of int, default=None
        Restrict to these latents (for example the selective ones); None:
        every latent with a non-zero decoder row.

    Returns
    -------
    fraction : float
        NaN when no latent is counted.
    """
    if not isinstance(threshold, numbers.Real) or not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1); got {threshold!r}.")
    dominance = single_unit_dominance(model_or_components)
    if latents is not None:
        latents = np.asarray(latents, dtype=int).ravel()
        if latents.size and (latents.min() < 0 or latents.max() >= dominance.size):
            raise ValueError(
                f"latents must be indices in [0, {dominance.size}); got {latents.tolist()}."
            )
        dominance = dominance[latents]
    dominance = dominance[np.isfinite(dominance)]
    if dominance.size == 0:
        return float("nan")
    return float(np.mean(dominance > threshold))
