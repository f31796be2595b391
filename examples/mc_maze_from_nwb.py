"""Load an MC_Maze NWB file, bin the movement window, and use its held-out split.

MC_Maze (DANDI 000128 and its smaller versions 000138-000140) is a delayed
reaching task in a maze. ``load_mc_maze`` reads its training file and checks
the MC_Maze fields: the units column ``heldout``, the trial columns
``MC_MAZE_TRIAL_COLUMNS`` (conditions ``trial_type``, ``trial_version``,
``maze_id``; events ``target_on_time``, ``go_cue_time``,
``move_onset_time``; ``success``; ``split``) and the behaviour
``MC_MAZE_BEHAVIOUR`` (hand, cursor and eye position, hand velocity).

This script then does what the MC_Maze specifics call for (for NWB files in
general, see ``examples/nwb_to_bins.py``):

* keeps the successful trials and bins the window that the Neural Latents
  Benchmark uses, 250 ms before to 450 ms after movement onset, in 50 ms
  bins, for the held-in units (``heldout`` False) only;
* labels each bin with its trial, the MC_Maze conditions
  (``MC_MAZE_CONDITIONS``) and its task phase from the MC_Maze events
  (``MC_MAZE_EVENTS``);
* fits a small ``MatryoshkaSAE`` on the "train" trials and scores it on the
  "val" trials of the file's ``split`` column.

With no argument there is no download: the simulated reaching session is
given the MC_Maze fields it lacks (a ``heldout`` quarter of the units,
``trial_version`` and ``maze_id`` columns, cursor and eye position) and
written to a temporary NWB file with ``write_nwb``, which is then read as a
user reads the real file. To use the real recording, download it first
(``nldisco fetch mc_maze --size small`` prints its path, as does
``sklearn_nldisco.datasets.fetch_mc_maze("small")``) and pass the path:

Run: ``python examples/mc_maze_from_nwb.py [PATH.nwb]``
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.datasets import (
    MC_MAZE_BEHAVIOUR,
    MC_MAZE_CONDITIONS,
    MC_MAZE_EVENTS,
    MC_MAZE_TRIAL_COLUMNS,
    BehaviourSeries,
    load_mc_maze,
    make_reaching_session,
    write_nwb,
)
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata

SEED = 0
WINDOW_S = (-0.25, 0.45)  # around movement onset, as in the Neural Latents Benchmark


def simulated_mc_maze_file(path):
    """Write the simulated session, with the MC_Maze fields it lacks, to ``path``."""
    recording, _ = make_reaching_session(n_units=80, n_trials=160, random_state=SEED)
    rng = np.random.RandomState(SEED)
    units = recording.units.copy()
    units["heldout"] = rng.uniform(size=len(units)) < 0.25
    trials = recording.trials.copy()
    trials["trial_version"] = 0
    trials["maze_id"] = trials["trial_type"] + 1
    hand = recording.behaviour["hand_pos"]
    behaviour = dict(recording.behaviour)
    behaviour["cursor_pos"] = BehaviourSeries(hand.timestamps, hand.data.copy(), unit="mm")
    behaviour["eye_pos"] = BehaviourSeries(hand.timestamps, np.zeros_like(hand.data),
                                           unit="mm")  # placeholder: no eyes simulated
    recording.units, recording.trials, recording.behaviour = units, trials, behaviour
    write_nwb(recording, path)
    return recording


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=None,
                        help="an MC_Maze ..._desc-train_behavior+ecephys.nwb file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as folder:
        written = None
        path = args.path
        if path is None:
            path = Path(folder) / "sub-simulated_desc-train_behavior+ecephys.nwb"
            written = simulated_mc_maze_file(path)
            print(f"no file given: wrote the simulated session (seed {SEED}) in the MC_Maze "
                  f"layout to a temporary file")
        start = time.perf_counter()
        recording = load_mc_maze(path)  # exactly as for the real file
        print(f"load_mc_maze({path.name}) in {time.perf_counter() - start:.1f} s: "
              f"{recording.n_units} units, {len(recording.trials)} trials, behaviour "
              f"{sorted(recording.behaviour)}")
    if written is not None:  # the file holds what was written, bit for bit
        assert all(np.array_equal(a, b) for a, b in
                   zip(written.spike_times, recording.spike_times, strict=True))
        assert recording.units["heldout"].equals(written.units["heldout"])

    trials = recording.trials
    assert set(MC_MAZE_TRIAL_COLUMNS) <= set(trials.columns)
    assert set(MC_MAZE_BEHAVIOUR) <= set(recording.behaviour)
    # Successful trials with a movement onset; the window around it.
    kept = trials[trials["success"].astype(bool) & trials["move_onset_time"].notna()]
    windows = pd.DataFrame({"start_time": kept["move_onset_time"] + WINDOW_S[0],
                            "stop_time": kept["move_onset_time"] + WINDOW_S[1]})
    held_in = ~recording.units["heldout"].astype(bool).to_numpy()
    spikes = [train for train, keep in zip(recording.spike_times, held_in) if keep]

    binner = SpikeBinner(bin_size=0.05, intervals=windows, smooth_sigma=0.05)
    counts = binner.fit_transform(spikes)
    metadata = bin_metadata(binner, recording)  # trials, conditions, phase, kinematics
    conditions = [c for c in MC_MAZE_CONDITIONS if c in metadata.columns]
    print(f"{held_in.sum()} held-in units ({(~held_in).sum()} held out), "
          f"{len(kept)} of {len(trials)} trials kept; window {WINDOW_S[0]:+.2f} to "
          f"{WINDOW_S[1]:+.2f} s around movement onset -> counts {counts.shape}")
    print(f"condition columns on the bins: {conditions}")
    print("\nbins per task phase (MC_MAZE_EVENTS) and split:")
    print(pd.crosstab(metadata["phase"], metadata["split"]).to_string())

    train = (metadata["split"] == "train").to_numpy()
    val = (metadata["split"] == "val").to_numpy()
    sae = MatryoshkaSAE(n_latents=32, k=4, random_state=SEED).fit(counts[train])
    score_train, score_val = sae.score(counts[train]), sae.score(counts[val])
    n_train = metadata.loc[train, "trial_id"].nunique()
    n_val = metadata.loc[val, "trial_id"].nunique()
    print(f"\nMatryoshkaSAE(n_latents=32, k=4), held-in units: explained variance "
          f"{score_train:.3f} on the {n_train} train trials, {score_val:.3f} on the "
          f"{n_val} val trials")

    # The example checks its own results, on the simulated or the real file.
    phases = {phase for _, phase in MC_MAZE_EVENTS}
    assert len(counts) == len(metadata) and counts.shape[1] == held_in.sum()
    assert (metadata["trial_id"] >= 0).all(), "every window bin lies inside its trial"
    assert set(metadata["phase"].dropna()) <= phases and "movement" in set(metadata["phase"])
    assert {"trial_type", "trial_version", "maze_id", "split"} <= set(conditions)
    assert n_train > 0 and n_val > 0
    assert not set(metadata.loc[train, "trial_id"]) & set(metadata.loc[val, "trial_id"])
    assert score_val > 0.1, "the model should explain held-out (val) trials"


if __name__ == "__main__":
    main()
