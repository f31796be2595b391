"""From an NWB file to binned counts and a per-bin metadata table.

The simulated reaching session (the package's built-in data) is written to
an NWB file, read back, binned into 50 ms bins inside each trial, and every
bin gets its trial, condition, task phase and hand kinematics. For a real
recording, start at ``load_nwb`` (or ``fetch_mc_maze`` then ``load_mc_maze``).

Run: ``python examples/nwb_to_bins.py``
"""

import tempfile
from pathlib import Path

import numpy as np

from sklearn_nldisco.datasets import load_nwb, make_reaching_session, write_nwb
from sklearn_nldisco.preprocessing import SpikeBinner, bin_metadata

with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "reaching.nwb"
    session, truth = make_reaching_session(n_units=60, n_trials=40, random_state=0)
    write_nwb(session, path)

    recording = load_nwb(path)
    binner = SpikeBinner(bin_size=0.05, intervals=recording.trials).set_output(transform="pandas")
    counts = binner.fit_transform(recording)
    metadata = bin_metadata(binner, recording)

print(f"{recording.n_units} units, {len(recording.trials)} trials -> counts {counts.shape}, "
      f"metadata {metadata.shape}; {binner.n_spikes_dropped_} spikes outside the trials' bins")
print(metadata[["trial_id", "trial_type", "phase", "speed", "direction_deg"]].iloc[::25].head(8))
print("mean count per bin and phase:")
print(counts.sum(axis=1).groupby(metadata["phase"], observed=True).mean().round(2))
# the binned counts and the metadata line up bin for bin
assert len(counts) == len(metadata)
assert np.array_equal(binner.interval_ids_, metadata["interval_id"].to_numpy())
