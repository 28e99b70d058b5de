"""No import cycle between the package's files (imports anywhere in a file count, at module level
or inside a function; only `if TYPE_CHECKING:` blocks, which never run, are left out), and the
training room stands on its own: `train/` imports nothing from `driver/` or the optimizer loop."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clang_llm"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports (a `from pkg import name` naming a submodule
    counts as that submodule)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for n in node.orelse:
                visit(n)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("clang_llm"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("clang_llm"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in modules}


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    mods = set(files)
    return {m: _imports(p, mods) - {m} for m, p in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle_between_files() -> None:
    graph = _graph()
    # A package's __init__ re-exporting its own submodules is not a cycle of files that matter.
    for m in graph:
        graph[m] = {d for d in graph[m] if not (m.startswith(d + ".") and d in graph)}
    assert _cycles(graph) == []


def test_training_does_not_stand_on_the_compiler() -> None:
    graph = _graph()
    bad = sorted((m, d) for m, deps in graph.items() if m.startswith("clang_llm.train")
                 for d in deps if d.startswith("clang_llm.driver") or d == "clang_llm.optimizer.loop")
    assert bad == []
