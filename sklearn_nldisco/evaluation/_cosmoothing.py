"""Co-smoothing: predicting held-out neurons from the latents of the others."""

import inspect
import numbers

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.base import (
    BaseEstimator,
    TransformerMixin,
    _fit_context,
    clone,
    is_regressor,
)
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._metadata_requests import _routing_enabled
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, process_routing
from sklearn.utils.validation import check_is_fitted, validate_data

from ..preprocessing import interval_positions
from ._intervals import _WithinIntervalsMixin
from ._readout import PoissonReadout, bits_per_spike, bits_per_spike_per_unit


class GaussianSmoother(_WithinIntervalsMixin, TransformerMixin, BaseEstimator):
    """Smooth every column over consecutive rows (time bins) with a Gaussian kernel.

    Stateless: ``fit`` only records the number of columns. Each call of
    ``transform`` smooths the rows it is given on their own (edges
    reflected), so a held-out block is never smoothed with training rows.
    Rows must be consecutive time bins in time order; with
    ``interval_ids`` (trials, or stretches between gaps) each interval is
    smoothed on its own, its edges reflected, so no trial is smoothed with
    its neighbour.

    This is the co-smoothing protocol's smoothing baseline
    (``CoSmoothing(GaussianSmoother(sigma))``), and a denoising step before
    a model (``make_pipeline(GaussianSmoother(1.0), MatryoshkaSAE())``).

    Parameters
    ----------
    sigma : float, default=1.0
        Standard deviation of the kernel, in bins (0: no smoothing).
    interval_ids : array-like of shape (n_rows,), default=None
        Interval of each row, each interval's rows consecutive; None: all
        rows are one stretch. Used by ``transform`` when it is not given
        ``interval_ids`` itself, so it must match the rows of every array
        transformed; for subsets of rows pass it to ``fit`` and
        ``transform`` instead (through a Pipeline or :class:`CoSmoothing`
        with metadata routing).

    See Also
    --------
    OffsetFeatures : The rows at fixed offsets from each row, within intervals.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.evaluation import GaussianSmoother
    >>> X = np.zeros((5, 1)); X[2] = 1.0
    >>> GaussianSmoother(sigma=1.0).fit_transform(X).ravel().round(3)
    array([0.058, 0.242, 0.399, 0.242, 0.058])
    >>> GaussianSmoother(sigma=1.0, interval_ids=[0, 0, 0, 1, 1]).fit_transform(X).ravel().round(3)
    array([0.063, 0.296, 0.641, 0.   , 0.   ])
    """

    _parameter_constraints = {
        "sigma": [Interval(numbers.Real, 0, None, closed="left")],
        "interval_ids": ["array-like", None],
    }

    def __init__(self, sigma=1.0, *, interval_ids=None):
        self.sigma = sigma
        self.interval_ids = interval_ids

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, interval_ids=None):
        """Record the number of columns; nothing is learned.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
        y : None
            Ignored.
        interval_ids : array-like of shape (n_rows,), default=None
            Interval of each row, checked only; None: the constructor's.

        Returns
        -------
        self : GaussianSmoother
        """
        X = validate_data(self, X, dtype=np.float64)
        interval_positions(self._interval_ids(interval_ids), X.shape[0])
        return self

    def transform(self, X, interval_ids=None):
        """The smoothed rows, shape ``(n_rows, n_features)``.

        Needs no ``fit``; after one, ``X`` must have the fitted number of columns.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
        interval_ids : array-like of shape (n_rows,), default=None
            Interval of each row; None: the constructor's ``interval_ids``.
        """
        X = validate_data(self, X, dtype=np.float64, reset=False)
        interval_ids = self._interval_ids(interval_ids)
        if interval_ids is None:
            return _smooth(X, self.sigma)
        positions, _ = interval_positions(interval_ids, X.shape[0])
        starts = np.flatnonzero(positions == 0)
        return np.vstack([_smooth(block, self.sigma) for block in np.split(X, starts[1:])]
                         or [X.copy()])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


def _smooth(X, sigma):
    if sigma == 0:
        return X.copy()
    return gaussian_filter1d(X, float(sigma), axis=0, mode="reflect")


