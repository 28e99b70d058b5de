"""The pool's loss table: what every stored list did on every swept train module.

Why: ranking by likelihood alone tries the lists the model believes are often among the best,
and its top choices can win big on some modules and do nothing on the rest, or repeat one
another. With each list's measured size on the train modules beside the model, the loop can
pick the list of smallest expected size and then the lists that cover what it misses
(`clang_llm.model.risk`). The table comes from the train split's pool sweep, so it is data of
the pool, like the coreset, and ships in the model directory (`pool-losses.npy`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from clang_llm.model.risk import LOSS_SCALE, LOSSES_FILE
from clang_llm.train.pool_sweep import PoolSizes

if TYPE_CHECKING:
    import numpy as np

    from clang_llm.model.card import ModelCard


def _log_ratios(rec: PoolSizes, n: int) -> list[float] | None:
    """log(.text / -Oz .text) of each list on one module; a failed list is -Oz (0), as the
    driver ships -Oz when a list fails; None when the module has no usable sweep."""
    if rec.status != "ok" or rec.oz is None or rec.oz.text <= 0 or len(rec.sizes) != n:
        return None
    oz = rec.oz.text
    return [0.0 if s is None else math.log(max(1, s.text) / oz) for s in rec.sizes]


def loss_table(sweep: Iterable[PoolSizes], n: int) -> np.ndarray:
    """(modules, lists) int16 log ratios in units of `LOSS_SCALE`, clipped to the int16 range,
    in the sweep's order; modules without a usable sweep are left out."""
    import numpy as np

    rows = [r for r in (_log_ratios(rec, n) for rec in sweep) if r is not None]
    if not rows:
        raise ValueError("the sweep has no usable module")
    scaled = np.rint(np.asarray(rows, dtype=np.float64) / LOSS_SCALE)
    return np.clip(scaled, -32767, 32767).astype(np.int16)


def attach_risk(model_dir: Path, sweep_paths: list[Path], temperature: float) -> ModelCard:
    """Write the loss table of `sweep_paths` (the train split's pool sweeps, in order; a module
    in several counts once, its last record) into the model directory and the ranking
    temperature into its card; the model's pool must be the sweeps'. Temperature 0 removes the
    table: the loop ranks by likelihood again."""
    import numpy as np

    from clang_llm.atomic import atomic_path
    from clang_llm.model.card import read_card, write_card
    from clang_llm.train.pool_sweep import read_sweeps

    card = read_card(model_dir)
    if not card.pool:
        raise ValueError(f"{model_dir}: not a cllm-v2 model (no pool)")
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError("the temperature must be >= 0 (0: rank by likelihood only)")
    target = Path(model_dir) / LOSSES_FILE
    training = {k: v for k, v in card.training.items() if k != "risk"}
    if temperature == 0:
        target.unlink(missing_ok=True)
    else:
        table = loss_table(read_sweeps(sweep_paths, card.pool).values(), len(card.pool))
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, table, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        training["risk"] = {"sweep": ", ".join(Path(p).name for p in sweep_paths), "modules": int(table.shape[0]),
                            "temperature": temperature}
    card.risk_temperature = temperature
    card.training = training
    write_card(model_dir, card)
    return card
