"""From latents to behaviour: which units drive a latent, how stable it is across seeds,
and the activations on disk. The selectivity scorer is planned."""

from ._activations import Activations, load_activations, save_activations
from ._attribution import latent_units, ranking_agreement, top_units_table
from ._consistency import fit_seeds, match_latents, seed_agreement, stable_latents

__all__ = [
    "Activations",
    "fit_seeds",
    "latent_units",
    "load_activations",
    "match_latents",
    "ranking_agreement",
    "save_activations",
    "seed_agreement",
    "stable_latents",
    "top_units_table",
]
