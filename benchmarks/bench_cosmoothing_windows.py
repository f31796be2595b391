"""Co-smoothing of window models against single-bin models and baselines, on M1 and PMd.

One table per recording, every row on the same held-out units
(``held_out=0.25``, seed 0) and the same test block, through
:func:`~sklearn_nldisco.evaluation.co_smoothing` (a ``PoissonReadout``
from the model's output on the held-in units to the held-out units'
counts; bits per spike on the test block).

Data (``../shared/data``):

- **M1** (``m1_stevenson_2011.mat``): 171 units, 50 ms bins, one stretch;
  the first 80 % of time trains, the last 20 % tests (43 units held out).
- **PMd** (``datahigh_ex2_rawspiketrains.mat``): 61 units, 1 ms spike
  trains of 112 trials, binned at 10 ms within each trial
  (``SpikeBinner(intervals=trials)``); 11 trials of each of the two
  conditions are drawn (seed 0) as the test trials, the other 90 train
  (15 units held out). ``interval_ids`` reach every smoothing and window
  step (metadata routing), so nothing is smoothed or windowed across trials.

Choices are made on the training block only, never on the test block:
an **inner split** of the training block (M1: its last 20 % of time; PMd:
9 training trials of each condition, seed 0) scores the candidates
(printed) for the smoothing sigma of the smoothing baseline and the PCA and
FA dimensions, and among the window autoencoders (the window length, the
masking, the setting and the readout of the window rows below; the last line of each
table gives the one chosen and its test score; the single-bin setting is
chosen among its two rows the same way). The chosen sigma also
smooths every model's input (the models see the smoothed held-in counts;
the targets stay counts). Every row is printed: the MSAE rows are the defaults
(``MatryoshkaSAE(n_latents=256, k=8, loss="mse", sparsity="batchtopk",
mask_fraction=0.25)``), and the single-bin setting
``loss="poisson", sparsity="topk", n_latents=64`` that scored best in
``bench_cosmoothing_sweep.py`` on M1 (that sweep chose it on M1's test
block, so on M1 that row is not a clean choice; on PMd it is a fixed
setting).

Window models are ``TimeWindows(n)`` (the ``n`` bins ending at each bin)
then the model (the defaults, and the single-bin rows' second setting
``poisson+topk+64`` for ``n`` 3 and 5), on the smoothed counts as every
other model, and also on the counts themselves ("unsmoothed": the window
learns its own temporal filter; ``n`` of ``ceil(2.5 sigma)`` and
``ceil(5 sigma)`` bins, the width of the chosen Gaussian), one fit read
out three ways (``OffsetFeatures`` after the
model; the time printed for the second and third is the readout's only):

- ``t``: the codes of the window ending at ``t`` (past bins only);
- ``cover``: the mean of the codes of the ``n`` windows that hold bin
  ``t`` (those ending at ``t`` to ``t + n - 1``);
- ``centred``: bin ``t`` read out from the codes of the window ending
  ``n // 2`` bins later (``OffsetFeatures([n // 2])`` after the model), the
  window centred on ``t``, as the smoothing baseline's Gaussian is; for the
  transcoder the offset comes before it (between ``TimeWindows(n)`` and
  the transcoder), so it learns the centred window -> the held-out counts
  at ``t``.

The window transcoder maps the held-in window to the held-out units' counts
(``TimeWindows(n)`` then ``MatryoshkaTranscoder``), its codes read out as
any model's.

Run: ``nice -n 10 python benchmarks/bench_cosmoothing_windows.py``; with
the unsmoothed windows, 44 minutes for PMd and 57 for M1 (each recording in
its own process, the two at once on two cores, with other jobs);
``--quick`` fits windows of 5 bins only and fewer baseline candidates
(``--quick --recordings pmd``: 5 minutes); ``--recordings m1`` or ``pmd``
runs one. Seeds are fixed (0).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.io
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.pipeline import make_pipeline

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.evaluation import GaussianSmoother, OffsetFeatures, co_smoothing
from sklearn_nldisco.preprocessing import SpikeBinner, TimeWindows

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SEED = 0
HELD_OUT = 0.25
PMD_BIN_S = 0.010
# test trials per condition (of 56) and inner-validation trials per condition
PMD_TEST_PER_CONDITION = 11
PMD_INNER_PER_CONDITION = 9


class Split:
    """Training and test counts with each row's trial (None: one stretch)."""

    def __init__(self, train, test, ids_train=None, ids_test=None):
        self.train, self.test = train, test
        self.ids_train, self.ids_test = ids_train, ids_test


