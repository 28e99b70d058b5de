"""Dependencies point down: no module imports from a layer above its own, nor sideways from a
unit of its own layer (the layering is drawn in docs/architecture.md). Function-level (lazy)
imports count too: they are dependencies all the same."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clang_llm"

# Bottom to top. A unit may import units of lower layers and itself; layer 0 units are leaves of
# shared facts and may import each other.
LAYERS: list[tuple[str, ...]] = [
    ("clang_llm", "clang_llm.passes", "clang_llm.toolchain", "clang_llm.ir", "clang_llm.objsize",
     "clang_llm.config", "clang_llm.logs", "clang_llm.progress", "clang_llm.db", "clang_llm.resources",
     "clang_llm.weights", "clang_llm.prompt_format", "clang_llm.errors", "clang_llm.records", "clang_llm.atomic",
     "clang_llm.safe_text", "clang_llm.state_dir", "clang_llm.clang_args"),
    ("clang_llm.build",),  # TUBuilder, Finding, target options, atomic outputs
    ("clang_llm.model",),  # the model backend
    ("clang_llm.optimizer",),  # prompt, loop, factory
    ("clang_llm.identity", "clang_llm.explain", "clang_llm.serve"),  # serve: one model over HTTP
    ("clang_llm.driver",),  # the compile path
    ("clang_llm.train",),  # corpus, labels, training
    ("clang_llm.eval",),  # evaluation of methods on labelled modules
    ("clang_llm.demo",),
    ("clang_llm.cli",),  # clang-llm-tool: one typer application
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    for n in (2, 1):
        if ".".join(parts[:n]) in LAYER:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)")


def _imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return [m for m in out if m == "clang_llm" or m.startswith("clang_llm.")]


def test_no_upward_or_sideways_imports() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        me = _unit(module)
        for imported in _imports(path):
            other = _unit(imported)
            if other == me or LAYER[other] < LAYER[me] or LAYER[me] == LAYER[other] == 0:
                continue
            bad.append(f"{module} (layer {LAYER[me]}) imports {imported} (layer {LAYER[other]})")
    assert not bad, "\n".join(bad)
