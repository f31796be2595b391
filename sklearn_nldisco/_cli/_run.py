"""``nldisco run``: fit the MSAE over seeds and the PCA and NMF baselines, score, write."""

import json
import platform
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from ..models._base import explained_variance
from ._config import UsageError, write_config
from ._report import write_report

# Behavioural variables scored for selectivity, those present in the metadata:
# labels that vary within a trial are tested against circular shifts, labels
# fixed for a whole trial against permuted trials.
SELECTIVITY_VARIABLES = ("phase", "trial_type", "speed", "direction_deg")
TRIAL_LEVEL_VARIABLES = ("trial_type",)
# Held-out trial labels of a ``split`` column.
HELD_OUT_SPLITS = ("test", "val")
N_FEATURE_CARDS = 4


class Progress:
    """Progress lines on stderr, with the time since the run began; silent when quiet."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message):
        if not self.quiet:
            elapsed = time.perf_counter() - self.start
            print(f"nldisco [{elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)


class EpochProgress:
    """A fit callback: a progress line every ``every`` epochs of each seed's fit.

    It follows scikit-learn's fit-callback protocol, travels with the
    estimator through ``clone`` and into joblib workers, and prints through
    ``progress`` (the workers share the run's clock and stderr).
    """

    def __init__(self, progress, every):
        self.progress = progress
        self.every = every
        self.epochs = 0

    def setup(self, estimator, context):
        self.epochs = 0

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        if context.task_name == "epoch":
            self.epochs += 1
            if self.epochs % self.every == 0:
                self.progress(f"MSAE seed {estimator.random_state}: epoch {self.epochs}")
        return False


def load_recording(settings):
    """The recording of the run: the NWB file, or the built-in simulated session.

    Raises
    ------
    UsageError
        If the file is missing, is not NWB, has no units with spikes or no trials.
    """
    from ..datasets import load_nwb, make_reaching_session

    if settings["nwb_file"] is None:
        recording, _ = make_reaching_session(
            n_units=settings["n_units"], n_trials=settings["n_trials"],
            random_state=settings["seed"])
        return recording, "simulated reaching session"
    path = Path(settings["nwb_file"])
    try:
        recording = load_nwb(path)
    except (ValueError, OSError) as error:  # FileNotFoundError is an OSError
        raise UsageError(str(error)) from None
    if recording.n_units == 0:
        raise UsageError(f"{path} has no units (no spike times to analyse)")
    if recording.trials is None or len(recording.trials) < 2:
        raise UsageError(
            f"{path} has no trials table with at least two trials; the run bins "
            "inside trials and holds out whole trials")
    return recording, str(path)


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


def mean_l0(codes):
    """Mean number of non-zero codes per bin."""
    return float(np.count_nonzero(np.asarray(codes), axis=1).mean())


@contextmanager
def _single_torch_thread():
    # A small model trains fastest on one thread, and parallel seeds must not
    # oversubscribe the cores.
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _versions():
    import sklearn
    import torch

    from .. import __version__

    return {"sklearn_nldisco": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "torch": torch.__version__}


def run(settings, out):
    """Run the whole analysis and write its artefacts to ``out``.

    Parameters
    ----------
    settings : dict
        Resolved settings (see ``_config.resolve``).
    out : path-like
        Output folder, created if needed; files of the same names are replaced.

    Returns
    -------
    artefacts : dict of str to pathlib.Path
        Every file written, by role (``"metrics"``, ``"selectivity"``,
        ``"config"``, ``"activations"``, ``"model:msae_seed0"``,
        ``"figure:decoder_weights"``, ``"figure:feature_card_latent3"`` ...),
        in the order written (``"report"`` is ``report.html``).
    """
    from sklearn.decomposition import NMF, PCA

    from ..interpretation import (
        SelectivityScorer,
        fit_seeds,
        save_activations,
        seed_agreement,
        stable_latents,
    )
    from ..models import MatryoshkaSAE
    from ..preprocessing import SpikeBinner, bin_metadata

    progress = Progress(settings["quiet"])
    timings = {}
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the output folder {out}: {error}") from None

    tic = time.perf_counter()
    # no progress line before loading: a user mistake found there is the only line
    recording, source = load_recording(settings)
    timings["load_s"] = time.perf_counter() - tic
    progress(f"loaded {source} in {timings['load_s']:.1f} s: {recording.n_units} units, "
             f"{len(recording.trials)} trials")

    tic = time.perf_counter()
    progress(f"binning spikes in {settings['bin_size']:g} s bins inside trials")
    smooth_sigma = settings["smooth_sigma"] or None
    binner = SpikeBinner(bin_size=settings["bin_size"], intervals=recording.trials,
                         smooth_sigma=smooth_sigma)
    try:
        X = np.asarray(binner.fit_transform(recording), dtype=np.float64)
        metadata = bin_metadata(binner, recording)
    except ValueError as error:
        raise UsageError(f"could not bin {source}: {error}") from None
    train, held_out, split_how = split_trials(metadata, settings["seed"])
    if train.sum() < 2 or held_out.sum() < 2:
        raise UsageError(f"too few bins to split {source} into training and held-out trials "
                         f"({train.sum()} and {held_out.sum()})")
    X_train, X_test = X[train], X[held_out]
    metadata_test = metadata.loc[held_out]
    timings["bin_s"] = time.perf_counter() - tic
    progress(f"{len(X):,} bins; training {len(X_train):,}, held out {len(X_test):,} "
             f"({split_how})")

    seeds = list(range(settings["seed"], settings["seed"] + settings["seeds"]))
    estimator = MatryoshkaSAE(
        n_latents=settings["n_latents"], k=settings["k"], level_sizes=settings["levels"],
        loss=settings["loss"], device=settings["device"], max_iter=settings["max_iter"])
    if not settings["quiet"] and hasattr(estimator, "set_callbacks"):
        # fit callbacks exist from scikit-learn 1.9 on; before, per-seed lines only
        estimator.set_callbacks(EpochProgress(progress, max(1, settings["max_iter"] // 10)))
    tic = time.perf_counter()
    progress(f"fitting MatryoshkaSAE(n_latents={settings['n_latents']}, k={settings['k']}) "
             f"with seeds {seeds} on {settings['n_jobs']} job(s)")
    with _single_torch_thread(), joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        runs = fit_seeds(estimator, X_train, seeds=seeds, n_jobs=settings["n_jobs"])
    timings["fit_msae_s"] = time.perf_counter() - tic
    for seed, model in zip(seeds, runs):
        progress(f"MSAE seed {seed}: {model.n_iter_} epochs ({model.stop_reason_}), "
                 f"held-out explained variance {model.score(X_test):.3f}, "
                 f"{len(model.dead_latents_)} dead latents")

    tic = time.perf_counter()
    n_components = settings["k"]
    progress(f"fitting PCA and NMF baselines with {n_components} components")
    pca = PCA(n_components=min(n_components, *X_train.shape), random_state=settings["seed"])
    pca.fit(X_train)
    nmf = NMF(n_components=n_components, init="nndsvda", max_iter=1000, tol=1e-3,
              random_state=settings["seed"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Mm]aximum number of iterations.*")
        nmf.fit(np.maximum(X_train, 0.0))
    timings["fit_baselines_s"] = time.perf_counter() - tic

    # held-out codes and headline numbers
    models = {f"msae_seed{seed}": model for seed, model in zip(seeds, runs)}
    codes = {name: np.asarray(model.transform(X_test)) for name, model in models.items()}
    codes["pca"] = pca.transform(X_test)
    codes["nmf"] = nmf.transform(np.maximum(X_test, 0.0))

    metrics = {"source": source, "split": split_how,
               "n_units": int(recording.n_units), "n_trials": int(len(recording.trials)),
               "n_bins_train": int(len(X_train)), "n_bins_held_out": int(len(X_test)),
               "seeds": seeds, "models": {}}
    for name, model in models.items():
        level_sizes = [int(size) for size in model.level_sizes_]
        metrics["models"][name] = {
            "kind": "msae",
            "seed": int(model.random_state),
            "n_latents": int(model.n_latents),
            "level_sizes": level_sizes,
            "explained_variance": float(model.score(X_test)),
            "explained_variance_per_level": [
                explained_variance(X_test, np.asarray(model.reconstruct(X_test, level=level)))
                for level in range(len(level_sizes))],
            "l0": mean_l0(codes[name]),
            "l0_per_level": [mean_l0(codes[name][:, :size]) for size in level_sizes],
            "dead_fraction": len(model.dead_latents_) / model.n_latents,
            "n_epochs": int(model.n_iter_),
        }
    for name, model in (("pca", pca), ("nmf", nmf)):
        X_hat = model.inverse_transform(codes[name])
        metrics["models"][name] = {
            "kind": name,
            "n_components": int(model.n_components_),
            "explained_variance": explained_variance(X_test, X_hat),
            "l0": mean_l0(codes[name]),
        }

    tic = time.perf_counter()
    progress("seed agreement and stable latents" if len(runs) > 1
             else "one seed: no seed agreement")
    stable_tables = {}
    if len(runs) > 1:
        agreement = seed_agreement(runs)
        per_level = agreement.groupby("level")[["mean_cosine", "fraction_above_0.9"]].mean()
        metrics["seed_agreement"] = {
            "mean_cosine_per_level": per_level["mean_cosine"].tolist(),
            "fraction_above_0.9_per_level": per_level["fraction_above_0.9"].tolist(),
        }
        for index, name in enumerate(models):
            stable_tables[name] = stable_latents(runs, reference=index)
        metrics["n_stable_latents"] = int(stable_tables[f"msae_seed{seeds[0]}"]["stable"].sum())
    else:
        metrics["seed_agreement"] = None
        metrics["n_stable_latents"] = None

    progress(f"scoring selectivity of {len(codes)} models on the held-out bins")
    variables = [name for name in SELECTIVITY_VARIABLES
                 if name in metadata_test and metadata_test[name].notna().any()]
    within_trial = [name for name in variables if name not in TRIAL_LEVEL_VARIABLES]
    trial_level = [name for name in variables if name in TRIAL_LEVEL_VARIABLES]
    scorers = [
        SelectivityScorer(variables=names, null=null,
                          n_permutations=settings["n_permutations"],
                          random_state=settings["seed"])
        for names, null in ((within_trial, "circular"), (trial_level, "trial")) if names
    ]
    scorer = scorers[0] if scorers else SelectivityScorer()
    tables = []
    metrics["n_selective_latents"] = {}
    metadata_scored = metadata_test.reset_index(drop=True)
    for name, Z in codes.items():
        level_sizes = models[name].level_sizes_ if name in models else None
        if variables:
            results = pd.concat(
                [each.score_latents(Z, metadata_scored, level_sizes=level_sizes)
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
        metrics["n_selective_latents"][name] = int(
            results.loc[results["selective"].astype(bool), "latent"].nunique())
        tables.append(results)
    selectivity = pd.concat(tables, ignore_index=True)
    metrics["selectivity_variables"] = variables
    timings["score_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    progress(f"writing models, tables and figures to {out}")
    artefacts = {}

    def record(role, path):
        artefacts[role] = path
        return path

    for name, model in models.items():
        joblib.dump(model, record(f"model:{name}", out / f"{name}.joblib"))
    joblib.dump(pca, record("model:pca", out / "pca.joblib"))
    joblib.dump(nmf, record("model:nmf", out / "nmf.joblib"))
    save_activations(
        record("activations", out / "activations.npz"),
        {name: codes[name].astype(np.float32) for name in models},
        bin_index={name: metadata_test.index for name in models})
    selectivity.to_csv(record("selectivity", out / "selectivity.csv"), index=False)
    _write_figures(runs[0], codes[f"msae_seed{seeds[0]}"], X_test, metadata_scored,
                   selectivity.loc[selectivity["model"] == f"msae_seed{seeds[0]}"],
                   variables, out, record)
    write_config(settings, record("config", out / "config.toml"))
    metrics["versions"] = _versions()
    units = getattr(recording, "units", None)
    write_report(  # metrics without timings
        out, metrics=metrics, selectivity=selectivity, codes=codes, X=X_test,
        metadata=metadata_scored, estimators={**models, "pca": pca, "nmf": nmf},
        figures={role.split(":", 1)[1]: each for role, each in artefacts.items()
                 if role.startswith("figure:")},
        unit_names=units.index if units is not None and len(units) == X.shape[1] else None)
    record("report", out / "report.html")
    timings["write_s"] = time.perf_counter() - tic
    timings["total_s"] = time.perf_counter() - progress.start
    metrics["timings"] = {name: round(value, 3) for name, value in timings.items()}
    path = record("metrics", out / "metrics.json")
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    progress(f"done in {timings['total_s']:.1f} s: {len(artefacts)} files in {out}")
    return artefacts


def _write_figures(model, codes, X_test, metadata, selectivity, variables, out, record):
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
                    latent, codes, metadata, variables=variables, components=model))
    for name, make in figures.items():
        figure = make()
        figure.savefig(record(f"figure:{name}", out / f"{name}.png"), dpi=80)