def _choose_held_out(held_out, n_units, random_state):
    """Indices of the held-out units from a fraction or an explicit list."""
    if isinstance(held_out, numbers.Real) and not isinstance(held_out, (bool, np.bool_)):
        if not 0 < held_out < 1:
            raise ValueError(f"held_out as a fraction must be in (0, 1); got {held_out!r}.")
        n_held_out = int(round(held_out * n_units))
        if n_held_out < 1 or n_held_out > n_units - 1:
            raise ValueError(
                f"held_out={held_out!r} of {n_units} units leaves no held-out or no held-in "
                "unit; co-smoothing needs at least one of each."
            )
        rng = check_random_state(random_state)
        return np.sort(rng.choice(n_units, size=n_held_out, replace=False))
    units = np.asarray(held_out)
    if units.ndim != 1 or units.size == 0 or not np.issubdtype(units.dtype, np.integer):
        raise ValueError(
            "held_out must be a fraction in (0, 1) or a non-empty 1-D array of unit "
            f"indices; got {held_out!r}."
        )
    if units.min() < -n_units or units.max() >= n_units:
        raise ValueError(f"held_out indices must be in [0, {n_units}); got {units.tolist()}.")
    units = np.unique(units % n_units)
    if units.size >= n_units:
        raise ValueError("held_out names every unit; co-smoothing needs held-in units.")
    return units


