#!/usr/bin/env python3
"""Compare two evaluations module by module: for every (method, module) in both, the shipped
list, `.text`, allocated bytes, instruction count and opt evaluations must be equal.

    python scripts/compare-eval-records.py docs/eval/results.json /tmp/repro/results.json

Used to show that a refactor of the decision path reproduces committed results exactly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _records(path: Path) -> dict[tuple[str, str], dict[str, object]]:
    data = json.loads(Path(path).read_text())
    return {(r["method"], r["module"]): r for r in data["records"] if r.get("status") == "ok"}


def _shipped(r: dict[str, object]) -> tuple[object, ...]:
    c = r.get("chosen") or {}
    assert isinstance(c, dict)
    return (c.get("pass_list"), c.get("text"), c.get("alloc"), c.get("count"), r.get("evals"))


def main(argv: list[str]) -> int:
    old, new = _records(Path(argv[0])), _records(Path(argv[1]))
    both = sorted(set(old) & set(new))
    differ = [(k, _shipped(old[k]), _shipped(new[k])) for k in both if _shipped(old[k]) != _shipped(new[k])]
    by_method: dict[str, list[int]] = {}
    for k in both:
        by_method.setdefault(k[0], [0, 0])[0] += 1
    for k, _, _ in differ:
        by_method[k[0]][1] += 1
    for m, (n, d) in sorted(by_method.items()):
        print(f"{m}: {n} modules compared, {d} differ")
    for k, a, b in differ[:20]:
        print(f"  {k[0]} {k[1]}: {a} -> {b}")
    print(f"{len(both)} (method, module) pairs, {len(differ)} differ")
    return 1 if differ or not both else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
