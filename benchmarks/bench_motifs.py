"""Planted spatio-temporal motifs: a window model against a single-bin model.

``make_motif_session(random_state=0)`` (50 units, 300 s; two sequences of 8
units and a rotation of 8 units, each motif a few hundred milliseconds long)
is binned at 20 ms over the whole session; the first 80 % of the bins train,
the last 20 % test. Two models are fitted on the training bins:

- single-bin: ``MatryoshkaSAE`` on the counts (one bin per row);
- window: ``TimeWindows(N)`` then ``MatryoshkaSAE``, ``N`` the longest
  motif's length in bins (the windows are built over the whole session and
  then split, so the first test windows hold the last training bins).

For each planted motif and each model the table gives:

- **window model**: the best latent's kernel correlation: its decoder row
  reshaped to ``(N, n_units)`` (lag-major, oldest bin first, as
  ``TimeWindows`` orders its columns) against ``truth.kernel(name, 0.02,
  offset)``, zero-padded into the window, at the best position in the
  window and the best onset offset in the bin (0, 1/4, 1/2, 3/4 of a bin);
  the number of latents at or above 0.9 (copies of the motif at other
  positions in the window count); and timing: the Pearson correlation, on
  the test bins, of the latent's code at bin ``t`` with the motif's
  ``onset_indicator`` at bin ``t - s``, at the shift ``s`` that the kernel's
  position implies (the window ending at ``t`` holds the onset ``s`` bins
  back), with the shift that maximises it;
- **single-bin model**: a decoder row is one bin, so the best it can do is
  one lag slice of the kernel: the best correlation of any latent's decoder
  row with any lag slice (rows of ``truth.kernel`` at offset 0 holding at
  least a quarter of the largest row's counts), and the number of latents
  needed to cover the motif: those whose rows correlate > 0.5 with some
  slice, and the slices so covered.

- **motif model** (``MotifSAE``, the shift-equivariant convolutional
  model) with its default parameters but ``n_bins_kernel = N`` (the user's
  choice: the longest motif's length in bins, as for the window model),
  fitted on the training counts as one stretch: the best latent's kernel
  (``components_[j]``, ``(N, n_units)``, lag 0 the code's own bin) against
  ``truth.kernel(name, 0.02, offset)`` placed at the best start bin ``p``
  of the kernel and the best onset offset; the latents at or above 0.9; and
  timing: the correlation, on the test bins, of the latent's code at bin
  ``t`` with the motif's onsets at bin ``t + s``, at the shift ``s = p``
  that the kernel implies (0: the code marks the onset's own bin) and the
  shift in ``[-(N - 1), N - 1]`` that maximises it. ``--motif-seeds``
  repeats it for other model seeds.

Target: the window model holds each motif as one latent (kernel correlation
>= 0.9, timing at the implied shift) where the single-bin model needs
several latents or none. Defaults first (``mask_fraction=0.25``, ``k=8``,
256 latents), then a few other settings; every row is printed; the motif
model's rows come last.

Run: ``python benchmarks/bench_motifs.py [--quick] [--settings 0 1]
[--motif-only] [--motif-seeds 0 1 2] [--motif-encoder transformer]
[--motif-kernel 32]``
(``--quick``: the defaults only; ``--settings``: those rows of the
settings; ``--motif-only``: the motif model's rows only).
"""

import argparse
import time

import numpy as np

from sklearn_nldisco import MatryoshkaSAE, MotifSAE
from sklearn_nldisco.datasets import make_motif_session
from sklearn_nldisco.preprocessing import SpikeBinner, TimeWindows

SEED = 0
BIN_SIZE_S = 0.02
TRAIN_FRACTION = 0.8
OFFSETS = (0.0, 0.25, 0.5, 0.75)  # onset offsets in the first bin, as fractions of a bin
SLICE_SHARE = 0.25  # a lag slice counts if it holds this share of the largest slice's counts
COVER_THRESHOLD = 0.5
SETTINGS = (  # (label, MatryoshkaSAE parameters); the first is the defaults
    ("defaults (256 latents, k=8, mask 0.25)", {}),
    ("mask_fraction=0", {"mask_fraction": 0.0}),
    ("64 latents, k=8, mask 0", {"n_latents": 64, "mask_fraction": 0.0}),
    ("32 latents, k=4, mask 0", {"n_latents": 32, "k": 4, "mask_fraction": 0.0}),
)


