"""Recordings: NWB loading, DANDI download, and the simulated reaching session."""

# Filled in as the modules land; names resolve lazily until then.
_PUBLIC = {
    "BehaviourSeries": "._recording",
    "DownloadError": "._fetch",
    "MC_MAZE_BEHAVIOUR": "._nwb",
    "MC_MAZE_TRIAL_COLUMNS": "._nwb",
    "ReachingGroundTruth": "._simulate",
    "Recording": "._recording",
    "load_mc_maze": "._nwb",
    "load_nwb": "._nwb",
    "make_reaching_session": "._simulate",
    "write_nwb": "._nwb",
    "fetch_mc_maze": "._fetch",
    "get_data_home": "._fetch",
}


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
