"""sklearn-nldisco: interpretable latents in neural recordings, as scikit-learn estimators."""

from .interpretation import SelectivityScorer
from .models import MatryoshkaSAE, MatryoshkaTranscoder, MotifSAE, MotifTranscoder

__version__ = "0.1.0.dev0"

__all__ = [
    "MatryoshkaSAE", "MatryoshkaTranscoder", "MotifSAE", "MotifTranscoder", "SelectivityScorer",
    "__version__",
]
