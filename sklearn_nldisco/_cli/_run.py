"""``nldisco run``: the stages of the command in turn, timed, with progress lines."""

import contextlib
import importlib
from pathlib import Path

from ._config import UsageError, baseline_k
from ._evaluate import evaluate
from ._interrupts import Interrupts
from ._output import OutputFolder
from ._progress import Progress, Timings
from ._temporal import window_inputs
from ._stages import (
    bin_spikes,
    fit_baselines,
    fit_msae,
    load,
    score,
    split,
    versions,
    write,
    write_metrics,
)
from ._truth import recovery_metrics, recovery_table


def run(settings, out, overwrite=False):
    """Run the whole analysis and write its artefacts to ``out``.

    Parameters
    ----------
    settings : dict
        Resolved settings (see ``_config.resolve``).
    out : path-like
        Output folder: missing or empty, or a previous run to replace as a
        whole with ``overwrite``. Everything is written into a hidden
        staging folder beside it, renamed into place at the end
        (``_output.OutputFolder``); a run that stops early leaves ``out``
        as it was.
    overwrite : bool, default=False
        Replace a previous run in ``out``.

    Returns
    -------
    artefacts : dict of str to pathlib.Path
        Every file written, by role (``"metrics"``, ``"selectivity"``,
        ``"config"``, ``"activations"``, ``"model:msae_seed0"``,
        ``"figure:decoder_weights"``, ``"figure:feature_card_latent3"`` ...),
        in the order written (``"report"`` is ``report.html``), in ``out``.

    Raises
    ------
    UsageError
        Before any computation, if ``out`` cannot be used (see
        ``OutputFolder``); later, for a user mistake found by a stage, or
        when the files cannot be written (a full disk).
    KeyboardInterrupt
        On Ctrl-C, even one that a model caught to keep its last good epoch
        (``_interrupts.Interrupts``): ``out`` is left as it was. An
        interrupt while the finished run is moved into place waits for the
        move, then is raised.
    """
    progress, timings = Progress(settings["quiet"]), Timings()
    with Interrupts() as interrupts, OutputFolder(out, overwrite=overwrite,
                                                  hold=interrupts.deferred) as folder:
        artefacts = _analyse(settings, folder.staging, folder.out, progress, timings,
                             check=interrupts.check, hold=interrupts.deferred)
        interrupts.check()
        with interrupts.deferred():
            try:
                out = folder.commit()
            except OSError as error:
                raise UsageError(f"could not move the finished run into {folder.out}: "
                                 f"{_reason(error)}") from None
    progress(f"done in {timings['total_s']:.1f} s: {len(artefacts)} files in {out}")
    return {role: out / path.name for role, path in artefacts.items()}


