"""Time windows of ``nldisco run --window N``, and the temporal evaluation of every run.

With ``--window N`` > 1 every model (the MSAE seeds and, for a fair
comparison, the PCA and NMF baselines) sees the
:class:`~sklearn_nldisco.preprocessing.TimeWindows` of the bins: the ``N``
bins ending at each bin, never crossing a trial (or time block), lag-major.
Rows stay bins, so the codes are per bin and selectivity works unchanged.

Every run, windowed or not, gets three measures of
:mod:`sklearn_nldisco.evaluation` on the held-out bins:

- **latent ablation** (:func:`~sklearn_nldisco.evaluation.latent_ablation`):
  the increase in held-out error when one latent's code is zeroed;
- **spectral fidelity** (:func:`~sklearn_nldisco.evaluation.spectral_fidelity`):
  per-unit Welch spectra of each bin's reconstruction (lag 0 of a window
  model) against the bins, trial by trial;
- **explained variance per lag** (window runs only,
  :func:`~sklearn_nldisco.evaluation.reconstruction_per_lag`).
"""

import dataclasses

import numpy as np
import pandas as pd

# Latents whose share of the total error increase the summary reports.
N_TOP_ABLATION = 10
# Latents shown in the ablation figure.
N_FIGURE_LATENTS = 20


def window_inputs(data, n_bins_window):
    """``data`` with windows of ``n_bins_window`` bins as what the models see.

    ``n_bins_window`` 1 returns ``data`` itself. Otherwise the windows are
    built within each interval of the training and of the held-out bins
    (``TimeWindows(n_bins_window, interval_ids=...)``; the first bins of an
    interval repeat its first bin), and the bins are kept as ``bins_train``
    and ``bins_test``.
    """
    from ..preprocessing import TimeWindows

    if n_bins_window == 1:
        return data
    windows = TimeWindows(n_bins_window, interval_ids=data.interval_ids_train)
    train = windows.fit_transform(data.X_train)
    test = windows.transform(data.X_test, interval_ids=data.interval_ids_test)
    return dataclasses.replace(data, X_train=train, X_test=test, windows=windows,
                               bins_train=data.X_train, bins_test=data.X_test)


def bins(data, X):
    """The bins of model inputs ``X``: lag 0 of windows, ``X`` itself without."""
    return X if data.windows is None else data.windows.inverse_transform(X)


def _model_input(name, X):
    # NMF codes the rectified activity (Baselines.transform)
    return np.maximum(X, 0.0) if name == "nmf" else X


def _reconstruction(model, X, codes):
    if hasattr(model, "reconstruct"):  # the MSAE runs; the baselines decode their codes
        return np.asarray(model.reconstruct(X), dtype=np.float64)
    return np.asarray(model.inverse_transform(codes), dtype=np.float64)


def ablation_summary(ablation, n_top=N_TOP_ABLATION):
    """Share of the positive error increase carried by the ``n_top`` largest latents."""
    increase = ablation["error_increase"].to_numpy()
    positive = np.clip(increase, 0.0, None)
    order = np.argsort(-increase, kind="stable")
    total = positive.sum()
    return {
        f"top{n_top}_share": float(positive[order[:n_top]].sum() / total) if total > 0 else None,
        "top_latents": [int(latent) for latent in order[:n_top]],
        "error_increase_fraction_top": [float(ablation["error_increase_fraction"].iloc[i])
                                        for i in order[:n_top]],
        "method": ablation.attrs.get("method"),
    }


def _median(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def spectral_summary(result):
    """The ``spectral_fidelity`` entry of a model: medians over the units."""
    return {
        "relative_error_median": _median(result.relative_error),
        "bands_hz": [[float(low), float(high)] for low, high in result.bands],
        "band_relative_error_median": [_median(row) for row in result.band_relative_error],
        "n_intervals": int(result.n_intervals), "n_segments": int(result.n_segments),
    }


@dataclasses.dataclass(frozen=True)
class TemporalEvaluation:
    """Per model: the metrics (``models``), ablation tables and spectra (for figures)."""

    models: dict
    ablation: dict
    spectra: dict


def temporal_evaluation(data, models, codes, settings):
    """Latent ablation, spectral fidelity and (windows) explained variance per lag.

    Parameters
    ----------
    data : Split
        After :func:`window_inputs`.
    models : dict of str to estimator
        Every model of the run by name.
    codes : dict of str to ndarray
        Their held-out codes.
    settings : dict
        ``bin_size`` and ``window`` are used.

    Returns
    -------
    evaluation : TemporalEvaluation
    """
    from ..evaluation import latent_ablation, reconstruction_per_lag, spectral_fidelity

    X = data.X_test
    X_bins = bins(data, X)
    n_bins_window = settings.get("window", 1)
    measures, tables, spectra = {}, {}, {}
    for name, model in models.items():
        given = _model_input(name, X)
        ablation = latent_ablation(model, given)
        tables[name] = ablation
        measures[name] = {"latent_ablation": ablation_summary(ablation)}
        reconstruction = _reconstruction(model, given, codes[name])
        try:
            result = spectral_fidelity(X_bins, bins(data, reconstruction),
                                       fs=1.0 / settings["bin_size"],
                                       interval_ids=data.interval_ids_test)
        except ValueError as error:  # intervals too short for a spectrum
            measures[name]["spectral_fidelity"] = {"skipped": str(error)}
        else:
            spectra[name] = result
            measures[name]["spectral_fidelity"] = spectral_summary(result)
        if n_bins_window > 1:
            # score only windows whose lags are all real bins of the interval
            full = _full_windows(data.interval_ids_test, n_bins_window)
            per_lag = reconstruction_per_lag(given[full], reconstruction[full], n_bins_window,
                                             X_bins.shape[1])
            measures[name]["explained_variance_per_lag"] = [float(v) for v in per_lag]
    return TemporalEvaluation(measures, tables, spectra)


def _full_windows(interval_ids, n_bins_window):
    """Rows at least ``n_bins_window - 1`` bins after the start of their interval."""
    interval_ids = np.asarray(interval_ids)
    starts = np.r_[True, interval_ids[1:] != interval_ids[:-1]]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(len(interval_ids)), 0))
    return np.arange(len(interval_ids)) - run_start >= n_bins_window - 1


