"""The model card (``model-card.json``): what a model directory was built for and how well it did.

The driver refuses a model made for another LLVM major or prompt format (its pass names and IR
would not match); a different pass-vocabulary version is only noted, because answers are
checked against the current vocabulary anyway.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clang_llm.atomic import atomic_write_text
from clang_llm.errors import ModelError, first_line

CARD_FILE = "model-card.json"
CARD_VERSION = 1


@dataclass
class ModelCard:
    llvm_major: int
    pass_vocabulary_version: str
    prompt_format: str
    context_length: int
    prompt_budget: int = 0  # tokens of IR in round 1's prompt (what training used); 0: from context
    # cllm-v2: the stored pass lists the model ranks; list i is the answer's choice token <|Li|>.
    pool: list[str] = field(default_factory=list)
    # cllm-v2 with a pool-losses.npy: the temperature of the minimum-risk ranking
    # (clang_llm.model.risk); 0: the pool is ranked by likelihood alone.
    risk_temperature: float = 0.0
    training: dict[str, Any] = field(default_factory=dict)  # data summary, steps, dims, loss
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluation results
    name: str = ""
    card_version: int = CARD_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object, where: str = CARD_FILE) -> ModelCard:
        """Build a card from parsed JSON, raising `ModelError` that names the bad field."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: expected a JSON object")
        spec = {
            "llvm_major": int,
            "pass_vocabulary_version": str,
            "prompt_format": str,
            "context_length": int,
        }
        for key, typ in spec.items():
            value = data.get(key)
            if not isinstance(value, typ) or isinstance(value, bool):
                raise ModelError(f"{where}: field '{key}' missing or not {typ.__name__}")
        if data["context_length"] <= 0:
            raise ModelError(f"{where}: context_length must be positive")
        pool = data.get("pool", [])
        if not isinstance(pool, list) or not all(isinstance(p, str) and p.strip() for p in pool):
            raise ModelError(f"{where}: field 'pool' must be a list of pass lists")
        temp = data.get("risk_temperature", 0.0)
        if not isinstance(temp, (int, float)) or isinstance(temp, bool) or not math.isfinite(temp) or temp < 0:
            raise ModelError(f"{where}: field 'risk_temperature' must be a number >= 0")
        for key in ("training", "metrics"):
            if not isinstance(data.get(key, {}), dict):
                raise ModelError(f"{where}: field '{key}' must be an object")
        return cls(
            llvm_major=data["llvm_major"],
            pass_vocabulary_version=data["pass_vocabulary_version"],
            prompt_format=data["prompt_format"],
            context_length=data["context_length"],
            prompt_budget=int(data.get("prompt_budget", 0) or 0),
            pool=list(pool),
            risk_temperature=float(temp),
            training=dict(data.get("training", {})),
            metrics=dict(data.get("metrics", {})),
            name=str(data.get("name", "")),
            card_version=int(data.get("card_version", CARD_VERSION)),
        )


def read_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / CARD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{model_dir}: no {CARD_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ({first_line(exc)})") from None
    return ModelCard.from_json(data, str(path))


def write_card(model_dir: str | Path, card: ModelCard) -> Path:
    """Write the card atomically (a reader never sees half a file)."""
    path = Path(model_dir) / CARD_FILE
    atomic_write_text(path, json.dumps(card.to_json(), indent=2, sort_keys=True) + "\n")
    return path
