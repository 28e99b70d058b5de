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
    """The model shipped inside the package (clang_llm/weights/default)."""
    return Path(str(resources.files("clang_llm.weights").joinpath(DEFAULT_MODEL_NAME)))


def make_optimizer(settings: Settings) -> Optimizer:
    if settings.off:
        return OzOnly("llm-off")
    if settings.backend:
        return _remote(settings)
    from clang_llm.errors import ModelError
    from clang_llm.model import load_model
    from clang_llm.optimizer.loop import ModelLoop

    model_dir = Path(settings.model) if settings.model else default_model_dir()
    try:
        model = load_model(model_dir, intra_threads=settings.jobs)
    except ModelError as e:
        log.warning("no model, using -Oz: %s", e)
        return OzOnly("model-unavailable")
    return ModelLoop(model, settings)


def known_model_id(settings: Settings) -> str | None:
    """The id `make_optimizer(settings)`'s model will have, found without loading it (a content
    hash of the local model directory), so a stored object can ship before any model loads;
    None when only loading (or asking a server) tells."""
    if settings.off or settings.backend:
        return None
    from clang_llm.model.ct2 import model_content_id

    try:
        return model_content_id(Path(settings.model) if settings.model else default_model_dir())
    except OSError:
        return None


def _remote(settings: Settings) -> Optimizer:
    """The loop over a model server; -Oz (counted by its reason) when the server cannot serve."""
    from clang_llm.errors import BackendError
    from clang_llm.model.http import BackendConfig, connect
    from clang_llm.optimizer.formats import get_format
    from clang_llm.optimizer.loop import ModelLoop

    cfg = BackendConfig(url=settings.backend, timeout=settings.backend_timeout,
                        concurrency=settings.backend_concurrency, key_env=settings.backend_key_env,
                        model=settings.backend_model, prompt_format=settings.prompt_format,
                        state_dir=settings.state_dir)
    try:
        model = connect(cfg)
        fmt = get_format(model.card.prompt_format)
    except BackendError as e:
        log.warning("model server %s unusable, using -Oz: %s", settings.public()["backend"], e)
        return OzOnly(e.reason)
    except ValueError as e:
        log.warning("model server %s: %s; using -Oz", settings.public()["backend"], e)
        return OzOnly("backend-unknown-format")
    model.answer_complete, model.stop = fmt.complete, fmt.stop
    return ModelLoop(model, settings, fmt)
