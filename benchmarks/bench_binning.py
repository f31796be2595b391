"""Speed and memory of ``SpikeBinner`` at scale: 10^8 spikes, 1,000 units.

About 3 h of recording at ~10 Hz per unit, binned into 50 ms bins
(216,000 bins x 1,000 units). Each case runs in a fresh process, which
builds the spike trains (float64 arrays, one per unit), then times
``fit_transform`` twice: the first ("cold") call pays for the first touch
of the output's memory, the second ("warm") one does not. The target is a
cold call of at most 5 s. Each case is repeated in ``--repeats`` fresh
processes; the table shows the median times and the largest peak. The first
row is the floor that any binner pays: writing zeros to a fresh array of the
output's size.

Memory is the peak resident set size of the process (``getrusage``
``ru_maxrss``, which counts every allocation, NumPy's included) minus its
resident size before the spike trains were built, measured up to the end
of the cold call. The budget is the input's size plus twice the output's.

The first touch of fresh memory varies a lot from run to run on a shared or
virtual machine; compare a case with the floor row of the same run.

Run: ``python benchmarks/bench_binning.py`` (about two minutes).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

FLOOR = "(floor: write a fresh float64 output)"
CASES = {
    FLOOR: dict(),
    "one stretch, float64, 1 thread": dict(dtype="float64", n_jobs=1),
    "one stretch, float64, 2 threads": dict(dtype="float64", n_jobs=2),
    "one stretch, float32, 2 threads": dict(dtype="float32", n_jobs=2),
    "2 s trials, 0.25 s gaps, 2 threads": dict(dtype="float64", n_jobs=2, trials=True),
    "unsorted spike times, 2 threads": dict(dtype="float64", n_jobs=2, shuffle=True),
}


def resident_bytes():
    """Current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def peak_resident_bytes():
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def poisson_spike_trains(n_units, rate_hz, duration_s, seed, shuffle=False):
    """Homogeneous Poisson spike trains, built in place one unit at a time.

    The times of ``n`` spikes are the normalised cumulative sums of ``n + 1``
    exponential draws (uniform order statistics), so no sort is needed and
    the only allocation is the unit's own array.
    """
    rng = np.random.default_rng(seed)
    trains = []
    for _ in range(n_units):
        n_spikes = rng.poisson(rate_hz * duration_s)
        times = rng.standard_exponential(n_spikes + 1)
        np.cumsum(times, out=times)
        times[:n_spikes] *= duration_s / times[n_spikes]
        times = times[:n_spikes]
        if shuffle:
            rng.shuffle(times)
        trains.append(times)
    return trains


def floor_row(n_bins, n_units):
    """Cold and warm time of writing zeros to an output-sized float64 array:
    what any binner pays for its output, whatever its counting costs."""
    start = time.perf_counter()
    output = np.empty((n_bins, n_units))
    output.fill(0.0)
    cold = time.perf_counter() - start
    output_bytes = output.nbytes
    del output
    start = time.perf_counter()
    output = np.empty((n_bins, n_units))
    output.fill(0.0)
    warm = time.perf_counter() - start
    return cold, warm, output_bytes


def run_case(case, args):
    """One case in this process; returns the measurements as a dict."""
    from sklearn_nldisco.preprocessing import SpikeBinner

    options = CASES[case]
    baseline = resident_bytes()
    trains = poisson_spike_trains(args.n_units, args.rate, args.duration, seed=0,
                                  shuffle=options.get("shuffle", False))
    n_spikes = sum(len(times) for times in trains)
    row = dict(case=case, n_spikes=n_spikes, n_units=len(trains))
    if case == FLOOR:
        n_bins = int(round(args.duration / args.bin_size))
        cold, warm, output_bytes = floor_row(n_bins, len(trains))
        return dict(row, n_bins=n_bins, cold=cold, warm=warm,
                    peak=peak_resident_bytes() - baseline,
                    budget=n_spikes * 8 + 2 * output_bytes)
    parameters = dict(bin_size=args.bin_size, dtype=options["dtype"], n_jobs=options["n_jobs"])
    if options.get("trials"):
        starts = np.arange(0.0, args.duration - 2.0, 2.25)
        parameters["intervals"] = np.column_stack([starts, starts + 2.0])
    else:
        parameters.update(t_start=0.0, t_stop=args.duration)
    binner = SpikeBinner(**parameters)
    start = time.perf_counter()
    counts = binner.fit_transform(trains)
    cold = time.perf_counter() - start
    peak = peak_resident_bytes() - baseline
    assert counts.sum(dtype=np.float64) == n_spikes - binner.n_spikes_dropped_
    output_bytes = counts.nbytes
    del counts
    start = time.perf_counter()
    counts = binner.fit_transform(trains)
    warm = time.perf_counter() - start
    return dict(row, n_bins=counts.shape[0], cold=cold, warm=warm, peak=peak,
                budget=n_spikes * 8 + 2 * output_bytes)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-units", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="spikes/s per unit")
    parser.add_argument("--duration", type=float, default=10800.0, help="seconds")
    parser.add_argument("--bin-size", type=float, default=0.05, help="seconds")
    parser.add_argument("--target", type=float, default=5.0, help="seconds, cold call")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case, args)))
        return

    gib = 2.0**30
    print(f"SpikeBinner.fit_transform: Poisson spike trains at {args.rate:g} Hz for "
          f"{args.duration:g} s, {args.bin_size * 1000:g} ms bins; target "
          f"<= {args.target:g} s (cold), peak RSS increase <= input + 2 x output; "
          f"median of {args.repeats} fresh processes; {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.2f} at start")
    header = (f"{'case':<38}{'n_spikes':>13}{'n_units':>9}{'n_bins':>9}{'cold s':>8}"
              f"{'warm s':>8}{'peak GiB':>10}{'budget GiB':>12}  result")
    print(header)
    print("-" * len(header))
    for case in CASES:
        command = [sys.executable, __file__, "--case", case, "--n-units", str(args.n_units),
                   "--rate", str(args.rate), "--duration", str(args.duration),
                   "--bin-size", str(args.bin_size)]
        runs = [json.loads(subprocess.run(command, check=True, capture_output=True,
                                          text=True).stdout.splitlines()[-1])
                for _ in range(args.repeats)]
        row = dict(runs[0], cold=np.median([run["cold"] for run in runs]),
                   warm=np.median([run["warm"] for run in runs]),
                   peak=max(run["peak"] for run in runs))
        ok = row["cold"] <= args.target and row["peak"] <= row["budget"]
        result = "-" if case == FLOOR else "ok" if ok else "MISSED"
        print(f"{row['case']:<38}{row['n_spikes']:>13,}{row['n_units']:>9,}{row['n_bins']:>9,}"
              f"{row['cold']:>8.2f}{row['warm']:>8.2f}{row['peak'] / gib:>10.2f}"
              f"{row['budget'] / gib:>12.2f}  {result}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
