"""Labelling on a Ray cluster (`--ray ADDRESS`, the optional extra `distributed`).

The same work items and the same records as the local process pool: each module is one Ray task
running the worker function, results come back in completion order and go through the same
`handle` (appended to the same results file, so resumption is unchanged). A task that dies (a
worker killed, an LLVM abort) is recorded as an error, as the process pool does. The workers
need this package and LLVM 22 installed where they run; on one machine that is this venv.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clang_llm.records import LabelRecord
    from clang_llm.train.autotune import ModuleTask
    from clang_llm.train.configs import AutotuneConfig

MISSING_EXTRA = "Ray is not installed: pip install 'clang-llm[distributed]'"


def run_on_ray(pending: list[ModuleTask], cfg: AutotuneConfig, address: str, broadcast: Callable[[], list[str]],
               handle: Callable[[LabelRecord], None], worker: Callable[..., LabelRecord],
               crash_record: Callable[[ModuleTask, AutotuneConfig, str], LabelRecord]) -> None:
    """Run `worker(task, cfg, broadcast())` for every task on the cluster at `address`
    ("local" starts a private one on this machine), at most two tasks per cluster CPU in flight."""
    if not pending:
        return
    try:
        import ray
    except ImportError as e:
        raise RuntimeError(MISSING_EXTRA) from e
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, log_to_driver=False,
                 include_dashboard=False, configure_logging=False)
    try:
        remote = ray.remote(max_retries=0)(worker)
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        queue = list(reversed(pending))
        inflight: dict[Any, Any] = {}
        while queue or inflight:
            while queue and len(inflight) < limit:
                t = queue.pop()
                inflight[remote.remote(t, cfg, broadcast())] = t
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                t = inflight.pop(ref)
                try:
                    handle(ray.get(ref))
                except ray.exceptions.RayError as e:
                    handle(crash_record(t, cfg, repr(e)))
    finally:
        if started:
            ray.shutdown()
