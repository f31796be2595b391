"""The stages of ``nldisco run``: load, bin, split, fit, baselines, score, write.

Each stage is a function of what it needs that returns what it makes;
``_run.run`` calls them in turn. A user mistake found by a stage is a
``UsageError``.
"""

import dataclasses
import json
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from ._config import (
    UsageError,
    baseline_k,
    binner_parameters,
    model_parameters,
    write_config,
)
from ._progress import EpochProgress
from ._report import write_report
from ._variables import (
    Variables,
    build_metadata,
    catalogue,
    check_variable_names,
    choose_events,
    choose_variables,
    has_trials,
    is_mc_maze_shaped,
    scorable_variables,
    split_blocks,
    time_blocks,
)

# Behavioural variables scored for selectivity when the binned data carry no
# choice of their own (see _variables): labels that vary within a trial are
# tested against circular shifts, labels fixed for a whole trial against
# permuted trials.
SELECTIVITY_VARIABLES = ("phase", "trial_type", "speed", "direction_deg")
TRIAL_LEVEL_VARIABLES = ("trial_type",)
# Held-out trial labels of a ``split`` column.
HELD_OUT_SPLITS = ("test", "val")
N_FEATURE_CARDS = 4


@dataclass(frozen=True)
class Loaded:
    """A recording and where it came from (a path, or the simulated session).

    ``ground_truth`` is the simulated session's ``ReachingGroundTruth``
    (None for a file): the report shows how well each model finds it.
    """

    recording: object
    source: str
    ground_truth: object = None


@dataclass(frozen=True)
class Binned:
    """Binned activity (n_bins, n_units) and ``bin_metadata`` of the bins.

    ``X`` is what the models see (smoothed within trials when
    ``smooth_sigma`` is set); ``counts`` are the spike counts before
    smoothing, or None when ``X`` is not smoothed (``X`` is then the counts).
    """

    X: np.ndarray
    metadata: pd.DataFrame
    counts: np.ndarray | None = None
    variables: Variables | None = None
    block_duration: float | None = None

    @property
    def in_blocks(self):
        """Whether the bins are time blocks of a recording without trials."""
        return self.block_duration is not None


@dataclass(frozen=True)
class Split:
    """Training and held-out bins, by whole trials (or time blocks), and how they were chosen.

    ``metadata_test`` keeps the ``bin_metadata`` index of the held-out bins
    (the bin labels of the saved activations); ``metadata_scored`` is the
    same rows numbered from 0, in the order of ``X_test``. ``counts_train``
    and ``counts_test`` are the same bins' spike counts before smoothing
    (``X_train`` and ``X_test`` themselves when nothing was smoothed).
    ``interval_ids_train`` and ``interval_ids_test`` are the binner's
    interval (trial or time block) of each row.

    With ``--window N`` > 1 (``_windows.window_inputs``), ``X_train`` and
    ``X_test`` are what the models see, the time windows of the bins
    (one row per bin); ``windows`` is the fitted ``TimeWindows`` and
    ``bins_train``, ``bins_test`` the bins themselves. Otherwise
    ``windows`` is None and the bins are ``X_train`` and ``X_test``.
    """

    X_train: np.ndarray
    X_test: np.ndarray
    metadata_test: pd.DataFrame
    how: str
    counts_train: np.ndarray
    counts_test: np.ndarray
    variables: Variables | None = None
    interval_ids_train: np.ndarray | None = None
    interval_ids_test: np.ndarray | None = None
    windows: object = None
    bins_train: np.ndarray | None = None
    bins_test: np.ndarray | None = None

    @property
    def metadata_scored(self):
        return self.metadata_test.reset_index(drop=True)


@dataclass(frozen=True)
class MSAERuns:
    """The fitted ``MatryoshkaSAE`` of every seed, in the order of ``seeds``."""

    seeds: list
    runs: list

    @property
    def models(self):
        """The runs by name, ``msae_seed{seed}``."""
        return {f"msae_seed{seed}": model for seed, model in zip(self.seeds, self.runs)}

    @property
    def first(self):
        """Name of the first seed's run, the one the figures show."""
        return f"msae_seed{self.seeds[0]}"


