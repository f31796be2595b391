"""Noise-controlled evaluation of any scikit-learn transformer on spike counts.

Reconstruction alone measures capacity, not discovery: an overcomplete
dictionary reconstructs data with no population structure as well as real
data. The functions here measure what a model found about the population:

- co-smoothing (:class:`CoSmoothing`, :func:`co_smoothing`): bits per spike
  of held-out neurons predicted from the latents of the others, through a
  :class:`PoissonReadout`; :class:`GaussianSmoother` is its baseline;
  :class:`OffsetFeatures` reads a window model out from the windows that
  cover each bin, or centres its windows;
- the structure control (:func:`structure_control`, :func:`shift_units`):
  the same metric on data whose units were shifted in time independently,
  and the difference;
- single-unit dominance (:func:`single_unit_dominance`,
  :func:`single_unit_fraction`): whether latents write to one unit;
- reconstruction (:func:`explained_variance_scorer`): held-out explained
  variance of any model that reconstructs its input, as a scorer;
- temporal metrics (:func:`reconstruction_per_lag`, :func:`latent_ablation`,
  :func:`spectral_fidelity`): a window model's reconstruction lag by lag,
  the error each latent alone prevents, and per-unit spectra of the
  reconstruction against the data.
"""

from ._control import held_out_explained_variance, reconstruct, shift_units, structure_control
from ._cosmoothing import CoSmoothing, GaussianSmoother, co_smoothing, co_smoothing_scorer
from ._dominance import single_unit_dominance, single_unit_fraction
from ._offsets import OffsetFeatures
from ._readout import PoissonReadout, bits_per_spike, bits_per_spike_per_unit
from ._scorers import explained_variance_scorer
from ._temporal import latent_ablation, reconstruction_per_lag, spectral_fidelity

__all__ = [
    # co-smoothing
    "CoSmoothing",
    "GaussianSmoother",
    "OffsetFeatures",
    "PoissonReadout",
    "bits_per_spike",
    "bits_per_spike_per_unit",
    "co_smoothing",
    "co_smoothing_scorer",
    # reconstruction
    "explained_variance_scorer",
    # structure control
    "held_out_explained_variance",
    "reconstruct",
    "shift_units",
    "structure_control",
    # single-unit dominance
    "single_unit_dominance",
    "single_unit_fraction",
    # temporal metrics
    "latent_ablation",
    "reconstruction_per_lag",
    "spectral_fidelity",
]