def correlation(a, b):
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator > 0 else 0.0


def kernels(truth, name):
    """The motif's kernel at each onset offset in the bin."""
    return [truth.kernel(name, BIN_SIZE_S, offset * BIN_SIZE_S) for offset in OFFSETS]


def best_window_alignment(decoder_row, truth_kernels, n_bins_window, n_units):
    """Best correlation of a window decoder row with the kernel: (r, position)."""
    pattern = decoder_row.reshape(n_bins_window, n_units)
    best = (-np.inf, 0)
    for kernel in truth_kernels:
        n_lags = min(len(kernel), n_bins_window)
        for position in range(n_bins_window - n_lags + 1):
            padded = np.zeros_like(pattern)
            padded[position:position + n_lags] = kernel[:n_lags]
            r = correlation(pattern, padded)
            if r > best[0]:
                best = (r, position)
    return best


def timing(codes, indicator, n_bins_window):
    """Correlation of codes at t with the onsets at t - s, for each shift s."""
    out = np.zeros(n_bins_window)
    for shift in range(n_bins_window):
        out[shift] = correlation(codes[shift:], indicator[:len(indicator) - shift])
    return out


def window_rows(truth, model, n_bins_window, codes_test, indicators):
    rows = []
    n_units = truth.n_units
    for name in truth.motif_names:
        truth_kernels = kernels(truth, name)
        fits = [best_window_alignment(row, truth_kernels, n_bins_window, n_units)
                for row in model.components_]
        scores = np.array([r for r, _ in fits])
        best = int(np.argmax(scores))
        position = fits[best][1]
        expected_shift = n_bins_window - 1 - position
        by_shift = timing(codes_test[:, best], indicators[name], n_bins_window)
        rows.append((name, best, scores[best], int(np.sum(scores >= 0.9)),
                     by_shift[expected_shift], expected_shift, int(np.argmax(by_shift))))
    return rows


def motif_timing(codes, indicator, max_shift):
    """Correlation of codes at t with the onsets at t + s, s in [-max_shift, max_shift]."""
    n_bins = len(indicator)
    out = {}
    for shift in range(-max_shift, max_shift + 1):
        if shift >= 0:
            out[shift] = correlation(codes[:n_bins - shift], indicator[shift:])
        else:
            out[shift] = correlation(codes[-shift:], indicator[:n_bins + shift])
    return out


def motif_model_rows(truth, model, codes_test, indicators):
    """Best kernel per motif: (name, latent, r, n >= 0.9, timing, shift, best shift)."""
    rows = []
    n_kernel = model.n_bins_kernel
    for name in truth.motif_names:
        truth_kernels = kernels(truth, name)
        # a kernel is a window whose lag 0 comes first: the same alignment
        fits = [best_window_alignment(component.ravel(), truth_kernels, n_kernel,
                                      truth.n_units)
                for component in model.components_]
        scores = np.array([r for r, _ in fits])
        best = int(np.argmax(scores))
        start = fits[best][1]
        by_shift = motif_timing(codes_test[:, best], indicators[name], n_kernel - 1)
        rows.append((name, best, scores[best], int(np.sum(scores >= 0.9)),
                     by_shift[start], start, max(by_shift, key=by_shift.get)))
    return rows


