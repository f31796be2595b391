"""From latents to behaviour: which latents mean what, driven by which units, how stable."""

# Filled in as the modules land; names resolve lazily until then.
_PUBLIC = {
    "Activations": "._activations",
    "load_activations": "._activations",
    "save_activations": "._activations",
    "latent_units": "._attribution",
    "ranking_agreement": "._attribution",
    "top_units_table": "._attribution",
}


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
