"""From spike trains to samples: binning, and behaviour and trial metadata on the bins."""

# Filled in as the modules land; names resolve lazily until then.
_PUBLIC = {
    "MC_MAZE_CONDITIONS": "._behaviour",
    "MC_MAZE_EVENTS": "._behaviour",
    "SpikeBinner": "._binning",
    "bin_metadata": "._behaviour",
    "kinematics": "._behaviour",
    "resample_to_bins": "._behaviour",
    "trial_labels": "._behaviour",
}


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
