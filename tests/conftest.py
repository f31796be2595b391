"""Shared fixtures."""

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny problems: one thread avoids oversubscribing a busy 2-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def assert_same_codes(actual, expected, rtol=1e-5, atol=1e-6):
    """Codes of the same rows, coded in another batch, order or chunking.

    The active latents must be the same and their values equal up to the
    float32 rounding of the encoder product: BLAS kernels may round a row's
    product by the row's position in their tile (OpenBLAS's Haswell sgemm
    does, by the row's position modulo 12), so bitwise equality is not
    something the coder can promise on every machine.
    """
    import numpy as np
    import scipy.sparse as sp

    actual = actual.toarray() if sp.issparse(actual) else np.asarray(actual)
    expected = expected.toarray() if sp.issparse(expected) else np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_array_equal(actual != 0, expected != 0, err_msg="active latents differ")
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def error_line(capsys, argv):
    """Run ``nldisco argv`` as a user mistake: exit status 2 and one line on stderr.

    Returns
    -------
    line : str
        The line, ``nldisco: error: ...``.
    """
    from sklearn_nldisco.cli import main

    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("nldisco: error: ")
    return lines[0]


# Torch is made unimportable by a finder placed first on ``sys.meta_path``
# rather than by ``sys.modules['torch'] = None``: SciPy's array-API helpers
# (imported by scikit-learn) read ``sys.modules['torch'].Tensor`` whenever the
# key exists, so a ``None`` entry breaks ``import sklearn`` itself.
_NO_TORCH_PREAMBLE = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("torch is importable in the child")
"""


def run_without_torch(code):
    """Run ``code`` in a fresh interpreter where ``import torch`` fails, and
    check that it ran and never loaded torch."""
    import subprocess
    import sys
    import textwrap

    child = (_NO_TORCH_PREAMBLE + textwrap.dedent(code)
             + '\nassert "torch" not in sys.modules, "torch was loaded"\n')
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
