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