def ablation_table(tables):
    """The rows of ``latent_ablation.csv``: every model's latents, largest increase first."""
    rows = []
    for name, table in tables.items():
        table = table.reset_index().sort_values("error_increase", ascending=False,
                                                 kind="stable")
        table.insert(0, "model", name)
        table["rank"] = np.arange(1, len(table) + 1)
        rows.append(table)
    return pd.concat(rows, ignore_index=True)


def plot_ablation(tables, first, n_latents=N_FIGURE_LATENTS):
    """Error increase of the first seed's top latents, and cumulative shares of every model."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    top = tables[first].sort_values("error_increase", ascending=False).head(n_latents)
    positions = np.arange(len(top))
    left.bar(positions, top["error_increase_fraction"].to_numpy(), color="tab:blue")
    left.set_xticks(positions, [str(latent) for latent in top.index], rotation=90,
                    fontsize=7)
    left.set_xlabel("latent")
    left.set_ylabel("explained variance lost")
    left.set_title(f"{first}: top {len(top)} latents")
    for name, table in tables.items():
        increase = np.sort(np.clip(table["error_increase"].to_numpy(), 0.0, None))[::-1]
        if increase.sum() > 0:
            right.plot(np.arange(1, increase.size + 1), np.cumsum(increase) / increase.sum(),
                       label=name, linewidth=1.5 if name == first else 1.0)
    right.axvline(N_TOP_ABLATION, color="0.6", linestyle=":", linewidth=0.8)
    right.set_xscale("log")
    right.set_ylim(0, 1.02)
    right.set_xlabel("latents, largest increase first")
    right.set_ylabel("share of the error increase")
    right.set_title("cumulative share")
    right.legend(fontsize=7)
    fig.suptitle("Latent ablation on the held-out bins")
    return fig


def plot_spectra(spectra, first):
    """Mean spectrum over units of the bins and of each reconstruction, and per-unit errors."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    names = list(spectra)
    if names:
        reference = spectra[names[0]]
        left.semilogy(reference.frequencies, reference.power.mean(axis=1), color="k",
                      linewidth=2.0, label="held-out bins")
        for name in names:
            left.semilogy(spectra[name].frequencies, spectra[name].power_hat.mean(axis=1),
                          label=name, linewidth=1.5 if name == first else 1.0)
        left.legend(fontsize=7)
        errors = [spectra[name].relative_error[np.isfinite(spectra[name].relative_error)]
                  for name in names]
        right.boxplot(errors, showfliers=False)
        right.set_xticks(np.arange(1, len(names) + 1), names, fontsize=8)
    left.set_xlabel("frequency (Hz)")
    left.set_ylabel("power, mean over units")
    left.set_title("Welch spectra")
    right.set_ylabel("relative spectral error per unit")
    right.set_title("spectral error")
    fig.suptitle("Spectral fidelity of the held-out reconstruction")
    return fig


def plot_level_k(comparison):
    """Per level: held-out explained variance and latents used per bin, per-level
    ``k`` against one shared ``k`` (``level_k_comparison`` of ``metrics.json``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    sizes = comparison["level_sizes"]
    positions = np.arange(len(sizes))
    for (key, label), color in zip(
            (("per_level", "per-level k " + "/".join(
                map(str, comparison["per_level"]["k_per_level"]))),
             ("shared", f"shared k={comparison['shared']['k']}")),
            ("tab:blue", "tab:orange")):
        values = comparison[key]
        left.plot(positions, values["explained_variance_per_level"], marker="o", color=color,
                  label=label)
        shifted = values.get("explained_variance_per_level_shifted")
        if shifted is not None:
            left.plot(positions, [np.nan if v is None else v for v in shifted], marker="o",
                      color=color, linestyle="--", linewidth=1.0,
                      label=f"{label}, unit-shifted")
        right.plot(positions, values["l0_per_level"], marker="o", color=color, label=label)
        right.plot(positions, values["k_per_level"], color=color, linestyle=":",
                   linewidth=1.0, label=f"{label}: k")
    for axis in (left, right):
        axis.set_xticks(positions, [str(size) for size in sizes])
        axis.set_xlabel("level (latents)")
        axis.legend(fontsize=7)
    left.set_ylabel("held-out explained variance")
    left.set_title("reconstruction of each level")
    right.set_ylabel("latents used per bin (L0)")
    right.set_title("budget and use of each level")
    fig.suptitle("Per-level k against one shared k (first seed)")
    return fig