class CoSmoothing(BaseEstimator):
    """Fit a model on held-in units, predict held-out units through a Poisson readout.

    The co-smoothing protocol of the Neural Latents Benchmark: a fixed subset
    of units is held out. ``fit`` fits ``estimator`` on the other (held-in)
    units, then a :class:`PoissonReadout` from its output
    (``estimator.transform`` of the held-in counts) to the held-out units'
    counts. ``score`` transforms new rows' held-in units and reports the
    readout's bits per spike on their held-out units: how much of each
    held-out neuron's activity the population's latents predict. A model
    that only copies single units scores nothing here, whatever its
    reconstruction.

    A regressor (for example a :class:`~sklearn_nldisco.MatryoshkaTranscoder`,
    or ``make_pipeline(TimeWindows(n), MatryoshkaTranscoder())``, a window
    transcoder) is fitted to map held-in counts to held-out counts, and its
    ``transform`` output (its codes) is read out the same way.

    Use it in a grid search with time-respecting folds (``KFold`` without
    shuffling, or ``GroupKFold`` over trials): its ``score`` is the scorer.

    **Trials.** ``fit``, ``predict``, ``score`` and ``score_units`` take
    ``interval_ids`` (the trial of each row, e.g. a binner's
    ``interval_ids_``) and hand them to the steps of ``estimator`` that
    smooth or window over time (:class:`GaussianSmoother`,
    :class:`OffsetFeatures`, :class:`~sklearn_nldisco.preprocessing.TimeWindows`),
    so nothing is smoothed or windowed across a trial boundary. Given a
    Pipeline, this needs metadata routing
    (``sklearn.set_config(enable_metadata_routing=True)``, and
    ``step.set_fit_request(interval_ids=True).set_transform_request(interval_ids=True)``
    on those steps); a bare :class:`GaussianSmoother` or window step is
    handed them directly.

    Parameters
    ----------
    estimator : estimator with ``fit`` and ``transform``
        The model (a Pipeline is fine, e.g. with :class:`GaussianSmoother`
        first). Cloned.
    held_out : float or array-like of int, default=0.25
        Fraction of units held out, drawn with ``random_state``, or their
        column indices.
    readout : estimator, default=None
        Regressor from the model's output to held-out counts with a
        ``predict`` that returns positive rates; None:
        ``PoissonReadout()``. Cloned.
    random_state : int, RandomState instance or None, default=0
        Draws the held-out units when ``held_out`` is a fraction.

    Attributes
    ----------
    held_out_units_, held_in_units_ : ndarray of int
        Column indices.
    estimator_ : the fitted model (on held-in units).
    readout_ : the fitted readout.
    n_features_in_ : int

    See Also
    --------
    OffsetFeatures : Read a window model out from the windows that cover
        each bin, or centre its windows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_nldisco.evaluation import CoSmoothing
    >>> rng = np.random.default_rng(0)
    >>> rate = np.exp(0.8 * rng.normal(size=(2000, 1)) @ np.ones((1, 20)) - 1)
    >>> X = rng.poisson(rate).astype(float)
    >>> model = CoSmoothing(PCA(n_components=2), held_out=0.25).fit(X[:1500])
    >>> model.score(X[1500:]) > 0
    True
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "transform"])],
        "held_out": [Interval(numbers.Real, 0, 1, closed="neither"), "array-like"],
        "readout": [HasMethods(["fit", "predict"]), None],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, held_out=0.25, readout=None, random_state=0):
        self.estimator = estimator
        self.held_out = held_out
        self.readout = readout
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, *, interval_ids=None):
        """Fit the model on held-in units and the readout to held-out units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_units)
            Spike counts, rows in time order.
        y : None
            Ignored.
        interval_ids : array-like of shape (n_samples,), default=None
            Trial (interval) of each row, each trial's rows consecutive;
            handed to the model's steps that smooth or window over time.
            None: the rows are one stretch.

        Returns
        -------
        self : CoSmoothing
        """
        X = validate_data(self, X, dtype=np.float64)
        _check_counts(X)
        params = self._estimator_params("fit", interval_ids, X.shape[0])
        held_out = _choose_held_out(self.held_out, X.shape[1], self.random_state)
        held_in = np.setdiff1d(np.arange(X.shape[1]), held_out)
        X_in, X_out = X[:, held_in], X[:, held_out]
        estimator = clone(self.estimator)
        if is_regressor(estimator):
            estimator.fit(X_in, X_out, **params["fit"])
        else:
            estimator.fit(X_in, **params["fit"])
        readout = PoissonReadout() if self.readout is None else clone(self.readout)
        readout.fit(estimator.transform(X_in, **params["transform"]), X_out)
        self.held_out_units_ = held_out
        self.held_in_units_ = held_in
        self.estimator_ = estimator
        self.readout_ = readout
        return self

    def predict(self, X, *, interval_ids=None):
        """Predicted rates of the held-out units, shape ``(n_samples, n_held_out)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_units)
            All units (the held-out columns are not used).
        interval_ids : array-like of shape (n_samples,), default=None
            Trial of each row, as for ``fit``.
        """
        return self._rates(X, interval_ids, "predict")

    def score(self, X, y=None, *, interval_ids=None):
        """Bits per spike of the held-out units of ``X``, pooled over units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_units)
            Spike counts of new rows (held-in units are the input, held-out
            units the target).
        y : None
            Ignored.
        interval_ids : array-like of shape (n_samples,), default=None
            Trial of each row, as for ``fit``.

        Returns
        -------
        bits : float
        """
        return bits_per_spike(*self._held_out_counts_and_rates(X, interval_ids))

    def score_units(self, X, *, interval_ids=None):
        """Bits per spike of each held-out unit on its own, shape ``(n_held_out,)``.

        ``interval_ids`` as for :meth:`score`.
        """
        return bits_per_spike_per_unit(*self._held_out_counts_and_rates(X, interval_ids))

    def _held_out_counts_and_rates(self, X, interval_ids):
        # routed as "score": score and score_units read the held-out rates
        rates = self._rates(X, interval_ids, "score")
        X = np.asarray(X, dtype=np.float64)
        _check_counts(X)
        return X[:, self.held_out_units_], rates

    def _rates(self, X, interval_ids, method):
        """The readout's rates; ``method`` names the caller for metadata routing."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        params = self._estimator_params(method, interval_ids, X.shape[0])
        features = self.estimator_.transform(X[:, self.held_in_units_], **params["transform"])
        rates = np.asarray(self.readout_.predict(features), dtype=np.float64)
        return rates.reshape(len(X), -1)

    def _estimator_params(self, method, interval_ids, n_rows):
        """What the estimator's ``fit`` and ``transform`` get when called from ``method``."""
        if interval_ids is None:
            return {"fit": {}, "transform": {}}
        interval_positions(interval_ids, n_rows)
        if _routing_enabled():
            routed = process_routing(self, method, interval_ids=interval_ids)["estimator"]
            return {"fit": dict(routed.get("fit", {})),
                    "transform": dict(routed.get("transform", {}))}
        callees = ("fit", "transform") if method == "fit" else ("transform",)
        refused = [callee for callee in callees
                   if not _takes_interval_ids(getattr(self.estimator, callee, None))]
        if refused:
            raise ValueError(
                f"interval_ids were given but {type(self.estimator).__name__}."
                f"{refused[0]} does not take them. For a Pipeline, enable metadata routing "
                "(sklearn.set_config(enable_metadata_routing=True)) and call "
                "set_fit_request(interval_ids=True).set_transform_request(interval_ids=True) "
                "on its steps that smooth or window over time; for a model that uses no "
                "time order, pass interval_ids=None."
            )
        params = {"interval_ids": interval_ids}
        return {"fit": params if method == "fit" else {}, "transform": params}

    def get_metadata_routing(self):
        """How ``interval_ids`` reach the model: to its ``fit`` and ``transform``.

        ``fit`` routes to the model's ``fit`` and ``transform`` (the
        readout's training features); ``predict`` and ``score`` (also
        ``score_units``) to its ``transform``.

        Returns
        -------
        routing : MetadataRouter
        """
        return MetadataRouter(owner=self).add(
            estimator=self.estimator,
            method_mapping=MethodMapping()
            .add(caller="fit", callee="fit")
            .add(caller="fit", callee="transform")
            .add(caller="predict", callee="transform")
            .add(caller="score", callee="transform"),
        )


