"""Diagnostic figures: the dictionary, the codes, the fit and one latent at a glance.

Every function takes plain arrays (or a DataFrame, or anything with the named
fitted attribute), draws with matplotlib's object API and returns the
:class:`~matplotlib.figure.Figure`. Nothing here opens a window or touches
pyplot's global state, so the figures can be saved, embedded in a report or
shown by the caller.
"""

import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import sparse
from sklearn.utils.validation import check_array

from ._attribution import latent_units
from ..models import check_level_sizes
from ._conditions import DEFAULT_MAX_CATEGORIES, DEFAULT_N_BINS, discretise, n_bins_for
from ._validation import (
    _check_activity_threshold,
    _check_codes,
    _check_latent,
    _check_n_top,
    _dictionary,
    _unit_names,
)

_LEVEL_COLORS = "tab10"


# helpers


def _figure(fig, figsize):
    """Return ``fig`` or a new pyplot-free Figure."""
    if fig is None:
        return Figure(figsize=figsize, layout="constrained")
    return fig


def _root_figure(ax):
    return ax.get_figure(root=True)


def _active(codes, activity_threshold):
    """Boolean activity of ``codes``, sparse where ``codes`` is sparse."""
    return codes > _check_activity_threshold(activity_threshold, non_negative=True)


def _l0_per_row(codes, activity_threshold):
    active = _active(codes, activity_threshold)
    return np.asarray(active.sum(axis=1)).ravel().astype(int)


def _frequency_per_latent(codes, activity_threshold):
    active = _active(codes, activity_threshold)
    return np.asarray(active.sum(axis=0)).ravel() / codes.shape[0]


def _levels(level_sizes, n_latents):
    """Cumulative level sizes as an int array; None is one level of all latents."""
    if level_sizes is None:
        return np.array([n_latents])
    return np.asarray(check_level_sizes(level_sizes, n_latents))


def _level_slices(level_sizes):
    """The latents each level adds: ``[m_(i-1), m_i)``."""
    starts = np.concatenate([[0], level_sizes[:-1]])
    return [slice(int(a), int(b)) for a, b in zip(starts, level_sizes)]


def _level_label(level, block, n_levels):
    if n_levels == 1:
        return f"latents {block.start}-{block.stop - 1}"
    return f"level {level}: latents {block.start}-{block.stop - 1}"


def _level_colors(n_levels):
    from matplotlib import colormaps

    cmap = colormaps[_LEVEL_COLORS]
    return [cmap(i % cmap.N) for i in range(n_levels)]


def _unit_labels(unit_names, n_units, X=None, estimator=None):
    """Tick labels of the units: their names, or ``unit i``."""
    names = _unit_names(unit_names, n_units, X, estimator)
    if names is None:
        return [f"unit {i}" for i in range(n_units)]
    return [str(name) for name in names]


# dictionary