@dataclass(frozen=True)
class Baselines:
    """PCA and NMF fitted on the training bins."""

    pca: object
    nmf: object

    @property
    def models(self):
        return {"pca": self.pca, "nmf": self.nmf}

    def transform(self, X):
        """Codes of each baseline (NMF codes the rectified activity)."""
        return {"pca": self.pca.transform(X), "nmf": self.nmf.transform(np.maximum(X, 0.0))}


@dataclass(frozen=True)
class Scores:
    """Held-out codes of every model, the headline metrics and the selectivity table."""

    codes: dict
    metrics: dict
    selectivity: pd.DataFrame


# ---------------------------------------------------------------- load, bin, split

def load(settings):
    """The recording of the run: the NWB file, or the built-in simulated session.

    A file without a trials table (or with an empty one) is binned whole,
    in time blocks: its recording gets an empty trials table. The blocks,
    the events (``--events``) and the names of ``--variables`` are checked
    here, before any binning.

    Raises
    ------
    UsageError
        If the file is missing, is not NWB, has no units, has a single trial,
        lacks the event columns asked for, or has fewer units than ``k``.
    """
    from ..datasets import load_nwb, make_reaching_session

    if settings["nwb_file"] is None:
        recording, truth = make_reaching_session(
            n_units=settings["n_units"], n_trials=settings["n_trials"],
            random_state=settings["seed"])
        return Loaded(recording, "simulated reaching session", truth)
    path = Path(settings["nwb_file"])
    try:
        recording = load_nwb(path)
    except (ValueError, OSError) as error:  # FileNotFoundError is an OSError
        raise UsageError(str(error)) from None
    if recording.n_units == 0:
        raise UsageError(f"{path} has no units (no spike times to analyse)")
    if not has_trials(recording):
        time_blocks(recording, settings["bin_size"], settings["block_duration"], str(path))
        recording = dataclasses.replace(recording, trials=pd.DataFrame(
            {"start_time": [], "stop_time": []}, index=pd.Index([], name="trial_id")))
    elif len(recording.trials) < 2:
        raise UsageError(
            f"{path} has a single trial; the run holds out whole trials (a file without a "
            "trials table is binned whole and split in time blocks)")
    events = choose_events(recording, settings["events"], str(path))
    check_variable_names(settings["variables"], catalogue(recording, events), str(path))
    check_units(recording.n_units, baseline_k(settings), str(path))
    return Loaded(recording, str(path))


def bin_spikes(loaded, settings):
    """Bin the spikes inside the trials (or time blocks) and align the behaviour to the bins.

    Without trials the recording is cut into contiguous blocks
    (``time_blocks``), each binned and smoothed on its own. The metadata
    hold every variable found (``build_metadata``); ``variables`` is the
    choice to score, checked here, before any fitting. The counts are kept
    before smoothing too: co-smoothing scores predicted rates against spike
    counts, not against smoothed activity.
    """
    from ..preprocessing import SpikeBinner, smooth_within_intervals

    recording = loaded.recording
    parameters = binner_parameters(settings)
    smooth_sigma = parameters.pop("smooth_sigma")
    events = choose_events(recording, settings["events"], loaded.source)
    if has_trials(recording):
        intervals, block_duration = recording.trials, None
    else:
        intervals, block_duration = time_blocks(
            recording, settings["bin_size"], settings["block_duration"], loaded.source)
    check_smoothing(smooth_sigma, intervals, "time block" if block_duration else "trial",
                    loaded.source)
    binner = SpikeBinner(**parameters, intervals=intervals)
    offered = catalogue(recording, events)
    check_variable_names(settings["variables"], offered, loaded.source)
    try:
        counts = np.asarray(binner.fit_transform(recording), dtype=np.float64)
        metadata = build_metadata(binner, recording, events, offered, settings["place_grid"])
    except ValueError as error:
        raise UsageError(f"could not bin {loaded.source}: {error}") from None
    if not counts.any():
        raise UsageError(f"no spike of {loaded.source} falls inside its "
                         f"{'time blocks' if block_duration else 'trials'} "
                         f"({_spans(recording, intervals)}); nothing to analyse")
    variables = choose_variables(metadata, offered.found, settings["variables"],
                                 is_mc_maze_shaped(recording, settings["events"]),
                                 loaded.source)
    if smooth_sigma is None:
        return Binned(counts, metadata, None, variables, block_duration)
    # what SpikeBinner(smooth_sigma=...) does, on a copy
    X = smooth_within_intervals(counts.copy(), binner.interval_ids_,
                                smooth_sigma / binner.bin_size_)
    return Binned(X, metadata, counts, variables, block_duration)


