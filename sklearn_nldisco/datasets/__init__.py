"""Recordings: NWB and Kilosort/Phy loading, DANDI download, and the simulated sessions."""

from ._fetch import DownloadError, fetch_mc_maze, get_data_home
from ._mc_maze import (
    MC_MAZE_BEHAVIOUR,
    MC_MAZE_CONDITIONS,
    MC_MAZE_EVENTS,
    MC_MAZE_TRIAL_COLUMNS,
)
from ._motifs import MotifGroundTruth, make_motif_session
from ._nwb import load_mc_maze, load_nwb, write_nwb
from ._phy import load_phy
from ._recording import BehaviourSeries, Recording
from ._simulate import ReachingGroundTruth, make_reaching_session

__all__ = [
    "MC_MAZE_BEHAVIOUR",
    "MC_MAZE_CONDITIONS",
    "MC_MAZE_EVENTS",
    "MC_MAZE_TRIAL_COLUMNS",
    "BehaviourSeries",
    "DownloadError",
    "MotifGroundTruth",
    "ReachingGroundTruth",
    "Recording",
    "fetch_mc_maze",
    "get_data_home",
    "load_mc_maze",
    "load_nwb",
    "load_phy",
    "make_motif_session",
    "make_reaching_session",
    "write_nwb",
]
