"""The scripts under examples/ run to the end (each checks its own results)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# examples that read a real recording, which only the project's checkout has
NEEDS_DATA = {"m1_selectivity.py": SHARED_DATA / "m1_stevenson_2011.mat"}


# each example is a fresh Python process that imports torch and fits real
# models: together they take minutes, so they run in the full suite only
@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs(script):
    data = NEEDS_DATA.get(script.name)
    if data is not None and not data.exists():
        pytest.skip(f"{script.name} needs the real recording at {data}")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300,
        cwd=script.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "the example printed nothing"


def test_examples_are_found():
    assert {path.name for path in EXAMPLES} >= {"quickstart.py", "nwb_to_bins.py",
                                                 "m1_selectivity.py"}
