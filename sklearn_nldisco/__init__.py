"""sklearn-nldisco: interpretable latents in neural recordings, as scikit-learn estimators."""

from .interpretation import SelectivityScorer
from .models import MatryoshkaSAE, MatryoshkaTranscoder, MotifSAE

__version__ = "0.1.0.dev0"

__all__ = [
    "MatryoshkaSAE", "MatryoshkaTranscoder", "MotifSAE", "SelectivityScorer", "__version__",
]
