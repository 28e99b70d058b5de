"""The control case at scale: with -Oz as its only candidate, the wrapper's object must be byte for
byte the object `clang-22 <same flags> -Oz -c` ships.

For a recorded module (bitcode emitted with `-Oz -Xclang -disable-llvm-passes`, plus the TU's
codegen flags) the reference is clang's own full -Oz compile of that bitcode — the same frontend
output, clang's pipeline and backend in one process; the wrapper's side is `TUBuilder`'s -Oz
baseline (opt with clang's pipeline string and target options, then codegen by clang). Any
difference means every size comparison against "-Oz" is against the wrong reference.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from clang_llm.build.tubuilder import TUBuilder
from clang_llm.errors import ToolTimeout
from clang_llm.passes import OZ
from clang_llm.progress import make_progress
from clang_llm.toolchain import Toolchain, run
from clang_llm.train.autotune import ModuleTask


@dataclass(frozen=True)
class ControlResult:
    id: str
    package: str
    lang: str
    status: str  # identical | different | error
    detail: str = ""


def check_module(task: ModuleTask, timeout: float = 120.0) -> ControlResult:
    tc = Toolchain.discover()
    compiler = tc.compiler(task.lang == "c++")
    with tempfile.TemporaryDirectory(prefix="clang-llm-control-") as tmp:
        work = Path(tmp)
        ref = work / "ref.o"
        builder = TUBuilder(compiler, tc.opt, task.codegen_flags, task.lang, Path(task.bc), work, timeout)
        try:
            res = run(builder.clang_oz_command(ref), timeout=timeout)
        except ToolTimeout as e:
            return ControlResult(task.id, task.package, task.lang, "error", f"reference: {e}")
        if res.returncode != 0:
            return ControlResult(task.id, task.package, task.lang, "error",
                                 "reference: " + res.stderr.decode(errors="replace")[-300:])
        f = builder.evaluate(OZ, verify_each=False)
        if not f.valid or f.object_path is None:
            return ControlResult(task.id, task.package, task.lang, "error", f"wrapper: {f.error_kind}: {f.error}")
        same = f.object_path.read_bytes() == ref.read_bytes()
        detail = "" if same else f"wrapper {f.sizes}, clang {ref.stat().st_size} B file"
        return ControlResult(task.id, task.package, task.lang, "identical" if same else "different", detail)


def sweep(tasks: Iterable[ModuleTask], jobs: int = 2, out: Path | None = None) -> list[ControlResult]:
    """Check every task (in parallel); optionally write one JSON line per module to `out`."""
    todo = list(tasks)
    results: list[ControlResult] = []
    bar, _ = make_progress("control case")
    with bar, ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        task_id = bar.add_task("control", total=len(todo), info="")
        for r in pool.map(check_module, todo, chunksize=4):
            results.append(r)
            bad = sum(x.status != "identical" for x in results)
            bar.update(task_id, advance=1, info=f"{bad} not identical")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(asdict(r)) + "\n" for r in sorted(results, key=lambda r: r.id)))
    return results


def summary(results: list[ControlResult]) -> str:
    by: dict[tuple[str, str], int] = {}
    for r in results:
        by[(r.lang, r.status)] = by.get((r.lang, r.status), 0) + 1
    parts = [f"{lang} {status}: {n}" for (lang, status), n in sorted(by.items())]
    return f"{len(results)} modules; " + ", ".join(parts)
