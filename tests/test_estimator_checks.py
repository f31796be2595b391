"""scikit-learn's estimator checks, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder

# Defaults except the epoch budget (the checks fit dozens of models) and the
# device (the checks run on CPU).
ESTIMATORS = [
    MatryoshkaSAE(max_iter=20, device="cpu", random_state=0),
    MatryoshkaTranscoder(max_iter=20, device="cpu", random_state=0),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