def single_bin_rows(truth, model):
    rows = []
    for name in truth.motif_names:
        kernel = truth.kernel(name, BIN_SIZE_S)
        share = kernel.sum(axis=1) / kernel.sum(axis=1).max()
        slices = kernel[share >= SLICE_SHARE]
        r = np.array([[correlation(row, lag_slice) for lag_slice in slices]
                      for row in model.components_])  # latents x slices
        covering = r.max(axis=1) > COVER_THRESHOLD
        slices_covered = 0
        if covering.any():
            slices_covered = int(np.sum(r[covering].max(axis=0) > COVER_THRESHOLD))
        rows.append((name, float(r.max()), int(covering.sum()), slices_covered, len(slices)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the default settings only")
    parser.add_argument("--settings", type=int, nargs="+", default=None,
                        help="indices into the settings to run (default: all)")
    parser.add_argument("--motif-only", action="store_true",
                        help="the motif model (MotifSAE) only")
    parser.add_argument("--motif-seeds", type=int, nargs="+", default=[SEED],
                        help="model seeds of the motif model (default: 0)")
    parser.add_argument("--motif-encoder", choices=("conv", "transformer"), default="conv",
                        help="the motif model's encoder (default: conv, its default)")
    parser.add_argument("--motif-kernel", type=int, default=None,
                        help="the motif model's n_bins_kernel (default: the longest motif)")
    args = parser.parse_args()

    recording, truth = make_motif_session(random_state=SEED)
    binner = SpikeBinner(BIN_SIZE_S, t_start=0.0, t_stop=truth.duration_s, dtype=np.float32)
    counts = binner.fit_transform(recording)
    n_bins, n_units = counts.shape
    n_train = int(TRAIN_FRACTION * n_bins)
    motif_lags = {name: len(truth.kernel(name, BIN_SIZE_S)) for name in truth.motif_names}
    n_bins_window = max(motif_lags.values())
    windows = TimeWindows(n_bins_window).fit_transform(counts)
    edges_test = binner.bin_edges_[n_train:]
    indicators = {name: truth.onset_indicator(name, edges_test) for name in truth.motif_names}

    print(f"make_motif_session(random_state={SEED}): {n_units} units, {truth.duration_s:g} s; "
          f"bins of {BIN_SIZE_S * 1e3:g} ms: {n_bins:,} ({n_train:,} train, "
          f"{n_bins - n_train:,} test); model seed {SEED}")
    for name in truth.motif_names:
        motif = truth.motifs[name]
        print(f"  {name}: {len(motif['units'])} units, {motif['duration_s'] * 1e3:.0f} ms "
              f"= {motif_lags[name]} bins, {len(motif['onset_times_s'])} onsets "
              f"({int(indicators[name].sum())} in the test bins)")
    print(f"window: TimeWindows({n_bins_window}) -> {windows.shape[1]} features")
    print()
    print("| setting | model | motif | best latent | kernel r | latents r >= 0.9 "
          "| timing r (shift) | best shift | latents > 0.5 (slices covered) | fit (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    settings = SETTINGS[:1] if args.quick else SETTINGS
    if args.settings is not None:
        settings = [SETTINGS[index] for index in args.settings]
    if args.motif_only:
        settings = []
    for label, parameters in settings:
        start = time.perf_counter()
        single = MatryoshkaSAE(random_state=SEED, **parameters).fit(counts[:n_train])
        single_s = time.perf_counter() - start
        for name, r, n_covering, covered, n_slices in single_bin_rows(truth, single):
            print(f"| {label} | single bin | {name} | - | slice {r:.2f} | - | - | - "
                  f"| {n_covering} ({covered}/{n_slices}) | {single_s:.0f} |")
        start = time.perf_counter()
        window = MatryoshkaSAE(random_state=SEED, **parameters).fit(windows[:n_train])
        window_s = time.perf_counter() - start
        codes_test = window.transform(windows[n_train:])
        if hasattr(codes_test, "toarray"):
            codes_test = codes_test.toarray()
        for name, best, r, n_copies, r_time, shift, best_shift in window_rows(
                truth, window, n_bins_window, codes_test, indicators):
            print(f"| {label} | window {n_bins_window} | {name} | {best} | {r:.2f} | "
                  f"{n_copies} | {r_time:.2f} ({shift}) | {best_shift} | - | {window_s:.0f} |")
    n_bins_kernel = args.motif_kernel or n_bins_window
    for model_seed in args.motif_seeds:
        start = time.perf_counter()
        motif = MotifSAE(n_bins_kernel=n_bins_kernel, encoder=args.motif_encoder,
                         random_state=model_seed)
        motif.fit(counts[:n_train])
        motif_s = time.perf_counter() - start
        codes_test = motif.transform(counts[n_train:])
        encoder = "" if args.motif_encoder == "conv" else f", encoder={args.motif_encoder!r}"
        label = (f"MotifSAE defaults, n_bins_kernel={n_bins_kernel}{encoder}, "
                 f"seed {model_seed}")
        for name, best, r, n_copies, r_time, shift, best_shift in motif_model_rows(
                truth, motif, codes_test, indicators):
            print(f"| {label} | motif {n_bins_kernel} | {name} | {best} | {r:.3f} | "
                  f"{n_copies} | {r_time:.2f} ({shift}) | {best_shift} | - | {motif_s:.0f} |")


if __name__ == "__main__":
    main()