def split(binned, seed, source, n_components=2):
    """Hold out whole trials (:func:`split_trials`), or time blocks without trials.

    Without trials every fifth block is held out, the first of them chosen
    among the first five by ``seed`` (``split_blocks``).

    Raises
    ------
    UsageError
        If either side has fewer than two bins, the training side fewer
        than ``n_components`` (the baselines' ``k``), or the training bins
        hold no spike.
    """
    if binned.in_blocks:
        train, held_out, blocks = split_blocks(binned.metadata, seed)
        n_blocks = binned.metadata["interval_id"].nunique()
        how = (f"every fifth time block held out: blocks {', '.join(map(str, blocks))} of "
               f"{n_blocks} contiguous blocks of {binned.block_duration:g} s")
        unit = "blocks"
    else:
        train, held_out, how = split_trials(binned.metadata, seed)
        unit = "trials"
    if train.sum() < max(2, n_components) or held_out.sum() < 2:
        raise UsageError(f"too few bins to split {source} into training and held-out {unit} "
                         f"({train.sum()} and {held_out.sum()}; the training side needs "
                         f"at least {max(2, n_components)}, the held-out side 2)")
    counts = binned.X if binned.counts is None else binned.counts
    if not counts[train].any():
        raise UsageError(f"the training {unit} of {source} hold no spike; nothing to fit")
    if "interval_id" in binned.metadata:
        interval_ids = binned.metadata["interval_id"].to_numpy()
    else:  # bins of one stretch
        interval_ids = np.zeros(len(binned.metadata), dtype=np.int64)
    return Split(binned.X[train], binned.X[held_out], binned.metadata.loc[held_out], how,
                 counts[train], counts[held_out], binned.variables,
                 interval_ids[train], interval_ids[held_out])


def split_trials(metadata, seed):
    """Boolean masks of the training and held-out bins, by whole trials.

    Trials labelled ``"test"`` or ``"val"`` in a ``split`` column are held
    out; without that column (or with no such trial) a seeded 20 % of the
    trial ids is. Bins outside trials (``trial_id`` -1) are in neither.

    Returns
    -------
    train, held_out : ndarray of bool of shape (n_bins,)
    how : str
        How the split was made, for the log and metrics.
    """
    trial_id = metadata["trial_id"].to_numpy()
    in_trial = trial_id >= 0
    if "split" in metadata:
        held_out = metadata["split"].isin(HELD_OUT_SPLITS).to_numpy() & in_trial
        if held_out.any() and (in_trial & ~held_out).any():
            return in_trial & ~held_out, held_out, "split column (test and val held out)"
    trials = np.unique(trial_id[in_trial])
    rng = np.random.default_rng(seed)
    n_held_out = max(1, int(round(0.2 * len(trials))))
    chosen = rng.choice(trials, size=n_held_out, replace=False)
    held_out = np.isin(trial_id, chosen) & in_trial
    return in_trial & ~held_out, held_out, "seeded 80/20 split of trial ids"


def check_units(n_units, k, source):
    """Refuse fewer units than ``k``: PCA and NMF fit ``k`` components of the units.

    Raises
    ------
    UsageError
    """
    if n_units < k:
        raise UsageError(f"--k {k} is more than the {n_units} unit(s) of {source}: the "
                         "baselines fit k components of the units; choose --k of at most "
                         f"{n_units}")