def plot_decoder_weights(components, level_sizes=None, *, bins=50, fig=None):
    """Distribution of decoder weights and how many units each latent uses.

    Parameters
    ----------
    components : array-like of shape (n_latents, n_features) or fitted estimator
        Decoder (dictionary) weights, one row per latent, or any fitted model
        with a ``components_`` attribute (MatryoshkaSAE, PCA, NMF...). For a
        model with ``level_sizes_`` the levels are used unless
        ``level_sizes`` is given.
    level_sizes : array-like of int, default=None
        Cumulative level sizes ending at ``n_latents`` (as ``level_sizes_``).
        Each level's new latents get their own colour. None treats all
        latents as one level.
    bins : int, default=50
        Number of equal-width bins of the weight histogram.
    fig : Figure or SubFigure, default=None
        Empty figure to draw into. A new one is made when None.

    Returns
    -------
    fig : Figure
        Two axes: a histogram of all weights, stacked by level (the bar
        heights add up to ``n_latents * n_features``), and the participation
        ratio of each latent's decoder row,
        ``(sum w**2)**2 / sum w**4``, roughly the number of units the latent
        writes to (1 for a single unit, ``n_features`` for a flat row).

    Raises
    ------
    ValueError
        If ``components`` is not 2-D or ``level_sizes`` does not match it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._figures import plot_decoder_weights
    >>> components = np.random.default_rng(0).normal(size=(6, 10))
    >>> fig = plot_decoder_weights(components, level_sizes=(2, 6))
    >>> type(fig).__name__, len(fig.axes)
    ('Figure', 2)
    """
    if level_sizes is None:
        level_sizes = getattr(components, "level_sizes_", None)
    weights = _dictionary(components)
    n_latents, n_features = weights.shape
    sizes = _levels(level_sizes, n_latents)
    blocks = _level_slices(sizes)
    colors = _level_colors(len(blocks))
    labels = [_level_label(i, b, len(blocks)) for i, b in enumerate(blocks)]

    fig = _figure(fig, (9, 3.5))
    ax_hist, ax_pr = fig.subplots(1, 2)

    edges = np.histogram_bin_edges(weights, bins=bins)
    ax_hist.hist(
        [weights[b].ravel() for b in blocks],
        bins=edges,
        stacked=True,
        color=colors,
        label=labels,
    )
    ax_hist.set_xlabel("decoder weight")
    ax_hist.set_ylabel("count (latent x unit)")
    ax_hist.set_title("decoder weights")
    if len(blocks) > 1:
        ax_hist.legend(fontsize="small")

    squares = weights**2
    fourth = np.sum(squares**2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(fourth > 0, np.sum(squares, axis=1) ** 2 / fourth, 0.0)
    for block, color in zip(blocks, colors):
        positions = np.arange(block.start, block.stop)
        ax_pr.bar(positions, ratio[block], width=0.9, color=color)
    ax_pr.set_xlabel("latent")
    ax_pr.set_ylabel("participation ratio (units)")
    ax_pr.set_ylim(0, max(n_features, 1) * 1.05)
    ax_pr.set_title("units per latent")
    return fig


# codes


def plot_l0(codes, *, activity_threshold=0.0, ax=None):
    """Histogram of L0, the number of active latents per row.

    Parameters
    ----------
    codes : {array-like, sparse matrix} of shape (n_rows, n_latents)
        Latent activations, for example ``model.transform(X)``.
    activity_threshold : float, default=0.0
        A latent is active in a row where its code exceeds this value.
    ax : Axes, default=None
        Axes to draw into. A new figure is made when None.

    Returns
    -------
    fig : Figure
        One bar per L0 value from 0 to the largest observed; the bar heights
        add up to ``n_rows``. A dashed line marks the mean L0.

    Raises
    ------
    ValueError
        If ``codes`` is not 2-D or ``activity_threshold`` is negative.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._figures import plot_l0
    >>> codes = np.array([[0.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    >>> fig = plot_l0(codes)
    >>> [float(patch.get_height()) for patch in fig.axes[0].patches]
    [1.0, 1.0, 1.0]
    """
    codes = _check_codes(codes)
    l0 = _l0_per_row(codes, activity_threshold)
    counts = np.bincount(l0, minlength=1).astype(float)
    if ax is None:
        fig = _figure(None, (5, 3.5))
        ax = fig.subplots()
    else:
        fig = _root_figure(ax)
    ax.bar(np.arange(counts.size), counts, width=0.9, color="tab:blue")
    mean = l0.mean()
    ax.axvline(mean, color="k", linestyle="--", label=f"mean {mean:.2f}")
    ax.set_xlabel("active latents per row (L0)")
    ax.set_ylabel("rows")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"L0 over {codes.shape[0]} rows")
    ax.legend(fontsize="small")
    return fig