def _analyse(settings, staging, out, progress, timings, check=None, hold=None):
    """Every stage, writing into ``staging``; ``out`` is only named in progress lines.

    ``check(models)`` is called after each stage: it raises
    ``KeyboardInterrupt`` when the stage swallowed one
    (``Interrupts.check``). ``hold()`` is a context manager that holds SIGINT
    back while it lasts (``Interrupts.deferred``).
    """
    if check is None:
        def check(models=()):
            pass
    if hold is None:
        hold = contextlib.nullcontext
    with timings("load_s"):  # no progress line before: a user mistake here is the only line
        loaded = load(settings)
    progress(f"loaded {loaded.source} in {timings['load_s']:.1f} s: "
             f"{loaded.recording.n_units} units, {len(loaded.recording.trials)} trials")
    with timings("bin_s"):
        where = "inside trials" if loaded.recording.trials is not None and len(
            loaded.recording.trials) else "in contiguous time blocks"
        progress(f"binning spikes in {settings['bin_size']:g} s bins {where}")
        binned = bin_spikes(loaded, settings)
        data = split(binned, settings["seed"], loaded.source, baseline_k(settings))
        data = window_inputs(data, settings["window"])
    check()
    progress(f"{len(binned.X):,} bins; training {len(data.X_train):,}, held out "
             f"{len(data.X_test):,} ({data.how})")
    if data.windows is not None:
        progress(f"every model sees windows of {settings['window']} bins ending at each bin, "
                 "within each trial (or time block)")
    with timings("fit_msae_s"):
        # torch is imported by the first fit; a KeyboardInterrupt raised inside
        # its import (extension code calling back into Python) aborts the
        # process, so it is imported here with SIGINT held back
        with hold():
            _import_torch()
        msae = fit_msae(data.X_train, settings, progress, check)
    for seed, model in zip(msae.seeds, msae.runs):
        progress(f"MSAE seed {seed}: {model.n_iter_} epochs ({model.stop_reason_}), "
                 f"held-out explained variance {model.score(data.X_test):.3f}, "
                 f"{len(model.dead_latents_)} dead latents")
    with timings("fit_baselines_s"):
        progress(f"fitting PCA and NMF baselines with {baseline_k(settings)} components")
        baselines = fit_baselines(data.X_train, baseline_k(settings), settings["seed"])
    check()
    with timings("score_s"):
        scores = score(loaded, data, msae, baselines, settings, progress)
    check()
    with timings("evaluate_s"):
        evaluation = evaluate(data, msae, baselines, scores, settings, progress, check)
    check()
    ground_truth = None
    if loaded.ground_truth is not None:
        with timings("ground_truth_s"):
            progress(f"matching latents to the {loaded.ground_truth.n_features} planted "
                     "features of the simulation")
            ground_truth = _ground_truth(loaded.ground_truth, data, msae, baselines, scores,
                                         settings)
        check()
    live = {**{name: model.n_latents - len(model.dead_latents_)
               for name, model in msae.models.items()},
            **{name: int(model.n_components_) for name, model in baselines.models.items()}}
    selective = scores.metrics["n_selective_latents"]
    metrics = {**scores.metrics,
               "models": {name: {**values, **evaluation.models[name]}
                          for name, values in scores.metrics["models"].items()},
               "n_live_latents": live,
               # selective latents per live latent: comparable across model sizes
               "selective_fraction": {name: selective[name] / live[name] if live[name] else None
                                      for name in selective},
               "ground_truth": ground_truth,
               "evaluation": evaluation.metrics, "versions": versions()}
    if evaluation.level_k is not None:  # a per-level k: its shared-k comparison
        metrics["level_k_comparison"] = evaluation.level_k
    try:
        with timings("write_s"):
            progress(f"writing models, tables and figures to {out}")
            artefacts = write(staging, settings=settings, loaded=loaded, data=data,
                              msae=msae, baselines=baselines, scores=scores, metrics=metrics,
                              temporal=evaluation.temporal)
        timings["total_s"] = progress.elapsed()
        metrics["timings"] = {name: round(value, 3) for name, value in timings.items()}
        artefacts["metrics"] = write_metrics(staging / "metrics.json", metrics)
    except OSError as error:  # a full disk, a quota: the staging folder is removed
        raise UsageError(f"could not write the run to {out}: {_reason(error)}; nothing was "
                         "written there") from None
    return artefacts


def _reason(error):
    """What went wrong with a file, without the staging folder's path."""
    reason = error.strerror or str(error)
    name = getattr(error, "filename", None)
    return f"{reason} (writing {Path(name).name})" if name else reason


def _ground_truth(truth, data, msae, baselines, scores, settings):
    """The ``ground_truth`` entry of ``metrics.json`` (``_truth.recovery_metrics``)."""
    try:
        table = recovery_table(
            truth, scores.codes, {**msae.models, **baselines.models}, data.metadata_scored,
            n_permutations=settings["n_permutations"], random_state=settings["seed"])
    except ValueError as error:  # binned without the labels the planted conditions need
        return {"skipped": str(error)}
    return recovery_metrics(table)


def _import_torch():
    """Import torch now, if it is installed (a fit without it says so itself)."""
    try:
        importlib.import_module("torch")
    except ImportError:
        pass
