"""From spike trains to samples: binning, and behaviour and trial metadata on the bins."""

# Filled in as the modules land; names resolve lazily until then.
_PUBLIC = {
    "SpikeBinner": "._binning",
}


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