def plot_latent_frequency(
    codes, level_sizes=None, *, activity_threshold=0.0, bins=30, fig=None
):
    """Log-scale histogram of how often each latent fires, one panel per level.

    Parameters
    ----------
    codes : {array-like, sparse matrix} of shape (n_rows, n_latents)
        Latent activations, for example ``model.transform(X)``.
    level_sizes : array-like of int, default=None
        Cumulative level sizes ending at ``n_latents`` (as ``level_sizes_``);
        each panel shows the latents that level adds. None gives one panel.
    activity_threshold : float, default=0.0
        A latent is active in a row where its code exceeds this value.
    bins : int, default=30
        Number of log-spaced bins between ``1 / n_rows`` and 1.
    fig : Figure or SubFigure, default=None
        Empty figure to draw into. A new one is made when None.

    Returns
    -------
    fig : Figure
        One axes per level. The x axis is ``log10`` of the firing frequency
        (fraction of rows in which the latent is active); latents that never
        fire are counted in a separate grey "dead" bar at the left, so the
        bar heights of each panel add up to the number of latents in it.

    Raises
    ------
    ValueError
        If ``codes`` is not 2-D or ``level_sizes`` does not match it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._figures import plot_latent_frequency
    >>> codes = np.random.default_rng(0).exponential(size=(50, 8))
    >>> codes[codes < 1.0] = 0.0
    >>> codes[:, 7] = 0.0
    >>> fig = plot_latent_frequency(codes, level_sizes=(4, 8))
    >>> type(fig).__name__, len(fig.axes)
    ('Figure', 2)
    """
    codes = _check_codes(codes)
    n_rows, n_latents = codes.shape
    if n_rows == 0:
        raise ValueError("codes must have at least one row, got 0.")
    sizes = _levels(level_sizes, n_latents)
    blocks = _level_slices(sizes)
    colors = _level_colors(len(blocks))
    frequency = _frequency_per_latent(codes, activity_threshold)

    low = np.log10(1.0 / n_rows)
    edges = np.linspace(low, 0.0, bins + 1) if low < 0 else np.linspace(-1, 0, bins + 1)
    width = edges[1] - edges[0]
    dead_position = edges[0] - 1.5 * width

    fig = _figure(fig, (6, 1.2 + 2.0 * len(blocks)))
    axes = np.atleast_1d(fig.subplots(len(blocks), 1, sharex=True, squeeze=False)[:, 0])
    for level, (ax, block, color) in enumerate(zip(axes, blocks, colors)):
        level_frequency = frequency[block]
        alive = level_frequency > 0
        n_dead = int(np.sum(~alive))
        counts, _ = np.histogram(np.log10(level_frequency[alive]), bins=edges)
        ax.bar(edges[:-1], counts, width=width, align="edge", color=color)
        ax.bar(
            [dead_position],
            [n_dead],
            width=width,
            color="0.6",
            hatch="//",
            label=f"dead: {n_dead}",
        )
        ax.set_ylabel("latents")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(_level_label(level, block, len(blocks)), fontsize="medium")
        ax.legend(fontsize="small", loc="upper left")
    axes[-1].set_xlabel("log10 firing frequency (fraction of rows active)")
    return fig


# reconstruction


def _unit_r2(X, X_hat):
    """Per-column R², NaN where a unit does not vary."""
    residual = np.sum((X - X_hat) ** 2, axis=0)
    total = np.sum((X - X.mean(axis=0)) ** 2, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - residual / total, np.nan)


def plot_unit_r2(X, X_hat, unit_names=None, *, sort=True, ax=None):
    """Reconstruction R² of every unit.

    Parameters
    ----------
    X : {array-like, sparse matrix, DataFrame} of shape (n_rows, n_units)
        The data, for example binned spike counts.
    X_hat : {array-like, sparse matrix} of shape (n_rows, n_units)
        Its reconstruction, for example ``model.inverse_transform(codes)``.
    unit_names : array-like of shape (n_units,), default=None
        Names of the units. Defaults to the columns of a DataFrame ``X``,
        then positions.
    sort : bool, default=True
        Order the bars from best to worst reconstructed unit.
    ax : Axes, default=None
        Axes to draw into. A new figure is made when None.

    Returns
    -------
    fig : Figure
        One bar per unit with height ``1 - SS_res / SS_tot`` for that unit
        (NaN, drawn as no bar, for a unit that never varies). A dashed line
        marks the variance-weighted R² over all units.

    Raises
    ------
    ValueError
        If ``X`` and ``X_hat`` differ in shape or ``unit_names`` in length.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._figures import plot_unit_r2
    >>> X = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 2.0]])
    >>> fig = plot_unit_r2(X, X, unit_names=["a", "b"])
    >>> [float(patch.get_height()) for patch in fig.axes[0].patches]
    [1.0, 1.0]
    """
    original = X
    X = check_array(X, accept_sparse="csr", dtype=np.float64, input_name="X")
    X_hat = check_array(
        X_hat, accept_sparse="csr", dtype=np.float64, input_name="X_hat"
    )
    if X.shape != X_hat.shape:
        raise ValueError(
            f"X and X_hat must have the same shape, got {X.shape} and {X_hat.shape}."
        )
    names = _unit_labels(unit_names, X.shape[1], original)
    X = X.toarray() if sparse.issparse(X) else X
    X_hat = X_hat.toarray() if sparse.issparse(X_hat) else X_hat
    r2 = _unit_r2(X, X_hat)
    total = np.sum((X - X.mean(axis=0)) ** 2)
    overall = 1.0 - np.sum((X - X_hat) ** 2) / total if total > 0 else np.nan

    order = np.arange(r2.size)
    if sort:
        # NaN last, best first.
        order = np.argsort(np.where(np.isnan(r2), -np.inf, -r2), kind="stable")

    if ax is None:
        fig = _figure(None, (max(5.0, 0.18 * r2.size + 2.0), 3.5))
        ax = fig.subplots()
    else:
        fig = _root_figure(ax)
    positions = np.arange(r2.size)
    ax.bar(positions, r2[order], width=0.85, color="tab:blue")
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.axhline(
        overall, color="tab:red", linestyle="--", label=f"all units {overall:.3f}"
    )
    if r2.size <= 60:
        ax.set_xticks(
            positions, [names[i] for i in order], rotation=90, fontsize="small"
        )
    ax.set_xlabel("unit" + (" (best first)" if sort else ""))
    ax.set_ylabel("R²")
    ax.set_title("reconstruction R² per unit")
    ax.legend(fontsize="small")
    return fig


