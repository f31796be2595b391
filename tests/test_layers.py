"""The package's layers: each uses the public face of the ones below it, never a higher one.

Data flows one way, and imports follow it::

    datasets (io) -> preprocessing -> models -> interpretation -> _cli (the command)

Every import statement of every module of the package, at any depth (inside
functions too), is read with ``ast``. A module may import from its own
subpackage freely; from another subpackage it may import only the public
names of its ``__init__`` (no ``_private`` module, no ``_private`` name),
and only from a lower layer.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = "sklearn_nldisco"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
# the layer of each subpackage (and top-level module); higher numbers may
# import lower ones
LAYERS = {"datasets": 0, "io": 0, "preprocessing": 1, "models": 2, "interpretation": 3,
          "evaluation": 3,
          "_cli": 4, "cli": 4, "__main__": 4, "__init__": 5}
# names any module may take from the package itself
PACKAGE_METADATA = {"__version__"}


def _modules():
    return sorted(ROOT.rglob("*.py"))


def _module_name(path, root):
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer_key(module):
    """``sklearn_nldisco.models._base`` -> ``models``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path, root):
    """(line, imported module, imported names) of every import in ``path``."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield node.lineno, target, tuple(alias.name for alias in node.names)


def _violations(path, root=ROOT):
    """Private imports across subpackages and imports of a higher layer, as messages."""
    here = _layer_key(_module_name(path, root))
    where = path.relative_to(root.parent)
    for line, target, names in _imports(path, root):
        if target != PACKAGE and not target.startswith(PACKAGE + "."):
            continue  # not this package
        there = _layer_key(target)
        same_layer_group = here == there or {here, there} <= {"_cli", "cli", "__main__"}
        if same_layer_group:
            continue
        if there == "__init__" and set(names) <= PACKAGE_METADATA:
            continue
        inner = target.split(".")[2:]
        private = [part for part in inner if part.startswith("_")]
        private += [name for name in names if name.startswith("_") and name not in
                    PACKAGE_METADATA]
        if private:
            yield (f"{where}:{line} imports {', '.join(private)} from {target}: a private "
                   f"part of {there}; use the public names of {PACKAGE}.{there}")
        if LAYERS[there] > LAYERS[here]:
            yield (f"{where}:{line} imports {target}: {here} must not import the higher "
                   f"layer {there}")


def test_every_subpackage_has_a_layer():
    keys = {_layer_key(_module_name(path, ROOT)) for path in _modules()}
    assert keys <= set(LAYERS), f"give these a place in LAYERS: {sorted(keys - set(LAYERS))}"


def test_no_private_or_upward_imports_across_layers():
    problems = [message for path in _modules() for message in _violations(path)]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("subpackage, source, expected", [
    ("_cli", "from ..models._base import explained_variance", "private part of models"),
    ("_cli", "from ..models import _training", "private part of models"),
    ("_cli", "from sklearn_nldisco.interpretation._figures import plot_l0",
     "private part of interpretation"),
    ("interpretation", "import sklearn_nldisco.models._rows", "private part of models"),
    ("preprocessing", "from ..datasets._recording import Recording",
     "private part of datasets"),
    ("preprocessing", "from ..interpretation import SelectivityScorer",
     "must not import the higher layer"),
    ("models", "from .. import MatryoshkaSAE", "must not import the higher layer"),
])
def test_the_check_finds_bad_imports(tmp_path, subpackage, source, expected):
    # one bad import, inside a function
    module = _example_module(tmp_path, subpackage, f"def f():\n    {source}\n")
    problems = list(_violations(module, tmp_path / PACKAGE))
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize("source", [
    "from ..datasets import Recording",
    "from ._binning import SpikeBinner",
    "from . import _binning",
    "from .. import __version__",
    "import numpy as np",
])
def test_the_check_allows_public_and_own_imports(tmp_path, source):
    module = _example_module(tmp_path, "preprocessing", f"{source}\n")
    assert list(_violations(module, tmp_path / PACKAGE)) == []


def _example_module(tmp_path, subpackage, text):
    package = tmp_path / PACKAGE / subpackage
    package.mkdir(parents=True)
    module = package / "_example.py"
    module.write_text(text)
    return module
