"""Sphinx configuration for the sklearn-nldisco documentation.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import sklearn_nldisco

project = "sklearn-nldisco"
author = "sklearn-nldisco developers"
copyright = "sklearn-nldisco developers"
release = sklearn_nldisco.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# MyST: anchors for headings, so that links like ``models.md#input-scaling`` resolve.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# API reference: one page per public name, generated from the docstrings.
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {
    "members": True,
    "inherited-members": False,
    "show-inheritance": False,
}
autodoc_member_order = "groupwise"
autodoc_typehints = "none"

# NumPy-style docstrings. Methods are documented by autodoc (the class
# template), so numpydoc does not add its own member tables; no
# cross-reference is made from parameter types.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

html_theme = "furo"
html_title = f"sklearn-nldisco {release}"
html_static_path = []


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    """Skip scikit-learn's generated ``set_*_request`` methods.

    They are created by scikit-learn's metadata routing for every estimator,
    and their docstrings refer to scikit-learn's own glossary.
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
