"""The deliberate breaks of `scripts/check-mutations.py` still apply to today's code.

That script shows each guarding test can fail, but it is too slow for every CI run; this test is
not. A mutation whose `old` text no longer occurs (code moved or renamed) silently stops proving
anything, so each must occur exactly once in its file, change it, and leave valid Python.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTATIONS = [m for f in sorted((ROOT / "tests" / "mutations").glob("*.toml"))
             for m in tomllib.loads(f.read_text()).get("mutation", [])]


def test_the_catalogue_is_not_empty_and_names_are_unique() -> None:
    names = [m["name"] for m in MUTATIONS]
    assert len(names) >= 50 and len(set(names)) == len(names)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m["name"] for m in MUTATIONS])
def test_mutation_applies_to_todays_code(mutation: dict[str, object]) -> None:
    path = ROOT / str(mutation["file"])
    src = path.read_text()
    old, new = str(mutation["old"]), str(mutation["new"])
    assert src.count(old) == 1, f"{mutation['file']}: the text to break occurs {src.count(old)} times"
    assert new != old
    mutated = src.replace(old, new)
    if path.suffix == ".py":
        ast.parse(mutated)
    tests = mutation["tests"]
    assert isinstance(tests, list) and tests
    for node in tests:
        assert (ROOT / str(node).split("::")[0]).exists(), node


SCRIPT = ROOT / "scripts" / "check-mutations.py"


def test_an_empty_selection_is_refused() -> None:
    """A selection naming no mutation proves nothing: an error, never "0/0 caught" and exit 0."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(SCRIPT), "no-such-mutation-name"], capture_output=True, text=True)
    assert r.returncode == 2 and "no mutation matches" in r.stderr


def test_the_fixed_sample_is_caught() -> None:
    """The sample CI runs (`sample = true`, at least 10): each break turns its tests red, and the
    real code keeps them green. The whole catalogue: `python scripts/check-mutations.py`."""
    import subprocess
    import sys

    sample = [m for m in MUTATIONS if m.get("sample") is True]
    assert len(sample) >= 10
    r = subprocess.run([sys.executable, str(SCRIPT), "--sample"], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(sample)}/{len(sample)} mutations caught" in r.stdout
