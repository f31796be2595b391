"""From spike trains to samples: binning, windows of bins, behaviour and trial metadata."""

from ._behaviour import bin_metadata, kinematics, resample_to_bins, trial_labels
from ._binning import SpikeBinner, smooth_within_intervals
from ._epochs import SpikeEpochs
from ._windows import TimeWindows, interval_positions

__all__ = [
    "SpikeBinner",
    "SpikeEpochs",
    "TimeWindows",
    "bin_metadata",
    "interval_positions",
    "kinematics",
    "resample_to_bins",
    "smooth_within_intervals",
    "trial_labels",
]
