"""Pick the optimizer for a TU from the settings: the model loop, or -Oz when there is no model."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from clang_llm.config import Settings
from clang_llm.optimizer.base import Optimizer, OzOnly

log = logging.getLogger("clang_llm")
DEFAULT_MODEL_NAME = "default"


def default_model_dir() -> Path:
    """The model shipped inside the package (clang_llm/models/default)."""
    return Path(str(resources.files("clang_llm.models").joinpath(DEFAULT_MODEL_NAME)))


def make_optimizer(settings: Settings) -> Optimizer:
    if settings.off:
        return OzOnly("llm-off")
    from clang_llm.model import ModelError, load_model
    from clang_llm.optimizer.loop import ModelLoop

    model_dir = Path(settings.model) if settings.model else default_model_dir()
    try:
        model = load_model(model_dir, intra_threads=settings.jobs)
    except ModelError as e:
        log.warning("no model, using -Oz: %s", e)
        return OzOnly("model-unavailable")
    return ModelLoop(model, settings)