def check_smoothing(smooth_sigma, intervals, word, source):
    """Refuse a smoothing kernel wider than the longest trial (or time block).

    Such a kernel flattens every trial to its mean, and its length (8 sigma)
    makes smoothing take minutes: ``--smooth-sigma 1e6`` is a mistake.

    Raises
    ------
    UsageError
    """
    if smooth_sigma is None or len(intervals) == 0:
        return
    longest = float(np.max(np.asarray(intervals["stop_time"], dtype=np.float64)
                           - np.asarray(intervals["start_time"], dtype=np.float64)))
    if smooth_sigma > longest:
        raise UsageError(f"--smooth-sigma {smooth_sigma:g} s is longer than the longest "
                         f"{word} of {source} ({longest:.3g} s): it would flatten every "
                         f"{word}; choose at most {longest:.3g} s, or 0 for none")


def _spans(recording, intervals):
    """Where the spikes and the intervals lie, for an error message."""
    times = [np.asarray(each) for each in recording.spike_times if len(each)]
    spikes = (f"spikes from {min(t.min() for t in times):.6g} to "
              f"{max(t.max() for t in times):.6g} s" if times else "no spikes at all")
    if len(intervals) == 0:
        return spikes
    return (f"{spikes}, intervals from {float(np.min(intervals['start_time'])):.6g} to "
            f"{float(np.max(intervals['stop_time'])):.6g} s")


# ---------------------------------------------------------------- fit, baselines