# training


def plot_training_curves(history, *, best_iter=None, fig=None):
    """Per-level losses, held-out explained variance, L0 and dead fraction per epoch.

    Parameters
    ----------
    history : dict or fitted estimator
        The ``history_`` of a fitted MatryoshkaSAE (or the estimator itself):
        ``train_loss`` of shape (n_epochs, n_levels) is required;
        ``val_loss``, ``val_explained_variance`` (same shape), ``l0`` and
        ``dead_fraction`` (n_epochs,) are drawn when present and not all NaN.
    best_iter : int, default=None
        Epoch (1-based) whose parameters were kept, marked by a dotted
        vertical line in every panel. Taken from ``best_iter_`` when an
        estimator is given.
    fig : Figure or SubFigure, default=None
        Empty figure to draw into. A new one is made when None.

    Returns
    -------
    fig : Figure
        Four axes: loss (training, solid, and held-out, dashed, one line per
        level), held-out explained variance (one line per level), L0 and
        dead fraction. Epochs run from 1 to ``n_epochs``.

    Raises
    ------
    ValueError
        If ``train_loss`` is missing or the arrays disagree in shape.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_nldisco.interpretation._figures import plot_training_curves
    >>> history = {"train_loss": np.array([[1.0, 0.9], [0.8, 0.6], [0.7, 0.5]]),
    ...            "l0": np.array([4.0, 4.0, 4.0])}
    >>> fig = plot_training_curves(history)
    >>> [len(line.get_xdata()) for line in fig.axes[0].get_lines()]
    [3, 3]
    """
    if hasattr(history, "history_"):
        if best_iter is None:
            best_iter = getattr(history, "best_iter_", None)
        history = history.history_
    if not isinstance(history, dict) or "train_loss" not in history:
        raise ValueError(
            "history must be a dict with a 'train_loss' entry (the history_ of "
            f"a fitted model), got {type(history).__name__}."
        )
    train_loss = np.asarray(history["train_loss"], dtype=np.float64)
    if train_loss.ndim == 1:
        train_loss = train_loss[:, None]
    if train_loss.ndim != 2 or train_loss.shape[0] == 0:
        raise ValueError(
            "history['train_loss'] must have shape (n_epochs, n_levels) with "
            f"n_epochs >= 1, got {train_loss.shape}."
        )
    n_epochs, n_levels = train_loss.shape

    def entry(key, ndim):
        if key not in history:
            return None
        values = np.asarray(history[key], dtype=np.float64)
        if ndim == 2 and values.ndim == 1:
            values = values[:, None]
        expected = (n_epochs, n_levels) if ndim == 2 else (n_epochs,)
        if values.shape != expected:
            raise ValueError(
                f"history[{key!r}] must have shape {expected} to match "
                f"train_loss, got {values.shape}."
            )
        return None if np.all(np.isnan(values)) else values

    val_loss = entry("val_loss", 2)
    val_ev = entry("val_explained_variance", 2)
    l0 = entry("l0", 1)
    dead = entry("dead_fraction", 1)

    epochs = np.arange(1, n_epochs + 1)
    colors = _level_colors(n_levels)
    fig = _figure(fig, (9, 6))
    axes = fig.subplots(2, 2, sharex=True).ravel()
    ax_loss, ax_ev, ax_l0, ax_dead = axes

    for level in range(n_levels):
        ax_loss.plot(
            epochs, train_loss[:, level], color=colors[level], label=f"level {level}"
        )
    if val_loss is not None:
        for level in range(n_levels):
            ax_loss.plot(
                epochs, val_loss[:, level], color=colors[level], linestyle="--"
            )
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss (solid: training, dashed: held-out)", fontsize="medium")
    ax_loss.legend(fontsize="small")

    if val_ev is not None:
        for level in range(n_levels):
            ax_ev.plot(
                epochs, val_ev[:, level], color=colors[level], label=f"level {level}"
            )
    else:
        ax_ev.text(0.5, 0.5, "no held-out rows", ha="center", va="center",
                   transform=ax_ev.transAxes)
    ax_ev.set_ylabel("explained variance")
    ax_ev.set_title("held-out explained variance", fontsize="medium")

    for ax, values, label in ((ax_l0, l0, "L0"), (ax_dead, dead, "dead fraction")):
        if values is not None:
            ax.plot(epochs, values, color="k", marker="." if n_epochs < 30 else None)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_ylabel(label)
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if dead is not None:
        ax_dead.set_ylim(-0.02, 1.02)

    if best_iter is not None:
        for ax in axes:
            ax.axvline(best_iter, color="0.5", linestyle=":", label="_best epoch")
    return fig


