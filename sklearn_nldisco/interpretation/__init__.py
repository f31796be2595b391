"""From latents to behaviour, in six concerns.

Selectivity and null models
    :class:`~sklearn_nldisco.SelectivityScorer` (also exported as
    ``sklearn_nldisco.SelectivityScorer``), :func:`top_selective_latents`.
Which units drive a latent
    :func:`latent_units`, :func:`ranking_agreement`, :func:`top_units_table`.
Stability across seeds
    :func:`fit_seeds`, :func:`match_latents`, :func:`seed_agreement`,
    :func:`stable_latents`.
Figures
    :func:`plot_feature_card`, :func:`plot_decoder_weights`, :func:`plot_l0`,
    :func:`plot_latent_frequency`, :func:`plot_unit_r2`,
    :func:`plot_training_curves`.
Activations on disk
    :class:`Activations`, :func:`save_activations`, :func:`load_activations`.
Ground-truth recovery
    :func:`feature_recovery`.

Every function takes arrays, DataFrames or any fitted model with
``components_``, so a Matryoshka SAE, PCA and NMF are read the same way. The
scorer, the feature card and the report cut behaviour into the same
conditions, and the card ranks units with :func:`latent_units`.
"""

from ._activations import Activations, load_activations, save_activations
from ._attribution import latent_units, ranking_agreement, top_units_table
from ._consistency import fit_seeds, match_latents, seed_agreement, stable_latents
from ._figures import (
    plot_decoder_weights,
    plot_feature_card,
    plot_l0,
    plot_latent_frequency,
    plot_training_curves,
    plot_unit_r2,
)
from ._recovery import feature_recovery
from ._selectivity import SelectivityScorer, top_selective_latents

__all__ = [
    # selectivity and null models
    "SelectivityScorer",
    "top_selective_latents",
    # which units drive a latent
    "latent_units",
    "ranking_agreement",
    "top_units_table",
    # stability across seeds
    "fit_seeds",
    "match_latents",
    "seed_agreement",
    "stable_latents",
    # figures
    "plot_feature_card",
    "plot_decoder_weights",
    "plot_l0",
    "plot_latent_frequency",
    "plot_unit_r2",
    "plot_training_curves",
    # activations on disk
    "Activations",
    "save_activations",
    "load_activations",
    # ground-truth recovery
    "feature_recovery",
]