def fit_msae(X_train, settings, progress, check=None):
    """Fit one ``MatryoshkaSAE`` per seed, ``n_jobs`` of them in parallel.

    ``check``, if given, is called with the runs fitted so far after each
    seed fitted on its own (``n_jobs`` 1) and after all of them: it raises
    to stop the run (``_interrupts.Interrupts.check``), since a fit that is
    interrupted returns its last good epoch instead of raising.
    """
    from ..interpretation import fit_seeds
    from ..models import MatryoshkaSAE

    seeds = list(range(settings["seed"], settings["seed"] + settings["seeds"]))
    # One thread per fit: a small model trains fastest on one, and parallel
    # seeds must not oversubscribe the cores.
    estimator = MatryoshkaSAE(**model_parameters(settings), n_threads=1)
    if not settings["quiet"] and hasattr(estimator, "set_callbacks"):
        # fit callbacks exist from scikit-learn 1.9 on; before, per-seed lines only
        estimator.set_callbacks(EpochProgress(progress, max(1, settings["max_iter"] // 10)))
    progress(f"fitting MatryoshkaSAE(n_latents={settings['n_latents']}, "
             f"k={estimator.k}) with seeds {seeds} on {settings['n_jobs']} job(s)")
    if settings["n_jobs"] == 1:
        # one seed at a time, so that an interrupted fit stops the next one
        runs = []
        for seed in seeds:
            runs += fit_seeds(estimator, X_train, seeds=[seed], n_jobs=1)
            if check is not None:
                check(runs)
    else:
        runs = fit_seeds(estimator, X_train, seeds=seeds, n_jobs=settings["n_jobs"])
    if check is not None:
        check(runs)
    for model in runs:
        # the thread limit was for fitting; the saved models code on every core
        model.set_params(n_threads=None)
    return MSAERuns(seeds, runs)


def fit_baselines(X_train, n_components, seed):
    """PCA and NMF with ``n_components`` (NMF on the rectified activity)."""
    from sklearn.decomposition import NMF, PCA

    pca = PCA(n_components=min(n_components, *X_train.shape), random_state=seed)
    pca.fit(X_train)
    nmf = NMF(n_components=n_components, init="nndsvda", max_iter=1000, tol=1e-3,
              random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Mm]aximum number of iterations.*")
        nmf.fit(np.maximum(X_train, 0.0))
    return Baselines(pca, nmf)


# ---------------------------------------------------------------- score

def score(loaded, data, msae, baselines, settings, progress):
    """Held-out codes, explained variance and L0, seed agreement, selectivity.

    Returns
    -------
    scores : Scores
        ``metrics`` holds every key of ``metrics.json`` but ``versions``
        and ``timings``.
    """
    codes = {name: np.asarray(model.transform(data.X_test))
             for name, model in msae.models.items()}
    codes.update(baselines.transform(data.X_test))
    metrics = {"source": loaded.source, "split": data.how,
               "n_units": int(loaded.recording.n_units),
               "n_trials": int(len(loaded.recording.trials)),  # 0: time blocks
               "n_bins_train": int(len(data.X_train)), "n_bins_held_out": int(len(data.X_test)),
               "seeds": msae.seeds,
               "models": {**reconstruction_metrics(msae, data.X_test, codes),
                          **baseline_metrics(baselines, data.X_test, codes)}}

    progress("seed agreement and stable latents" if len(msae.runs) > 1
             else "one seed: no seed agreement")
    agreement, stable_tables = seed_agreement(msae)
    metrics["seed_agreement"] = agreement
    metrics["n_stable_latents"] = (
        int(stable_tables[msae.first]["stable"].sum()) if stable_tables else None)

    progress(f"scoring selectivity of {len(codes)} models on the held-out bins")
    selectivity, variables = selectivity_table(
        codes, msae, stable_tables, data.metadata_scored, settings, data.variables)
    metrics["n_selective_latents"] = {
        name: int(selectivity.loc[(selectivity["model"] == name)
                                  & selectivity["selective"].astype(bool), "latent"].nunique())
        for name in codes}
    metrics["selectivity_variables"] = variables
    return Scores(codes, metrics, selectivity)


def mean_l0(codes):
    """Mean number of non-zero codes per bin."""
    return float(np.count_nonzero(np.asarray(codes), axis=1).mean())


def level_k(model):
    """The budget of each level of a fitted MSAE: its own ``k`` per level, or the
    shared ``k`` repeated (one selection of ``k`` over every latent)."""
    if isinstance(model.k, dict):
        return [int(model.k[int(size)]) for size in model.level_sizes_]
    return [int(model.k)] * len(model.level_sizes_)


def level_l0(model, X, codes, level):
    """Mean latents per bin that the reconstruction of ``level`` uses.

    With a shared ``k`` those are the codes' active latents among the
    level's first ones; with a per-level ``k`` the level's own selection,
    which the codes of ``transform`` (the union of the levels' selections)
    do not show.
    """
    if np.ndim(model.threshold_) == 0:
        return mean_l0(codes[:, :int(model.level_sizes_[level])])
    return mean_l0(model.transform(X, level=level))


def reconstruction_metrics(msae, X_test, codes):
    """Per MSAE run: explained variance and L0 on the held-out bins, overall and per
    level, and each level's ``k``."""
    from ..models import explained_variance

    metrics = {}
    for name, model in msae.models.items():
        level_sizes = [int(size) for size in model.level_sizes_]
        metrics[name] = {
            "kind": "msae",
            "seed": int(model.random_state),
            "n_latents": int(model.n_latents),
            "level_sizes": level_sizes,
            "explained_variance": float(model.score(X_test)),
            "explained_variance_per_level": [
                explained_variance(X_test, np.asarray(model.reconstruct(X_test, level=level)))
                for level in range(len(level_sizes))],
            "l0": mean_l0(codes[name]),
            "l0_per_level": [level_l0(model, X_test, codes[name], level)
                             for level in range(len(level_sizes))],
            "k_per_level": level_k(model),
            "shared_k": not isinstance(model.k, dict),
            "dead_fraction": len(model.dead_latents_) / model.n_latents,
            "n_epochs": int(model.n_iter_),
        }
    return metrics


def baseline_metrics(baselines, X_test, codes):
    """Per baseline: explained variance and L0 on the held-out bins."""
    from ..models import explained_variance

    return {name: {"kind": name,
                   "n_components": int(model.n_components_),
                   "explained_variance": explained_variance(
                       X_test, model.inverse_transform(codes[name])),
                   "l0": mean_l0(codes[name])}
            for name, model in baselines.models.items()}


def seed_agreement(msae):
    """Seed agreement per level, and the stable latents of each run as reference.

    Returns
    -------
    agreement : dict or None
        ``mean_cosine_per_level`` and ``fraction_above_0.9_per_level``;
        None with one seed.
    stable_tables : dict of str to DataFrame
        ``stable_latents`` of each run by name; empty with one seed.
    """
    from ..interpretation import seed_agreement, stable_latents

    if len(msae.runs) < 2:
        return None, {}
    per_level = (seed_agreement(msae.runs).groupby("level")
                 [["mean_cosine", "fraction_above_0.9"]].mean())
    agreement = {"mean_cosine_per_level": per_level["mean_cosine"].tolist(),
                 "fraction_above_0.9_per_level": per_level["fraction_above_0.9"].tolist()}
    stable_tables = {name: stable_latents(msae.runs, reference=index)
                     for index, name in enumerate(msae.models)}
    return agreement, stable_tables


def selectivity_table(codes, msae, stable_tables, metadata, settings, choice=None):
    """The rows of ``selectivity.csv``: every model's latents against the behaviour.

    Parameters
    ----------
    choice : Variables or None
        The variables to score (``bin_spikes``); None: those of
        ``SELECTIVITY_VARIABLES`` in the metadata. Those with fewer than two
        conditions on the held-out bins are left out. Trial-level variables
        are tested against permuted trials when at least two held-out trials
        have them, otherwise, like the rest, against circular shifts.

    Returns
    -------
    selectivity : DataFrame
        ``score_latents`` rows with ``model`` first, ``selective`` and
        ``stable`` (MSAE runs with several seeds; NA otherwise) last.
    variables : list of str
        The behavioural variables scored, those of the metadata.
    """
    from ..interpretation import SelectivityScorer

    if choice is None:
        choice = Variables(SELECTIVITY_VARIABLES, TRIAL_LEVEL_VARIABLES)
    variables = scorable_variables(
        metadata, [name for name in choice.names if name in metadata], choice.angles)
    trial_level = [name for name in variables if name in choice.trial_level]
    if "trial_id" in metadata and metadata.loc[metadata["trial_id"] >= 0, "trial_id"].nunique() < 2:
        trial_level = []  # the trial null permutes held-out trials: it needs two
    within_trial = [name for name in variables if name not in trial_level]
    scorers = [
        SelectivityScorer(variables=names, null=null, angle_variables=choice.angles,
                          n_permutations=settings["n_permutations"],
                          random_state=settings["seed"])
        for names, null in ((within_trial, "circular"), (trial_level, "trial")) if names
    ]
    scorer = scorers[0] if scorers else SelectivityScorer()
    models = msae.models
    tables = []
    for name, Z in codes.items():
        level_sizes = models[name].level_sizes_ if name in models else None
        if variables:
            results = pd.concat(
                [each.score_latents(Z, metadata, level_sizes=level_sizes)
                 for each in scorers], ignore_index=True)
        else:
            results = pd.DataFrame(columns=["latent", "sign", "variable", "condition"])
        selective = scorer.selective(results) if variables else []
        results.insert(0, "model", name)
        results["selective"] = selective
        if name in stable_tables:
            stable = stable_tables[name].set_index("latent")["stable"]
            results["stable"] = results["latent"].map(stable).astype("boolean")
        else:
            results["stable"] = pd.array([pd.NA] * len(results), dtype="boolean")
        tables.append(results)
    return pd.concat(tables, ignore_index=True), variables


# ---------------------------------------------------------------- write

def write(out, *, settings, loaded, data, msae, baselines, scores, metrics, temporal=None):
    """Write the models, activations, selectivity table, figures, configuration and report.

    ``metrics`` is the content of ``metrics.json`` so far (the report shows
    it); ``metrics.json`` itself is written last, by :func:`write_metrics`.
    ``temporal`` (``_temporal.TemporalEvaluation``), if given, adds
    ``latent_ablation.csv`` and the ablation and spectral figures; a
    ``level_k_comparison`` in ``metrics`` (a per-level ``k``) adds the
    ``level_k`` figure.

    Returns
    -------
    artefacts : dict of str to pathlib.Path
        Every file written, by role, in the order written.
    """
    from ..interpretation import save_activations

    artefacts = {}

    def record(role, path):
        artefacts[role] = path
        return path

    models = msae.models
    for name, model in {**models, **baselines.models}.items():
        joblib.dump(model, record(f"model:{name}", out / f"{name}.joblib"))
    save_activations(
        record("activations", out / "activations.npz"),
        {name: scores.codes[name].astype(np.float32) for name in models},
        bin_index={name: data.metadata_test.index for name in models})
    scores.selectivity.to_csv(record("selectivity", out / "selectivity.csv"), index=False)
    metadata = data.metadata_scored
    write_figures(msae.runs[0], scores.codes[msae.first], data.X_test, metadata,
                  scores.selectivity.loc[scores.selectivity["model"] == msae.first],
                  metrics["selectivity_variables"], out, record,
                  angle_variables=(data.variables.angles if data.variables is not None
                                   else ("direction_deg",)))
    if temporal is not None:
        write_temporal(temporal, msae.first, out, record)
    if metrics.get("level_k_comparison") is not None:
        from ._temporal import plot_level_k

        plot_level_k(metrics["level_k_comparison"]).savefig(
            record("figure:level_k", out / "level_k.png"), dpi=110)
    write_config(settings, record("config", out / "config.toml"))
    units = getattr(loaded.recording, "units", None)
    unit_names = (units.index if units is not None and len(units) == loaded.recording.n_units
                  else None)
    if data.windows is not None:  # the models' inputs are windows: name their columns
        unit_names = data.windows.get_feature_names_out(
            None if unit_names is None else np.asarray(unit_names, dtype=str))
    write_report(
        out, metrics=metrics, selectivity=scores.selectivity, codes=scores.codes,
        X=data.X_test, metadata=metadata, estimators={**models, **baselines.models},
        figures={role.split(":", 1)[1]: each for role, each in artefacts.items()
                 if role.startswith("figure:")},
        unit_names=(unit_names if unit_names is not None
                    and len(unit_names) == data.X_test.shape[1] else None))
    record("report", out / "report.html")
    return artefacts


def write_figures(model, codes, X_test, metadata, selectivity, variables, out, record,
                  angle_variables=("direction_deg",)):
    """The diagnostics figures of one MSAE run, and feature cards of its top latents."""
    from ..interpretation import (
        plot_decoder_weights,
        plot_feature_card,
        plot_l0,
        plot_latent_frequency,
        plot_training_curves,
        plot_unit_r2,
    )

    figures = {
        "decoder_weights": lambda: plot_decoder_weights(model),
        "l0": lambda: plot_l0(codes),
        "latent_frequency": lambda: plot_latent_frequency(codes, model.level_sizes_),
        "unit_r2": lambda: plot_unit_r2(X_test, np.asarray(model.reconstruct(X_test))),
        "training_curves": lambda: plot_training_curves(model),
    }
    if variables:
        chosen = (selectivity.loc[selectivity["selective"].astype(bool)]
                  .sort_values(["selectivity", "q"], ascending=[False, True])
                  ["latent"].drop_duplicates().head(N_FEATURE_CARDS))
        for latent in chosen:
            figures[f"feature_card_latent{int(latent)}"] = (
                lambda latent=int(latent): plot_feature_card(
                    latent, codes, metadata, variables=variables, components=model,
                    angle_variables=angle_variables))
    for name, make in figures.items():
        figure = make()
        # 110 dpi: sharp at the report's full width and when enlarged there
        figure.savefig(record(f"figure:{name}", out / f"{name}.png"), dpi=110)


def write_temporal(temporal, first, out, record):
    """``latent_ablation.csv`` and the ablation and spectral figures."""
    from ._temporal import ablation_table, plot_ablation, plot_spectra

    ablation_table(temporal.ablation).to_csv(
        record("latent_ablation", out / "latent_ablation.csv"), index=False)
    for name, make in (("latent_ablation", lambda: plot_ablation(temporal.ablation, first)),
                       ("spectral_fidelity", lambda: plot_spectra(temporal.spectra, first))):
        make().savefig(record(f"figure:{name}", out / f"{name}.png"), dpi=110)


def write_metrics(path, metrics):
    """Write ``metrics.json``."""
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return path


def versions():
    """Versions of Python and of the packages the run used."""
    import sklearn
    import torch

    from .. import __version__

    return {"sklearn_nldisco": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "torch": torch.__version__}