# feature card


def _tuning(activation, active, values, conditions):
    """Mean activation, SEM and fraction active per condition of one variable.

    Returns a DataFrame indexed by condition name, in the order of
    ``conditions``, with columns ``position`` (sector centre in radians, mean
    value within a bin, or category index), ``mean``, ``sem``,
    ``fraction_active`` and ``n``; rows with a missing value are left out.
    """
    keep = conditions.labels >= 0
    frame = pd.DataFrame({
        "condition": conditions.labels[keep],
        "activation": activation[keep],
        "active": active[keep],
    })
    table = frame.groupby("condition").agg(
        mean=("activation", "mean"),
        sem=("activation", "sem"),
        fraction_active=("active", "mean"),
        n=("activation", "size"),
    ).reindex(np.arange(len(conditions.names)))
    if conditions.kind == "angle":
        table["position"] = np.deg2rad(conditions.bounds.mean(axis=1))
    elif conditions.kind == "continuous":
        numeric = values.to_numpy(dtype=np.float64)[keep]
        table["position"] = pd.Series(numeric).groupby(frame["condition"]).mean()
    else:
        table["position"] = np.arange(len(table), dtype=float)
    table.index = pd.Index(conditions.names, dtype=object, name="condition")
    return table


def _draw_tuning(ax, table, kind, quantity, color):
    values = table[quantity].to_numpy(dtype=np.float64)
    if kind == "angle":
        theta = table["position"].to_numpy()
        # Close the loop so the tuning curve reads as a shape on the circle.
        ax.plot(np.append(theta, theta[0]), np.append(values, values[0]),
                color=color, marker="o", markersize=3)
        ax.fill(theta, np.nan_to_num(values), color=color, alpha=0.15)
        ax.set_theta_zero_location("E")
        ax.set_rlim(0, None)
        ax.yaxis.set_major_locator(MaxNLocator(3))
        ax.set_rlabel_position(67.5)
        ax.tick_params(labelsize="x-small")
    elif kind == "continuous":
        error = table["sem"].to_numpy(dtype=np.float64) if quantity == "mean" else None
        ax.errorbar(table["position"].to_numpy(), values, yerr=error, color=color,
                    marker="o", markersize=3, capsize=2)
        ax.set_ylim(bottom=0)
    else:
        error = table["sem"].to_numpy(dtype=np.float64) if quantity == "mean" else None
        positions = table["position"].to_numpy()
        ax.bar(positions, values, yerr=error, color=color, width=0.7, capsize=2)
        ax.set_xticks(positions, [str(c) for c in table.index],
                      rotation=30 if len(positions) > 3 else 0, fontsize="small")


