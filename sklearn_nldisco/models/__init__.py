"""Matryoshka sparse encoder-decoders (autoencoder and transcoder)."""

from ._base import explained_variance
from ._motif import MotifSAE
from ._motif_transcoder import MotifTranscoder
from ._sae import MatryoshkaSAE
from ._spec import check_device, check_level_k, check_level_sizes, check_levels
from ._transcoder import MatryoshkaTranscoder

__all__ = [
    "MatryoshkaSAE",
    "MatryoshkaTranscoder",
    "MotifSAE",
    "MotifTranscoder",
    "check_device",
    "check_level_k",
    "check_level_sizes",
    "check_levels",
    "explained_variance",
]
