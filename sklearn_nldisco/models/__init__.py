"""Matryoshka sparse encoder-decoders (autoencoder and transcoder)."""

from ._sae import MatryoshkaSAE
from ._transcoder import MatryoshkaTranscoder

__all__ = ["MatryoshkaSAE", "MatryoshkaTranscoder"]