def _takes_interval_ids(method):
    if method is None:
        return False
    try:
        return "interval_ids" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _check_counts(X):
    if np.any(X < 0):
        raise ValueError("co-smoothing needs non-negative spike counts; X has negative values.")


def co_smoothing(estimator, X_train, X_test, *, held_out=0.25, readout=None, random_state=0,
                 interval_ids_train=None, interval_ids_test=None):
    """Co-smoothing bits per spike of a model, fitted on training rows, scored on test rows.

    Parameters
    ----------
    estimator : estimator with ``fit`` and ``transform``
        Cloned; see :class:`CoSmoothing`.
    X_train, X_test : array-like of shape (n_samples, n_units)
        Spike counts of training and held-out rows (for example the first
        80 % and the last 20 % of time, or training and test trials).
    held_out, readout, random_state
        As for :class:`CoSmoothing`.
    interval_ids_train, interval_ids_test : array-like of shape (n_samples,), default=None
        Trial of each row of ``X_train`` and ``X_test`` (the ``interval_ids``
        of :meth:`CoSmoothing.fit` and :meth:`CoSmoothing.score`): give
        both or neither.

    Returns
    -------
    result : Bunch
        ``bits_per_spike`` (pooled over held-out units, on ``X_test``),
        ``bits_per_spike_per_unit``, ``held_out_units``, and ``model`` (the
        fitted :class:`CoSmoothing`).
    """
    if (interval_ids_train is None) != (interval_ids_test is None):
        raise ValueError(
            "interval_ids_train and interval_ids_test must be given together (the trials of "
            "both blocks) or not at all; got "
            f"interval_ids_train={'None' if interval_ids_train is None else 'an array'} and "
            f"interval_ids_test={'None' if interval_ids_test is None else 'an array'}."
        )
    model = CoSmoothing(estimator, held_out=held_out, readout=readout,
                        random_state=random_state).fit(X_train, interval_ids=interval_ids_train)
    counts, rates = model._held_out_counts_and_rates(X_test, interval_ids_test)
    return Bunch(
        bits_per_spike=bits_per_spike(counts, rates),
        bits_per_spike_per_unit=bits_per_spike_per_unit(counts, rates),
        held_out_units=model.held_out_units_,
        model=model,
    )


def co_smoothing_scorer(estimator, X, y=None):
    """A scorer (``scoring=co_smoothing_scorer``) for a fitted :class:`CoSmoothing`.

    Equivalent to ``estimator.score(X)``; given for symmetry with
    scikit-learn's named scorers. ``estimator`` may also be a Pipeline whose
    last step is a ``CoSmoothing``, for example
    ``make_pipeline(SpikeBinner(), CoSmoothing(model))`` given
    :class:`~sklearn_nldisco.preprocessing.SpikeEpochs`: the steps before it
    transform ``X`` (bin the test epochs) first.
    """
    steps = getattr(estimator, "steps", None)
    final = estimator if steps is None else steps[-1][1]
    if not isinstance(final, CoSmoothing):
        raise TypeError(
            "co_smoothing_scorer scores a fitted CoSmoothing, or a Pipeline ending in "
            f"one (wrap the model: CoSmoothing(model)); got {type(estimator).__name__}"
            f"{'' if steps is None else ' ending in ' + type(final).__name__}."
        )
    return float(estimator.score(X))
