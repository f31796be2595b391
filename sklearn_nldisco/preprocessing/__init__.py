"""From spike trains to samples: binning, and behaviour and trial metadata on the bins."""

from ._behaviour import (
    MC_MAZE_CONDITIONS,
    MC_MAZE_EVENTS,
    bin_metadata,
    kinematics,
    resample_to_bins,
    trial_labels,
)
from ._binning import SpikeBinner

__all__ = [
    "MC_MAZE_CONDITIONS",
    "MC_MAZE_EVENTS",
    "SpikeBinner",
    "bin_metadata",
    "kinematics",
    "resample_to_bins",
    "trial_labels",
]
