"""From latents to behaviour: selectivity against a null model, which units drive a
latent, how stable it is across seeds, diagnostics figures, activations on disk."""

from ._activations import Activations, load_activations, save_activations
from ._attribution import latent_units, ranking_agreement, top_units_table
from ._consistency import fit_seeds, match_latents, seed_agreement, stable_latents
from ._recovery import feature_recovery
from ._selectivity import SelectivityScorer, top_selective_latents
from ._figures import (
    plot_decoder_weights,
    plot_feature_card,
    plot_l0,
    plot_latent_frequency,
    plot_training_curves,
    plot_unit_r2,
)

__all__ = [
    "Activations",
    "SelectivityScorer",
    "feature_recovery",
    "fit_seeds",
    "latent_units",
    "load_activations",
    "match_latents",
    "plot_decoder_weights",
    "plot_feature_card",
    "plot_l0",
    "plot_latent_frequency",
    "plot_training_curves",
    "plot_unit_r2",
    "ranking_agreement",
    "save_activations",
    "seed_agreement",
    "stable_latents",
    "top_selective_latents",
    "top_units_table",
]
