#!/usr/bin/env python3
"""Show that the tests guarding an invariant can fail: apply each deliberate break of the code
(tests/mutations/*.toml), run the tests that must catch it, and expect them red; then green again
on the real code.

Each mutation runs in a private copy of the repository (nothing in the working tree changes):

    .venv/bin/python scripts/check-mutations.py            # all of them (the whole catalogue)
    .venv/bin/python scripts/check-mutations.py remeasure  # names containing "remeasure"
    .venv/bin/python scripts/check-mutations.py --sample   # the fixed sample CI runs (`sample = true`)

A mutation is `[[mutation]]` with `name`, `file`, `old` (text that must occur exactly once),
`new`, `tests` (pytest node ids, run with the copy first on sys.path, the caller's environment
otherwise kept) and optionally `sample = true`. A selection that names no mutation is an error,
not a pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for f in sorted((ROOT / "tests" / "mutations").glob("*.toml")):
        out += tomllib.loads(f.read_text()).get("mutation", [])
    return out


def run_tests(copy: Path, tests: list[str]) -> int:
    # The copy first on sys.path; whatever else the caller's environment has stays.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    return subprocess.run(cmd, cwd=copy, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False).returncode


def check(m: dict[str, object]) -> bool:
    name, rel, old, new = str(m["name"]), str(m["file"]), str(m["old"]), str(m["new"])
    tests = [str(t) for t in m["tests"]]  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info"))
        target = copy / rel
        text = target.read_text()
        if text.count(old) != 1:
            print(f"{name}: `old` occurs {text.count(old)} times in {rel} (stale mutation)")
            return False
        green = run_tests(copy, tests) == 0
        target.write_text(text.replace(old, new))
        red = run_tests(copy, tests) != 0
    ok = green and red
    print(f"{'ok  ' if ok else 'FAIL'} {name}: real code {'green' if green else 'RED'}, "
          f"mutated {'red' if red else 'GREEN (the tests cannot see this break)'}")
    return ok


def main(argv: list[str]) -> int:
    sample = "--sample" in argv
    names = [a for a in argv if a != "--sample"]
    muts = [m for m in load() if (not names or any(a in str(m["name"]) for a in names))
            and (not sample or m.get("sample") is True)]
    if not muts:
        print(f"no mutation matches {' '.join(argv)!r}: nothing would be shown", file=sys.stderr)
        return 2
    results = []
    for i, m in enumerate(muts, 1):
        print(f"[{i}/{len(muts)}] ", end="", flush=True)
        results.append(check(m))
    print(f"{sum(results)}/{len(results)} mutations caught")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
