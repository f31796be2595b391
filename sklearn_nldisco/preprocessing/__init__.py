"""From spike trains to samples: binning, and behaviour and trial metadata on the bins."""

from ._behaviour import bin_metadata, kinematics, resample_to_bins, trial_labels
from ._binning import SpikeBinner, smooth_within_intervals
from ._epochs import SpikeEpochs

__all__ = [
    "SpikeBinner",
    "SpikeEpochs",
    "bin_metadata",
    "kinematics",
    "resample_to_bins",
    "smooth_within_intervals",
    "trial_labels",
]
