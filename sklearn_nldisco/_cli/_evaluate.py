"""The evaluate stage of ``nldisco run``: what each model found beyond its capacity.

Held-out explained variance measures how much a model can reproduce, not
what it found about the population: an overcomplete dictionary reconstructs
data without any cross-unit structure nearly as well. Beside it, every model
gets three measures of :mod:`sklearn_nldisco.evaluation`:

- the **unit-shifted control**: the same model class and settings refitted
  on training bins whose units were shifted in time independently
  (:func:`~sklearn_nldisco.evaluation.shift_units`) and scored on the
  held-out bins shifted the same way; ``structure_explained`` is the real
  explained variance minus the shifted one;
- **co-smoothing**: bits per spike of held-out units predicted from the
  others (:func:`~sklearn_nldisco.evaluation.co_smoothing`), on the spike
  counts before smoothing, beside the smoothing baseline;
- **single-unit dominance** of the decoder rows;
- latent ablation, spectral fidelity and, with ``--window``, explained
  variance per lag (:mod:`._temporal`).

With a per-level ``k`` (``--k 2 4 8``), the first seed's model is also
refitted with one shared ``k`` equal to the last level's, with its own
unit-shifted control (:func:`level_k_comparison`): what the per-level
budgets change, level by level.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from ._config import baseline_k, per_level_k, shared_k_settings
from ._stages import baseline_metrics, fit_baselines, fit_msae, reconstruction_metrics
from ._temporal import temporal_evaluation

# Fraction of units held out by co-smoothing, and the smoothing baseline's kernel.
CO_SMOOTHING_HELD_OUT = 0.25
SMOOTHING_BASELINE_SIGMA_BINS = 1.0
# The held-out bins are shifted with seed + this, as structure_control does.
HELD_OUT_SHIFT_OFFSET = 1000
# Dominance above which a latent counts as a copy of one unit.
SINGLE_UNIT_THRESHOLD = 0.8


@dataclass(frozen=True)
class Evaluation:
    """The measures of every model (``models``, by name) and how they were made.

    ``models`` holds the keys added to each model's entry of ``metrics.json``;
    ``metrics`` is the ``evaluation`` entry (protocols, seeds, the smoothing
    baseline); ``temporal`` the ablation tables and spectra
    (``_temporal.TemporalEvaluation``) for the report's figures;
    ``level_k`` the ``level_k_comparison`` entry (:func:`level_k_comparison`),
    None with a shared ``k``.
    """

    models: dict
    metrics: dict
    temporal: object = None
    level_k: dict | None = None


def evaluate(data, msae, baselines, scores, settings, progress, check=None):
    """The unit-shifted control, co-smoothing and single-unit dominance of every model.

    The shifted control is refitted for every MSAE seed and both baselines;
    co-smoothing, which refits each model on the held-in units and fits a
    Poisson readout to the held-out units, is run for the first seed and
    the baselines only, to keep the run short. ``check``, if given, is
    called after each refit (see ``_stages.fit_msae``).

    Returns
    -------
    evaluation : Evaluation
    """
    models = {**msae.models, **baselines.models}
    measures = {name: {} for name in models}
    # the readouts' products are small: one BLAS thread is faster than
    # several, and several on a busy machine are many times slower
    with threadpool_limits(limits=1, user_api="blas"):
        progress("unit-shifted control: refitting every model on unit-shifted training bins")
        shifted, control = shifted_explained_variance(
            data, msae, baselines, scores.metrics["models"], settings, progress, check)
        progress("co-smoothing: predicting held-out units from the latents of the others")
        bits, co_smoothing = co_smoothing_bits(data, msae, baselines, settings, check)
        comparison = None
        if per_level_k(settings):
            first = msae.first
            comparison = level_k_comparison(
                data, {**scores.metrics["models"][first], **shifted[first], "model": first},
                settings, progress, check)
    progress("latent ablation and spectral fidelity of the held-out reconstruction")
    temporal = temporal_evaluation(data, models, scores.codes, settings)
    for name, model in models.items():
        measures[name].update(shifted[name])
        measures[name]["co_smoothing_bits_per_spike"] = bits.get(name)
        measures[name].update(dominance(name, model, scores.selectivity))
        measures[name].update(temporal.models[name])
        progress(_summary_line(name, {**scores.metrics["models"][name], **measures[name]}))
    reference = co_smoothing.get("smoothing_baseline", {}).get("bits_per_spike")
    if reference is not None:
        progress(f"smoothing baseline: co-smoothing {reference:.3f} bits/spike")
    return Evaluation(measures, {
        "structure_control": control, "co_smoothing": co_smoothing,
        "single_unit_dominance": {
            "threshold": SINGLE_UNIT_THRESHOLD,
            "latents": "latents with a non-zero decoder row, dead MSAE latents left out; "
                       "_selective: the latents with a selective row in selectivity.csv"}},
        temporal, comparison)


def shifted_explained_variance(data, msae, baselines, real, settings, progress, check=None):
    """Held-out explained variance of each model refitted on unit-shifted bins.

    ``real`` is the ``models`` entry of ``metrics.json`` (the explained
    variance on the real bins, by model).

    Returns
    -------
    measures : dict of str to dict
        Per model ``explained_variance_shifted`` and ``structure_explained``
        (and per level for the MSAE runs).
    protocol : dict
        The ``structure_control`` entry of ``metrics.json``.
    """
    seed = settings["seed"]
    train, test = shifted_inputs(data, seed)
    # no epoch lines: they would read as the real fits' progress
    runs = fit_msae(train, {**settings, "quiet": True},
                    lambda line: progress(f"unit-shifted control: {line}"), check)
    control = fit_baselines(train, baseline_k(settings), seed)
    codes = {name: np.asarray(model.transform(test)) for name, model in runs.models.items()}
    codes.update(control.transform(test))
    shifted = {**reconstruction_metrics(runs, test, codes),
               **baseline_metrics(control, test, codes)}
    measures = {}
    for name, values in shifted.items():
        measures[name] = {
            "explained_variance_shifted": values["explained_variance"],
            "structure_explained": real[name]["explained_variance"]
            - values["explained_variance"]}
        if "explained_variance_per_level" in values:
            measures[name]["explained_variance_per_level_shifted"] = (
                values["explained_variance_per_level"])
            measures[name]["structure_explained_per_level"] = [
                a - b for a, b in zip(real[name]["explained_variance_per_level"],
                                      values["explained_variance_per_level"])]
    protocol = {
        "metric": "explained_variance",
        "input": "the bins the models are fitted on",
        "shift": "each unit circularly shifted in time by its own offset (shift_units), "
                 "training and held-out bins separately",
        "random_state": {"train": seed, "held_out": seed + HELD_OUT_SHIFT_OFFSET},
        "models": list(measures),
    }
    return measures, protocol


def shifted_inputs(data, seed):
    """The unit-shifted control's training and held-out model inputs.

    Each unit of the training bins is shifted with ``seed``, of the held-out
    bins with ``seed + HELD_OUT_SHIFT_OFFSET``; with windows the bins are
    shifted, then windowed as the real ones.
    """
    from ..evaluation import shift_units

    if data.windows is None:
        return (shift_units(data.X_train, random_state=seed),
                shift_units(data.X_test, random_state=seed + HELD_OUT_SHIFT_OFFSET))
    train = data.windows.transform(shift_units(data.bins_train, random_state=seed))
    test = data.windows.transform(
        shift_units(data.bins_test, random_state=seed + HELD_OUT_SHIFT_OFFSET),
        interval_ids=data.interval_ids_test)
    return train, test


# The entries of a model's metrics compared level by level.
LEVEL_K_KEYS = ("k_per_level", "l0_per_level", "explained_variance_per_level",
                "explained_variance_per_level_shifted", "explained_variance",
                "explained_variance_shifted", "l0", "n_epochs")


def level_k_comparison(data, per_level, settings, progress, check=None):
    """The first seed's per-level ``k`` against one shared ``k`` of the last level's size.

    The shared-``k`` model (same levels and settings, the first seed only, to
    keep the run short) is fitted on the training bins and, for its
    unit-shifted control, on the shifted ones (:func:`shifted_inputs`).

    Parameters
    ----------
    per_level : dict
        The first seed's entry of ``metrics.json`` so far (reconstruction and
        shifted control), with its name as ``"model"``.

    Returns
    -------
    comparison : dict
        The ``level_k_comparison`` entry of ``metrics.json``: ``seed``,
        ``level_sizes``, and per model (``per_level``, ``shared``) its
        budgets, L0 and explained variance (real and unit-shifted), per level
        and overall.
    """
    seed = settings["seed"]
    shared = {**shared_k_settings(settings), "seeds": 1, "quiet": True}

    def say(line):
        progress(f"shared-k comparison: {line}")

    say(f"refitting the first seed with one shared k={shared['k']} over all latents")
    runs = fit_msae(data.X_train, shared, say, check)
    codes = {name: np.asarray(model.transform(data.X_test))
             for name, model in runs.models.items()}
    real = reconstruction_metrics(runs, data.X_test, codes)[runs.first]
    train, test = shifted_inputs(data, seed)
    control_runs = fit_msae(train, shared, lambda line: say(f"unit-shifted control: {line}"),
                            check)
    codes = {name: np.asarray(model.transform(test))
             for name, model in control_runs.models.items()}
    control = reconstruction_metrics(control_runs, test, codes)[control_runs.first]
    real.update(explained_variance_shifted=control["explained_variance"],
                explained_variance_per_level_shifted=control["explained_variance_per_level"])
    comparison = {
        "seed": seed, "level_sizes": real["level_sizes"],
        "per_level": {"model": per_level["model"],
                      **{key: per_level.get(key) for key in LEVEL_K_KEYS}},
        "shared": {"k": shared["k"], **{key: real[key] for key in LEVEL_K_KEYS}},
        "protocol": "the first seed refitted with one shared k (the last level's) over all "
                    "latents, same levels and settings; its unit-shifted control refitted "
                    "on the same shifted bins as the run's",
    }
    for level, size in enumerate(real["level_sizes"]):
        say(f"level {size}: per-level k={per_level['k_per_level'][level]} uses "
            f"{per_level['l0_per_level'][level]:.2f} latents per bin, explained variance "
            f"{per_level['explained_variance_per_level'][level]:.3f}; shared "
            f"k={shared['k']} {real['l0_per_level'][level]:.2f}, "
            f"{real['explained_variance_per_level'][level]:.3f}")
    return comparison


def co_smoothing_bits(data, msae, baselines, settings, check=None):
    """Co-smoothing bits per spike of the first MSAE seed, the baselines and smoothing alone.

    Every model is refitted on the held-in units of the training counts
    (before smoothing), preceded by the run's smoothing
    (``GaussianSmoother(smooth_sigma / bin_size)``) when there is one; the
    held-out units are the same for every model.

    Returns
    -------
    bits : dict of str to float or None
        Pooled bits per spike on the held-out bins' held-out units.
    protocol : dict
        The ``co_smoothing`` entry of ``metrics.json``.
    """
    from ..evaluation import GaussianSmoother, co_smoothing
    from ..preprocessing import TimeWindows

    seed = settings["seed"]
    sigma_bins = settings["smooth_sigma"] / settings["bin_size"]
    train, test = data.counts_train, data.counts_test
    protocol = {
        "input": ("binned spike counts before smoothing" if sigma_bins > 0
                  else "binned spike counts (the run does not smooth)"),
        "model_input": (f"GaussianSmoother({sigma_bins:g}) of the held-in counts (sigma in "
                        "bins), then the model: the run's smoothing, applied over the bins "
                        "in time order rather than within each trial" if sigma_bins > 0
                        else "the held-in counts"),
        "held_out": CO_SMOOTHING_HELD_OUT, "random_state": seed,
        "readout": "PoissonReadout() (ridge per unit chosen on contiguous training blocks)",
    }
    if data.windows is not None:
        protocol["model_input"] += (
            f", through TimeWindows({data.windows.n_bins_window}) of the held-in units; "
            "unlike the run's windows, these run across the joins between trials")
    try:
        reference = co_smoothing(GaussianSmoother(SMOOTHING_BASELINE_SIGMA_BINS), train, test,
                                 held_out=CO_SMOOTHING_HELD_OUT, random_state=seed)
    except ValueError as error:  # too few units to hold some out and keep some in
        return {}, {**protocol, "models": [], "skipped": str(error)}
    held_out = reference.held_out_units
    n_held_in = train.shape[1] - len(held_out)
    first = msae.runs[0]
    estimators = {
        # a new instance, not a clone: a clone would carry the progress callbacks
        msae.first: type(first)(**first.get_params(deep=False)).set_params(n_threads=1),
        "pca": clone(baselines.pca).set_params(
            n_components=min(baselines.pca.n_components, n_held_in)),
        "nmf": clone(baselines.nmf),
    }
    bits = {}
    for name, estimator in estimators.items():
        if data.windows is not None:
            # co_smoothing passes no interval ids: its windows run across trial joins
            estimator = make_pipeline(TimeWindows(data.windows.n_bins_window), estimator)
        if sigma_bins > 0:
            estimator = make_pipeline(GaussianSmoother(sigma_bins), estimator)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Mm]aximum number of iterations.*")
            result = co_smoothing(estimator, train, test, held_out=held_out)
        if check is not None:
            check(())  # an interrupted refit returns; the run must not go on
        bits[name] = _finite(result.bits_per_spike)
    protocol.update({
        "held_out_units": [int(unit) for unit in held_out], "models": list(bits),
        "smoothing_baseline": {"sigma_bins": SMOOTHING_BASELINE_SIGMA_BINS,
                               "bits_per_spike": _finite(reference.bits_per_spike)}})
    return bits, protocol


def dominance(name, model, selectivity):
    """Median single-unit dominance and single-unit fractions of a model's decoder rows.

    Dead MSAE latents (never active in training) keep their initial decoder
    rows and are left out. ``single_unit_fraction_selective`` is over the
    latents with a selective row in ``selectivity`` (None without any).
    """
    from ..evaluation import single_unit_dominance, single_unit_fraction

    values = single_unit_dominance(model)
    live = np.setdiff1d(np.arange(len(values)), getattr(model, "dead_latents_", []))
    live = live[np.isfinite(values[live])]
    rows = selectivity.loc[(selectivity["model"] == name)
                           & selectivity["selective"].astype(bool), "latent"]
    selective = np.unique(rows.to_numpy(dtype=int))
    return {
        "single_unit_dominance_median": (float(np.median(values[live])) if live.size
                                         else None),
        "single_unit_fraction": _finite(single_unit_fraction(
            model, threshold=SINGLE_UNIT_THRESHOLD, latents=live)),
        "single_unit_fraction_selective": (_finite(single_unit_fraction(
            model, threshold=SINGLE_UNIT_THRESHOLD, latents=selective))
            if selective.size else None),
    }


def _finite(value):
    """A float, or None for NaN (``metrics.json`` is strict JSON)."""
    value = float(value)
    return value if np.isfinite(value) else None


def _summary_line(name, values):
    line = (f"{name}: held-out explained variance {values['explained_variance']:.3f}, "
            f"{values['explained_variance_shifted']:.3f} on unit-shifted data "
            f"(structure explained {values['structure_explained']:.3f})")
    bits = values.get("co_smoothing_bits_per_spike")
    if bits is not None:
        line += f"; co-smoothing {bits:.3f} bits/spike"
    return line