def load_m1(path):
    counts = scipy.io.loadmat(path)["spikes"].T.astype(np.float64)
    split = int(0.8 * len(counts))
    train, test = counts[:split], counts[split:]
    inner = int(0.8 * len(train))
    return (Split(train, test), Split(train[:inner], train[inner:]),
            f"M1: {len(train)} training and {len(test)} test bins (50 ms), "
            f"{counts.shape[1]} units; inner split at training bin {inner}")


def _bin_trials(rasters, trials):
    """10 ms counts of the given trials, laid end to end 0.3 s apart, and their trial ids."""
    durations = np.array([rasters[trial].shape[1] / 1000 for trial in trials])
    offsets = np.r_[0.0, np.cumsum(durations + 0.3)[:-1]]
    n_units = rasters[0].shape[0]
    spikes = [np.concatenate([np.flatnonzero(rasters[trial][unit]) / 1000 + offset
                              for trial, offset in zip(trials, offsets)])
              for unit in range(n_units)]
    binner = SpikeBinner(bin_size=PMD_BIN_S,
                         intervals=np.column_stack([offsets, offsets + durations]))
    counts = binner.fit_transform(spikes)
    return counts, np.asarray(trials)[binner.interval_ids_]


def _draw(trials, conditions, per_condition, rng):
    chosen = [rng.choice(trials[conditions[trials] == condition], per_condition, replace=False)
              for condition in np.unique(conditions)]
    return np.sort(np.concatenate(chosen))


def load_pmd(path):
    trials = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["D"]
    rasters = [np.asarray(trial.data) for trial in trials]
    conditions = np.array([str(trial.condition) for trial in trials])
    rng = np.random.default_rng(SEED)
    every = np.arange(len(rasters))
    test = _draw(every, conditions, PMD_TEST_PER_CONDITION, rng)
    train = np.setdiff1d(every, test)
    inner_val = _draw(train, conditions, PMD_INNER_PER_CONDITION, rng)
    inner_train = np.setdiff1d(train, inner_val)
    (X_train, ids_train), (X_test, ids_test) = (_bin_trials(rasters, train),
                                                _bin_trials(rasters, test))
    (X_inner, ids_inner), (X_val, ids_val) = (_bin_trials(rasters, inner_train),
                                              _bin_trials(rasters, inner_val))
    outer = Split(X_train, X_test, ids_train, ids_test)
    inner = Split(X_inner, X_val, ids_inner, ids_val)
    return (outer, inner,
            f"PMd: {len(train)} training trials ({len(outer.train)} bins of 10 ms), "
            f"{len(test)} test trials ({len(outer.test)} bins; trials {test.tolist()}), "
            f"{rasters[0].shape[0]} units; inner validation trials {inner_val.tolist()}")


def _requests(step):
    """A step that is handed the rows' trials through metadata routing."""
    return step.set_fit_request(interval_ids=True).set_transform_request(interval_ids=True)


def _smoother(sigma):
    return _requests(GaussianSmoother(sigma))


def _windows(n_bins):
    return _requests(TimeWindows(n_bins))


def _offsets(offsets, combine="concatenate"):
    return _requests(OffsetFeatures(offsets, combine=combine))


def _msae(**changes):
    return MatryoshkaSAE(random_state=SEED, **changes)


class _Fitted(TransformerMixin, BaseEstimator):
    """A model fitted by an earlier row, read out again without a refit.

    ``clone`` returns it as it is, so the co-smoothing of a pipeline that
    starts with it fits only the readout (and the steps after it). The
    held-out units are the same in every row (same seed), so the model was
    fitted on the same held-in units.
    """

    def __init__(self, model=None):
        self.model = model

    def fit(self, X, y=None, interval_ids=None):
        return self

    def transform(self, X, interval_ids=None):
        params = {} if interval_ids is None else {"interval_ids": interval_ids}
        return self.model.transform(X, **params)

    def fit_transform(self, X, y=None, interval_ids=None):
        return self.transform(X, interval_ids=interval_ids)

    def __sklearn_clone__(self):
        return self


def _bits(estimator, split):
    start = time.perf_counter()
    result = co_smoothing(estimator, split.train, split.test, held_out=HELD_OUT,
                          random_state=SEED, interval_ids_train=split.ids_train,
                          interval_ids_test=split.ids_test)
    return result, time.perf_counter() - start