def _card_units(latent, codes, X, components, unit_names, n_top, activity_threshold):
    """Scores, labels and axis label of the units of the card, by ``latent_units``.

    The decoder ranking when ``components`` is given, else the activity
    ranking; None when neither ``components`` nor ``X`` is given.
    """
    if components is None and X is None:
        return None
    by = "decoder" if components is not None else "activity"
    with warnings.catch_warnings():
        # a latent never active in these rows: its card shows empty activity bars
        warnings.filterwarnings("ignore", message="Latent .* is never active")
        units = latent_units(latent, X, codes, components=components, unit_names=unit_names,
                             n_top=n_top, activity_threshold=activity_threshold)
    column = "decoder_weight" if by == "decoder" else "activity_z"
    scores = units[column].to_numpy(dtype=np.float64)
    ranks = units[f"{by}_rank"].to_numpy(dtype=np.float64)
    order = np.argsort(np.where(np.isnan(ranks), np.inf, ranks), kind="stable")
    order = order[:min(n_top, scores.size)]
    model = components if hasattr(components, "components_") else None
    labels = _unit_labels(unit_names, scores.size, X, model)
    label = "decoder weight" if by == "decoder" else "mean z-score while active"
    return scores[order], [labels[i] for i in order], label


def plot_feature_card(
    latent,
    codes,
    metadata,
    *,
    variables=None,
    angle_variables=("direction_deg",),
    X=None,
    components=None,
    unit_names=None,
    n_top=10,
    n_bins=DEFAULT_N_BINS,
    max_categories=DEFAULT_MAX_CATEGORIES,
    activity_threshold=0.0,
    fig=None,
):
    """One latent at a glance: its tuning to behaviour and its top units.

    For each behavioural variable the rows are grouped into the conditions
    that :class:`~sklearn_nldisco.SelectivityScorer` tests (with the same
    ``angle_variables``, ``n_bins`` and ``max_categories``), and the card
    shows, per condition, the latent's mean activation (inactive rows count
    as zero; error bars are standard errors) and the fraction of rows in
    which it is active:

    - angle variables (in degrees) on polar axes, in ``n_bins`` equal sectors
      of the circle starting at -180 (empty sectors left out);
    - discrete variables (non-numeric, boolean, or integer with at most
      ``max_categories`` distinct values, such as a trial phase or type) as
      bars, one per value;
    - other numeric variables (such as speed) as lines over ``n_bins``
      quantile bins, placed at the mean value within each bin.

    Parameters
    ----------
    latent : int
        Index of the latent, ``0 <= latent < n_latents``.
    codes : {array-like, sparse matrix} of shape (n_rows, n_latents)
        Latent activations, for example ``model.transform(X)``.
    metadata : DataFrame of shape (n_rows, n_variables)
        Behaviour aligned with the rows of ``codes``. Rows with a missing
        value are left out of that variable's panels.
    variables : sequence of str, default=None
        Columns of ``metadata`` to show, in order. None shows all columns.
    angle_variables : sequence of str, default=("direction_deg",)
        Columns holding angles in degrees, drawn on polar axes. Names that
        are not in ``variables`` are ignored.
    X : {array-like, DataFrame} of shape (n_rows, n_units), default=None
        Activity of the units. Without ``components``, the top units are
        ranked by their mean z-score over the rows in which the latent is
        active. Also the default source of ``unit_names``.
    components : array-like of shape (n_latents, n_units) or fitted estimator, \
default=None
        The dictionary: decoder weights, or a model with ``components_``.
        When given, the top units are those with the largest decoder weight
        for the latent.
    unit_names : array-like of shape (n_units,), default=None
        Names of the units. Defaults to the columns of a DataFrame ``X``,
        then the model's ``feature_names_in_``, then positions.
    n_top : int, default=10
        Number of top units shown (clipped to ``n_units``).
    n_bins : int or dict of str to int, default=10
        Sectors of angle variables and quantile bins of continuous ones; a
        dict gives them per column (10 for the others), as in
        :class:`~sklearn_nldisco.SelectivityScorer`.
    max_categories : int, default=64
        Integer columns with more distinct values are binned as continuous.
    activity_threshold : float, default=0.0
        The latent is active in a row where its code exceeds this value.
    fig : Figure or SubFigure, default=None
        Empty figure to draw into. A new one is made when None.

    Returns
    -------
    fig : Figure
        Two axes per variable (mean activation above, fraction active below;
        polar for angle variables), plus one axes of top units when
        ``components`` or ``X`` is given. Axes are in that order: for each
        variable its mean panel then its fraction panel, then the units.

    Raises
    ------
    ValueError
        If ``latent`` is out of range, if ``codes``, ``metadata``, ``X``,
        ``components`` and ``unit_names`` disagree in shape, or if a variable
        is not a column of ``metadata``.

    See Also
    --------
    sklearn_nldisco.SelectivityScorer : Tests the same conditions.
    latent_units : Ranks the units shown.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn_nldisco.interpretation._figures import plot_feature_card
    >>> rng = np.random.default_rng(0)
    >>> metadata = pd.DataFrame({"direction_deg": rng.uniform(0, 360, 200),
    ...                          "phase": rng.choice(["hold", "move"], 200)})
    >>> moving = (metadata[["phase"]] == "move").to_numpy()
    >>> codes = rng.exponential(size=(200, 3)) * moving
    >>> fig = plot_feature_card(0, codes, metadata)
    >>> type(fig).__name__, len(fig.axes)
    ('Figure', 4)
    """
    codes = _check_codes(codes)
    n_rows, n_latents = codes.shape
    latent = _check_latent(latent, n_latents)
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(
            f"metadata must be a pandas DataFrame, got {type(metadata).__name__}."
        )
    if len(metadata) != n_rows:
        raise ValueError(
            f"metadata must have one row per row of codes ({n_rows}), got "
            f"{len(metadata)}."
        )
    if variables is None:
        variables = list(metadata.columns)
    elif isinstance(variables, str):
        variables = [variables]
    else:
        variables = list(variables)
    missing = [v for v in variables if v not in metadata.columns]
    if missing:
        raise ValueError(
            f"variables {missing!r} are not columns of metadata "
            f"({list(metadata.columns)!r})."
        )
    if not variables:
        raise ValueError("variables must name at least one column of metadata.")
    for name in variables:
        n_bins_for(n_bins, name)
    n_top = _check_n_top(n_top)
    activity_threshold = _check_activity_threshold(activity_threshold, non_negative=True)
    column = codes[:, [latent]]
    activation = (column.toarray() if sparse.issparse(column) else column).ravel()
    active = activation > activity_threshold
    units = _card_units(latent, codes, X, components, unit_names, n_top, activity_threshold)

    n_columns = len(variables) + (units is not None)
    fig = _figure(fig, (3.0 * n_columns + 0.5, 6.0))
    grid = fig.add_gridspec(2, n_columns)
    angle_variables = set(angle_variables or ())
    for index, name in enumerate(variables):
        values = metadata[name].reset_index(drop=True)
        conditions = discretise(values, name, is_angle=name in angle_variables,
                                n_bins=n_bins, max_categories=max_categories)
        table = _tuning(activation, active, values, conditions)
        kind = conditions.kind
        projection = "polar" if kind == "angle" else None
        for row, (quantity, label, color) in enumerate(
            (("mean", "mean activation", "tab:blue"),
             ("fraction_active", "fraction active", "tab:orange"))
        ):
            ax = fig.add_subplot(grid[row, index], projection=projection)
            _draw_tuning(ax, table, kind, quantity, color)
            if kind == "angle":
                ax.set_title(f"{name}\n{label}", fontsize="medium")
            else:
                ax.set_title(name if row == 0 else "", fontsize="medium")
                ax.set_ylabel(label)
                if row == 1:
                    ax.set_xlabel(name)

    if units is not None:
        scores, labels, score_label = units
        ax = fig.add_subplot(grid[:, -1])
        positions = np.arange(scores.size)
        ax.barh(positions, scores, color="tab:green")
        ax.set_yticks(positions, labels, fontsize="small")
        ax.invert_yaxis()
        ax.axvline(0.0, color="k", linewidth=0.8)
        ax.set_xlabel(score_label)
        ax.set_title(f"top {scores.size} units", fontsize="medium")

    fig.suptitle(
        f"latent {latent}: active in {active.mean():.1%} of {n_rows} rows, "
        f"mean activation {activation.mean():.3g}"
    )
    return fig
