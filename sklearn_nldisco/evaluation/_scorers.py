"""Scorers for model selection (``GridSearchCV(scoring=...)``) that any model can take."""

import numpy as np
from scipy import sparse

from ..models import explained_variance
from ._control import reconstruct


def _final_step_and_its_input(estimator, X):
    """The last step of a Pipeline and ``X`` transformed by the steps before it."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return estimator, X
    for _, step in steps[:-1]:
        if step is not None and step != "passthrough":
            X = step.transform(X)
    return steps[-1][1], X


def explained_variance_scorer(estimator, X, y=None):
    """Explained variance of a fitted model's reconstruction of ``X``: a scorer.

    ``scoring=explained_variance_scorer`` in ``GridSearchCV`` or
    ``cross_validate`` gives the held-out explained variance of each test
    fold, the same number for every model that can reconstruct its input:
    :class:`~sklearn_nldisco.MatryoshkaSAE` (it equals its ``score``), PCA,
    NMF, factor analysis (reconstructed from the posterior mean of its
    factors) or anything with ``inverse_transform``. scikit-learn's
    ``scoring="explained_variance"`` needs a target ``y``, ``PCA.score`` is
    a log-likelihood and NMF has no ``score``.

    Parameters
    ----------
    estimator : fitted model or Pipeline
        A model that :func:`reconstruct` can read, or a Pipeline ending in
        one; then the steps before it transform ``X`` first (for example a
        :class:`~sklearn_nldisco.preprocessing.SpikeBinner` given
        :class:`~sklearn_nldisco.preprocessing.SpikeEpochs`), and the
        explained variance is of the last step's input.
    X : array-like of shape (n_samples, n_features), or what the Pipeline takes
        The held-out data.
    y : None
        Ignored.

    Returns
    -------
    score : float
        ``1 - sum((X - X_hat)^2) / sum((X - mean(X))^2)`` with column means
        of the test fold (:func:`sklearn_nldisco.models.explained_variance`);
        higher is better, 1.0 a perfect reconstruction.

    See Also
    --------
    held_out_explained_variance : Fit on one block, score on another.
    co_smoothing_scorer : Bits per spike of held-out neurons.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import NMF, PCA
    >>> from sklearn.model_selection import GridSearchCV, KFold
    >>> from sklearn_nldisco.evaluation import explained_variance_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(np.exp(rng.normal(size=(300, 2)) @ rng.normal(size=(2, 12)) / 2))
    >>> search = GridSearchCV(PCA(), {"n_components": [1, 2, 6]}, cv=KFold(3),
    ...                       scoring=explained_variance_scorer).fit(X)
    >>> search.best_params_
    {'n_components': 6}
    >>> nmf = NMF(n_components=2, max_iter=500, random_state=0).fit(X)
    >>> 0 < explained_variance_scorer(nmf, X) < 1
    True
    """
    model, X = _final_step_and_its_input(estimator, X)
    if sparse.issparse(X):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float64)
    return float(explained_variance(X, reconstruct(model, X)))
