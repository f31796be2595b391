"""What travels between an estimator and the training driver (no torch here).

``TrainingSpec`` is every setting of a run, one frozen, typed object that the
driver, the trainer and the epoch log read; the estimator builds it from its
parameters (``from_estimator``) after checking that they agree
(``check_levels``), so nothing downstream reads a setting by a string key.
``Fitted`` is what the driver returns, and ``Carried`` what ``partial_fit``
keeps between calls (it is pickled with the model, so this module must not
import torch).
"""

from dataclasses import dataclass, field, replace

import numpy as np

from ._losses import NONNEGATIVE_LOSSES


def default_level_sizes(n_latents, k):
    """Levels ``(n_latents // 4, n_latents // 2, n_latents)``, those >= k kept."""
    sizes = sorted({size for size in (n_latents // 4, n_latents // 2, n_latents)})
    return tuple(size for size in sizes if size >= max(k, 1))


def check_level_sizes(level_sizes, n_latents, *, prefix=False):
    """Check nested level sizes: the one check of them in the package.

    Parameters
    ----------
    level_sizes : sequence of int
        Cumulative sizes: level ``i`` uses latents ``[0, level_sizes[i])``.
    n_latents : int
        Size of the dictionary.
    prefix : bool, default=False
        False: the last level uses every latent (``level_sizes[-1] ==
        n_latents``, as ``level_sizes_``). True: the levels may stop short
        of it (prefixes shared by dictionaries of different sizes).

    Returns
    -------
    level_sizes : tuple of int

    Raises
    ------
    ValueError
        When the sizes are empty, not integers, not positive and strictly
        increasing, or do not end as ``prefix`` requires.

    Examples
    --------
    >>> from sklearn_nldisco.models import check_level_sizes
    >>> check_level_sizes([8, 16, 32], 32)
    (8, 16, 32)
    """
    sizes = None
    if not isinstance(level_sizes, (str, bytes)) and np.ndim(level_sizes) == 1:
        sizes = np.asarray(level_sizes)
    shown = tuple(sizes.tolist()) if sizes is not None else level_sizes
    if sizes is None or sizes.size == 0:
        raise ValueError(
            f"level_sizes={shown!r} is empty or not a sequence; expected at least one "
            "level (cumulative sizes, as level_sizes_)."
        )
    # a boolean is no size, even where NumPy would make it 0 or 1
    has_bool = sizes.dtype.kind == "b" or any(
        isinstance(size, (bool, np.bool_)) for size in level_sizes)
    if sizes.dtype.kind not in "iu" or has_bool:
        got = "booleans" if has_bool else f"dtype {sizes.dtype}"
        shown = tuple(level_sizes) if has_bool else shown
        raise ValueError(f"level_sizes={shown!r} must be integers (got {got}).")
    if sizes[0] < 1 or np.any(np.diff(sizes) <= 0):
        raise ValueError(
            f"level_sizes={shown!r} must be strictly increasing positive integers "
            "(each level is a prefix of the next)."
        )
    if prefix and sizes[-1] > n_latents:
        raise ValueError(
            f"level_sizes={shown!r} ends beyond n_latents={n_latents}; expected "
            "level_sizes[-1] <= n_latents."
        )
    if not prefix and sizes[-1] != n_latents:
        raise ValueError(
            f"level_sizes={shown!r} contradicts n_latents={n_latents}: the last "
            "level must use all latents (level_sizes[-1] == n_latents)."
        )
    return tuple(int(size) for size in sizes)


def check_level_k(k, level_sizes, n_latents):
    """Check a per-level ``k`` (a dict ``{level_size: k_level}``).

    Parameters
    ----------
    k : dict of int to int
        One budget per level; its keys are the level sizes.
    level_sizes : sequence of int or None
        The estimator's ``level_sizes``: the keys must equal them (None:
        the keys set them).
    n_latents : int
        Size of the dictionary.

    Returns
    -------
    level_sizes, level_k : tuple of int, tuple of int

    Raises
    ------
    ValueError
        When the keys are not valid level sizes, differ from
        ``level_sizes``, or a budget is not a positive integer, exceeds its
        level, or decreases from one level to the next.

    Examples
    --------
    >>> from sklearn_nldisco.models import check_level_k
    >>> check_level_k({16: 2, 32: 4}, None, 32)
    ((16, 32), (2, 4))
    """
    if not k:
        raise ValueError(f"k={k!r} is an empty dict; expected {{level_size: k_level}}.")
    try:
        keys = sorted(k)
    except TypeError:
        keys = list(k)
    sizes = check_level_size_keys(keys, n_latents, k)
    if level_sizes is not None:
        expected = check_level_sizes(level_sizes, n_latents)
        if sizes != expected:
            raise ValueError(
                f"k={k!r} has levels {sizes} but level_sizes={expected}; expected the "
                "keys of k to equal level_sizes (or level_sizes=None)."
            )
    budgets = tuple(k[size] for size in sizes)
    for size, budget in zip(sizes, budgets):
        if (not isinstance(budget, (int, np.integer)) or isinstance(budget, (bool, np.bool_))
                or not 1 <= budget <= size):
            raise ValueError(
                f"k={k!r} gives level {size} the budget {budget!r}; expected an integer "
                f"in [1, {size}]."
            )
    if any(later < earlier for earlier, later in zip(budgets, budgets[1:])):
        raise ValueError(
            f"k={k!r} decreases from one level to the next; expected k non-decreasing "
            "with the level size (a larger level has at least the budget of a smaller)."
        )
    return sizes, tuple(int(budget) for budget in budgets)


def check_level_size_keys(keys, n_latents, k):
    """The keys of a per-level ``k`` as checked level sizes."""
    try:
        return check_level_sizes(list(keys), n_latents)
    except ValueError as error:
        raise ValueError(f"k={k!r}: the keys are not valid level sizes ({error})") from None


def check_levels(n_latents, k, level_sizes=None, level_weights=None):
    """Check that ``n_latents``, ``k``, ``level_sizes`` and weights agree.

    The one check of nested level sizes in the package: the estimators run
    it before fitting and the command runs it on its settings.

    Parameters
    ----------
    n_latents : int
        Size of the dictionary.
    k : int or dict
        Active latents per sample; a dict ``{level_size: k_level}`` gives
        each level its own (``check_level_k``).
    level_sizes : sequence of int, default=None
        Strictly increasing prefix sizes, the last equal to ``n_latents``
        and the first at least ``k``. None gives ``(n_latents // 4,
        n_latents // 2, n_latents)`` without entries smaller than ``k``.
    level_weights : sequence of float, default=None
        One finite, non-negative weight per level, not all zero. None
        weighs every level equally.

    Returns
    -------
    level_sizes, level_weights : tuple of int, tuple of float

    Raises
    ------
    ValueError
        Naming the argument, the value and what was expected.

    Examples
    --------
    >>> from sklearn_nldisco.models import check_levels
    >>> check_levels(256, 8)
    ((64, 128, 256), (1.0, 1.0, 1.0))
    """
    if isinstance(k, dict):
        level_sizes = check_level_k(k, level_sizes, n_latents)[0]
        k = min(k.values())
    if k > n_latents:
        raise ValueError(
            f"k={k} is larger than n_latents={n_latents}; expected "
            f"1 <= k <= n_latents."
        )
    if level_sizes is None:
        sizes = default_level_sizes(n_latents, k)
    else:
        sizes = check_level_sizes(level_sizes, n_latents)
        if k > sizes[0]:
            raise ValueError(
                f"k={k} is larger than the first level (level_sizes[0]={sizes[0]}); "
                "expected k <= level_sizes[0] so that every level can hold k "
                "active latents."
            )
    return sizes, check_level_weights(level_weights, sizes)


def check_level_weights(level_weights, sizes):
    """One finite, non-negative weight per level, not all zero (None: all 1).

    Returns the weights as a tuple of floats (not normalised).
    """
    if level_weights is None:
        return (1.0,) * len(sizes)
    weights = tuple(float(weight) for weight in np.ravel(level_weights))
    if len(weights) != len(sizes):
        raise ValueError(
            f"level_weights={weights} has {len(weights)} entries but "
            f"there are {len(sizes)} levels (level_sizes={sizes}); expected one "
            "weight per level."
        )
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(
            f"level_weights={weights} must be finite, non-negative "
            "and not all zero."
        )
    return weights


def check_device(device):
    """The torch device a fit with ``device=device`` would train on.

    The check the estimators make when they fit, made beforehand (it
    imports torch, which coding never needs).

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``...

    Returns
    -------
    device : str
        The resolved device, e.g. ``"cpu"``.

    Raises
    ------
    ValueError
        When ``device`` is none of ``"auto"``, ``"cpu"``, ``"cuda"`` and
        ``"cuda:<index>"`` (the message lists them), or asks for CUDA, or a
        CUDA index, that this machine does not have.

    Examples
    --------
    >>> from sklearn_nldisco.models import check_device
    >>> check_device("cpu")
    'cpu'
    """
    from ._training import resolve_device  # torch, only when asked

    return str(resolve_device(device))


def max_k(k):
    """The largest budget of an int or per-level ``k``."""
    return max(k) if isinstance(k, tuple) else k


# ``fit`` caps the batch so that an epoch over few rows still takes this many steps
MIN_STEPS_PER_EPOCH = 10


@dataclass(frozen=True)
class TrainingSpec:
    """Every setting of a training run, resolved and checked.

    The fields mirror the estimators' parameters (see ``MatryoshkaSAE``);
    ``level_sizes`` and ``level_weights`` are resolved tuples, ``aux_k`` is
    an int, ``autoencoder`` says whether the target is the input and
    ``tied`` whether the encoder centres its input on the decoder bias (the
    mse autoencoder) rather than on an input bias of its own.
    ``k`` is an int (one selection shared by every level) or a tuple of
    one budget per level (each level selects its own latents).
    ``dead_window`` is in epochs until ``for_rows`` turns it into samples
    (``dead_window_rows``) for a number of training rows. There are no
    defaults here: the estimators' parameters are the one source of them.
    """

    level_sizes: tuple
    level_weights: tuple
    k: int
    autoencoder: bool
    tied: bool
    loss: str
    sparsity: str
    scaling: str
    bias_init: str
    batch_size: int
    learning_rate: float
    max_iter: int
    early_stopping: bool
    validation_fraction: float
    n_iter_no_change: int
    tol: float
    warmup_fraction: float
    decay_fraction: float
    grad_clip: float | None
    aux_k: int
    aux_coef: float
    dead_window: float
    mask_fraction: float
    device: str
    verbose: int
    dead_window_rows: float = 0.0

    @classmethod
    def from_estimator(cls, estimator, *, autoencoder):
        """The spec of a ``_BaseMatryoshka`` estimator's parameters."""
        sizes, weights = check_levels(
            estimator.n_latents, estimator.k, estimator.level_sizes, estimator.level_weights
        )
        params = estimator.get_params(deep=False)
        fields = {name: params[name] for name in cls.__dataclass_fields__ if name in params}
        k = estimator.k
        if isinstance(k, dict):
            k = check_level_k(k, estimator.level_sizes, estimator.n_latents)[1]
        fields.update(
            level_sizes=sizes, level_weights=weights, autoencoder=autoencoder, k=k,
            aux_k=estimator.aux_k if estimator.aux_k is not None else max_k(k),
            # the mse autoencoder centres its input on the decoder bias
            tied=autoencoder and estimator.loss not in NONNEGATIVE_LOSSES,
        )
        return cls(**fields)

    @property
    def per_level_k(self):
        """Whether each level has its own budget (``k`` a tuple)."""
        return isinstance(self.k, tuple)

    @property
    def n_latents(self):
        return self.level_sizes[-1]

    @property
    def counts_loss(self):
        """The target stays in counts (non-negative, unscaled)."""
        return self.loss in NONNEGATIVE_LOSSES

    def with_batch_for(self, n_train):
        """The spec with ``batch_size`` capped so that an epoch has enough steps.

        A fit over ``n_train`` rows takes at least ``MIN_STEPS_PER_EPOCH``
        optimiser steps per epoch: with 1,200 training rows and
        ``batch_size=1024`` an epoch would otherwise be one step.
        """
        adapted = max(1, -(-n_train // MIN_STEPS_PER_EPOCH))
        return replace(self, batch_size=min(self.batch_size, adapted))

    def for_rows(self, n_train, *, has_validation):
        """The spec resolved against ``n_train`` training rows."""
        return replace(
            self,
            early_stopping=self.early_stopping and has_validation,
            # a float always: the compiled kernel that reads it has one signature
            dead_window_rows=float(max(self.dead_window * n_train,
                                       min(self.batch_size, n_train))),
        )


@dataclass
class Carried:
    """What ``partial_fit`` carries from one call to the next.

    ``trainer``: the exported trainer (parameters, input bias and, after a
    streaming pass, Adam's moments, step count and dead-latent counters);
    ``scaling``: the frozen ``Scaling`` of the first chunk; ``threshold``:
    the running BatchTopK estimate and its weight; ``rng_state``: None to
    start from the estimator's ``random_state``; ``warmup_steps``: None
    until the first streaming pass fixes it; ``levels``: the level sizes
    and weights of the first call (None: the estimator's).
    """

    trainer: dict
    scaling: object
    threshold: tuple = (0.0, 0.0)
    rng_state: tuple | None = None
    warmup_steps: int | None = None
    levels: tuple | None = None
    n_iter: int = 0
    history: dict = field(default_factory=dict)


@dataclass
class Fitted:
    """What the driver returns: parameters, scaling, threshold and the run."""

    parameters: dict
    scaling: object
    threshold: float
    levels: tuple
    n_iter: int
    best_iter: int
    n_steps: int
    stop_reason: str
    history: dict
    device: str
    carried: Carried | None = None