def _choose(name, candidates, make, inner):
    """The candidate with the best co-smoothing on the inner split (printed)."""
    scores = {candidate: _bits(make(candidate), inner)[0].bits_per_spike
              for candidate in candidates}
    best = max(scores, key=scores.get)
    listed = ", ".join(f"{candidate}: {score:.4f}" for candidate, score in scores.items())
    print(f"  inner split, {name}: {listed} -> {best}", flush=True)
    return best


def _readouts(n_bins):
    """The window readouts of one fitted window autoencoder: (name, step after the model)."""
    return [("t", None),
            ("cover", lambda: _offsets(range(n_bins), combine="mean")),
            ("centred", lambda: _offsets([n_bins // 2]))]


def baseline_groups(sigma, pca_dim, fa_dim):
    """(label, estimator factory, readouts) of the baselines and single-bin models."""
    smoothed = [(f"smoothing alone (sigma={sigma} bins) + GLM", lambda: _smoother(sigma)),
                (f"PCA({pca_dim}), smoothed",
                 lambda: make_pipeline(_smoother(sigma), PCA(n_components=pca_dim))),
                (f"FA({fa_dim}), smoothed", lambda: make_pipeline(
                    _smoother(sigma), FactorAnalysis(n_components=fa_dim, random_state=SEED))),
                ("MSAE defaults (1 bin)", lambda: make_pipeline(_smoother(sigma), _msae())),
                ("MSAE poisson+topk+64 (1 bin)", lambda: make_pipeline(
                    _smoother(sigma), _msae(loss="poisson", sparsity="topk", n_latents=64)))]
    return [(label, make, [("", None)]) for label, make in smoothed]


def unsmoothed_lengths(sigma):
    """Window lengths of the unsmoothed window models: the chosen Gaussian's
    width, ``ceil(2.5 sigma)`` and ``ceil(5 sigma)`` bins (+-1.25 and +-2.5
    sigma), so the window can learn the temporal filter that smoothing fixes."""
    return tuple(sorted({int(np.ceil(2.5 * sigma)), int(np.ceil(5 * sigma))}))


def window_groups(sigma, quick):
    """The window autoencoders: one fit each, read out each way (the inner split's candidates)."""
    table = [(f"window MSAE n={n_bins}", lambda n=n_bins: make_pipeline(
        _smoother(sigma), _windows(n), _msae()), _readouts(n_bins))
        for n_bins in ((5,) if quick else (3, 5, 10))]
    table.append(("window MSAE n=5 mask_fraction=0", lambda: make_pipeline(
        _smoother(sigma), _windows(5), _msae(mask_fraction=0.0)), _readouts(5)))
    # the window form of the better single-bin setting
    table += [(f"window MSAE poisson+topk+64 n={n_bins}", lambda n=n_bins: make_pipeline(
        _smoother(sigma), _windows(n), _msae(loss="poisson", sparsity="topk", n_latents=64)),
        _readouts(n_bins)) for n_bins in ((5,) if quick else (3, 5))]
    # windows of the counts themselves (no smoothing before them): the model
    # learns its temporal filter
    lengths = unsmoothed_lengths(sigma)
    for n_bins in lengths[-1:] if quick else lengths:
        table += [
            (f"unsmoothed window MSAE n={n_bins}", lambda n=n_bins: make_pipeline(
                _windows(n), _msae()), _readouts(n_bins)),
            (f"unsmoothed window MSAE poisson+topk+64 n={n_bins}",
             lambda n=n_bins: make_pipeline(
                 _windows(n), _msae(loss="poisson", sparsity="topk", n_latents=64)),
             _readouts(n_bins))]
    return table


def transcoder_groups(sigma):
    """The window transcoder, read out at t and centred (two fits)."""
    return [
        ("window transcoder n=5", lambda: make_pipeline(
            _smoother(sigma), _windows(5), MatryoshkaTranscoder(random_state=SEED)),
         [("t", None)]),
        # the transcoder learns the centred window -> the held-out counts at its centre
        ("window transcoder n=5", lambda: make_pipeline(
            _smoother(sigma), _windows(5), _offsets([2]), MatryoshkaTranscoder(random_state=SEED)),
         [("centred", None)]),
    ]


def evaluate(groups, split, show):
    """Co-smoothing of every row of ``groups`` on ``split``; one fit per group."""
    results = {}
    for label, make, readouts in groups:
        fitted = None
        for readout, step in readouts:
            if step is None:
                result, seconds = _bits(make(), split)
                fitted = result.model.estimator_
            else:
                # the same fit, read out again: the time is the readout's only
                result, seconds = _bits(make_pipeline(_requests(_Fitted(fitted)), step()), split)
            row = f"{label}, readout {readout}" if readout else label
            results[row] = result.bits_per_spike
            if show:
                note = "" if step is None else "  (same fit)"
                print(f"{row:<50}{result.bits_per_spike:>11.4f}{seconds:>10.1f}{note}",
                      flush=True)
    return results


def run(name, loader, path, sigmas, quick):
    outer, inner, description = loader(path)
    print(f"\n{description}; {HELD_OUT:.0%} of units held out, seed {SEED}", flush=True)
    sigma = _choose("smoothing sigma (bins)", sigmas, _smoother, inner)
    dims = (8, 16) if quick else (8, 16, 32)
    pca_dim = _choose("PCA dimensions", dims, lambda dim: make_pipeline(
        _smoother(sigma), PCA(n_components=dim)), inner)
    fa_dim = _choose("FA dimensions", dims, lambda dim: make_pipeline(
        _smoother(sigma), FactorAnalysis(n_components=dim, random_state=SEED)), inner)
    start = time.perf_counter()
    inner_windows = evaluate(window_groups(sigma, quick), inner, show=False)
    chosen = max(inner_windows, key=inner_windows.get)
    listed = ", ".join(f"{row.removeprefix('window MSAE ')}: {bits:.4f}"
                       for row, bits in inner_windows.items())
    print(f"  inner split, window MSAE ({time.perf_counter() - start:.0f} s): {listed} "
          f"-> {chosen}", flush=True)
    # the single-bin setting is chosen the same way, so that the two are compared
    # as a user would choose them
    singles = [group for group in baseline_groups(sigma, pca_dim, fa_dim)
               if group[0].endswith("(1 bin)")]
    inner_singles = evaluate(singles, inner, show=False)
    chosen_single = max(inner_singles, key=inner_singles.get)
    listed = ", ".join(f"{row}: {bits:.4f}" for row, bits in inner_singles.items())
    print(f"  inner split, single-bin MSAE: {listed} -> {chosen_single}", flush=True)
    print(f"{'model (' + name + ')':<50}{'bits/spike':>11}{'time (s)':>10}")
    results = evaluate(baseline_groups(sigma, pca_dim, fa_dim) + window_groups(sigma, quick)
                       + transcoder_groups(sigma), outer, show=True)
    smoothing = next(bits for row, bits in results.items() if row.startswith("smoothing"))
    single = max(bits for row, bits in results.items() if row.endswith("(1 bin)"))
    baselines = max(bits for row, bits in results.items()
                    if row.startswith(("smoothing", "PCA", "FA")))
    print(f"single-bin MSAE chosen on the inner split: {chosen_single}: "
          f"{results[chosen_single]:.4f} on the test block", flush=True)
    print(f"window MSAE chosen on the inner split: {chosen}: {results[chosen]:.4f} on the test "
          f"block ({results[chosen] - smoothing:+.4f} against smoothing, "
          f"{results[chosen] - baselines:+.4f} against the best of smoothing, PCA and FA, "
          f"{results[chosen] - results[chosen_single]:+.4f} against the chosen single-bin MSAE, "
          f"{results[chosen] - single:+.4f} against the better single-bin MSAE)", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--recordings", nargs="+", choices=("m1", "pmd"), default=["m1", "pmd"])
    parser.add_argument("--quick", action="store_true",
                        help="windows of 5 bins only, fewer baseline candidates")
    args = parser.parse_args()
    recordings = {
        "m1": ("M1", load_m1, args.data / "m1_stevenson_2011.mat", (0.5, 1.0, 2.0, 3.0)),
        "pmd": ("PMd", load_pmd, args.data / "datahigh_ex2_rawspiketrains.mat",
                (1.0, 2.0, 4.0, 8.0)),
    }
    sklearn.set_config(enable_metadata_routing=True)
    start = time.perf_counter()
    for key in args.recordings:
        name, loader, path, sigmas = recordings[key]
        if not path.exists():
            raise SystemExit(f"data not found: {path}")
        run(name, loader, path, sigmas, args.quick)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; seeds {SEED} (held-out units, "
          "test and inner trials, models)")


if __name__ == "__main__":
    main()
