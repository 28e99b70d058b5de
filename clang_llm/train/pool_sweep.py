"""Sizes of every stored list of a model's pool on every training module: the ranking targets.

Why: a label keeps a module's top lists from its own search, so most stored lists have no
measured size on most modules, and a model cannot learn to rank lists nobody measured for its
TUs. The sweep runs each stored list once per module (incrementally on the cached base output,
memoized by the optimized IR, without -verify-each: the sizes teach a ranking and are never
shipped) and appends one record per module to a JSONL file, so a long sweep resumes where it
stopped and its file can be committed as it grows.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clang_llm import ir
from clang_llm.build.tubuilder import TUBuilder
from clang_llm.errors import PassListError
from clang_llm.passes import OZ, parse_pass_list
from clang_llm.progress import make_progress
from clang_llm.records import ObjectSize, open_text
from clang_llm.toolchain import Toolchain
from clang_llm.train.autotune import ModuleTask, _run_pool
from clang_llm.train.fasteval import IncrementalEvaluator

SCHEMA = 1


@dataclass(frozen=True)
class PoolSizes:
    """One module's sizes under each stored list (None: the list failed on it)."""

    id: str
    pool_sha: str  # which pool: sizes of another pool are not these lists' sizes
    oz: ObjectSize | None
    sizes: tuple[ObjectSize | None, ...] = ()
    status: str = "ok"  # ok | error
    error: str = ""
    cpu_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "id": self.id, "pool_sha": self.pool_sha, "status": self.status,
                "error": self.error, "cpu_s": self.cpu_s,
                "oz": None if self.oz is None else self.oz.to_json(),
                "sizes": [None if s is None else s.to_json() for s in self.sizes]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PoolSizes:
        return cls(id=d["id"], pool_sha=d["pool_sha"], status=d.get("status", "ok"), error=d.get("error", ""),
                   cpu_s=float(d.get("cpu_s", 0.0)),
                   oz=None if d.get("oz") is None else ObjectSize.from_json(d["oz"]),
                   sizes=tuple(None if s is None else ObjectSize.from_json(s) for s in d.get("sizes", [])))


def pool_sha(pool: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(pool).encode()).hexdigest()[:16]


def read_sweep(path: Path, pool: list[str]) -> dict[str, PoolSizes]:
    """The sweep's records for this pool, by module id (torn last lines and other pools skipped)."""
    out: dict[str, PoolSizes] = {}
    if not Path(path).exists():
        return out
    sha = pool_sha(pool)
    with open_text(Path(path)) as f:
        for line in f:
            try:
                rec = PoolSizes.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
            if rec.error == "worker died":  # lost with a broken pool (an older sweep's record): swept again
                continue
            if rec.pool_sha == sha and len(rec.sizes) in (0, len(pool)):
                out[rec.id] = rec
    return out


def read_sweeps(paths: list[Path], pool: list[str]) -> dict[str, PoolSizes]:
    """`read_sweep` of several files, in order: a module in more than one keeps its last record."""
    out: dict[str, PoolSizes] = {}
    for path in paths:
        out.update(read_sweep(path, pool))
    return out


def sweep_module(task: ModuleTask, pool: list[str], timeout: float = 20.0) -> PoolSizes:
    """Every stored list on one module; never raises."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime

    c0, sha = cpu(), pool_sha(pool)
    try:
        tc = Toolchain.discover()
        with tempfile.TemporaryDirectory(prefix="clang-llm-sweep-") as tmp:
            b = TUBuilder(tc.compiler(task.lang == "c++"), tc.opt, list(task.codegen_flags), task.lang or "c",
                          Path(task.bc), Path(tmp), timeout)
            b.count_before = ir.count_file(Path(task.bc))
            oz = b.evaluate(OZ, verify_each=False)
            if not oz.valid or oz.sizes is None:
                return PoolSizes(task.id, sha, None, status="error", error=f"oz-{oz.error_kind}")
            fast = IncrementalEvaluator(b)
            fast.seed(OZ, oz)
            oz_size = ObjectSize(oz.sizes.text, oz.sizes.alloc, oz.count_after)
            sizes: list[ObjectSize | None] = []
            for text in pool:
                if text == str(OZ):
                    sizes.append(oz_size)
                    continue
                try:
                    f = fast.evaluate(parse_pass_list(text))
                except PassListError:
                    f = None
                ok = f is not None and f.valid and f.sizes is not None
                sizes.append(ObjectSize(f.sizes.text, f.sizes.alloc, f.count_after) if ok else None)  # type: ignore[union-attr]
            return PoolSizes(task.id, sha, oz_size, tuple(sizes), cpu_s=round(cpu() - c0, 3))
    except Exception as e:  # one broken module must not stop the sweep
        return PoolSizes(task.id, sha, None, status="error", error=f"{type(e).__name__}: {e}"[:300])


def _worker(task: ModuleTask, pool: list[str], _: None) -> PoolSizes:
    return sweep_module(task, pool)


def _died(task: ModuleTask, pool: list[str], why: str) -> PoolSizes:
    return PoolSizes(task.id, pool_sha(pool), None, status="error", error=f"worker crash: {why}"[:300])


def sweep(tasks: Iterable[ModuleTask], pool: list[str], out_path: Path, jobs: int | None = None,
          progress: bool = True, on_record: Callable[[PoolSizes], None] | None = None) -> int:
    """Sweep the modules not yet in `out_path` (appending, one line per module); returns how
    many were swept now. Through autotune's process pool: a module that kills its worker is
    recorded as an error, the others in flight are rerun."""
    done = read_sweep(out_path, pool)
    pending = [t for t in tasks if t.id not in done]
    jobs = jobs or os.cpu_count() or 1
    out_path.parent.mkdir(parents=True, exist_ok=True)
    bar, _ = make_progress("pool sweep", progress)
    n, t0 = 0, time.monotonic()
    with bar, open(out_path, "a", encoding="utf-8") as f:
        tid = bar.add_task("pool sweep", total=len(pending), info=f"{len(done)} before")

        def handle(rec: PoolSizes) -> None:
            nonlocal n
            f.write(json.dumps(rec.to_json()) + "\n")
            f.flush()
            n += 1
            if on_record:
                on_record(rec)
            rate = n / max(1e-9, time.monotonic() - t0) * 60
            bar.update(tid, advance=1, info=f"{len(done)} before · {rate:.1f} modules/min")

        _run_pool(pending, pool, jobs, lambda: None, handle, _worker, _died)
    return n
