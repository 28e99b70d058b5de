"""What decides the objects the wrapper makes, as text: for compiler caches in front of it.

ccache and sccache key an object by the compiler's identity (by default its path, size and mtime)
and the command line. Behind `clang-llm` that misses what matters most: the model, the pass
vocabulary, the LLVM tools and the settings that come from the environment or a config file.
`clang-llm --llm-identity` prints them, so `compiler_check = %compiler% --llm-identity` makes a
cache miss exactly when one of them changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from clang_llm import __version__
from clang_llm.config import Settings, find_project_file, user_config_path
from clang_llm.passes import Vocabulary
from clang_llm.toolchain import Toolchain


def _file_digest(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "none"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def model_identity(settings: Settings) -> str:
    """The model's content id, or why there is none (then every TU gets -Oz)."""
    if settings.off:
        return "off"
    from clang_llm.errors import ModelError
    from clang_llm.model.ct2 import model_content_id
    from clang_llm.optimizer.factory import default_model_dir

    model_dir = Path(settings.model) if settings.model else default_model_dir()
    try:
        return model_content_id(model_dir)
    except (OSError, ModelError) as e:
        return f"unavailable ({type(e).__name__})"


def wrapper_identity(settings: Settings, toolchain: Toolchain, cwd: Path) -> str:
    """One line per input of a decision that the command line does not show."""
    lines = [
        f"clang-llm {__version__}",
        f"toolchain {toolchain.identity}",
        f"vocabulary {Vocabulary.default().version}",
        f"model {model_identity(settings)}",
        f"settings {json.dumps(settings.decision_key(), sort_keys=True)}",
        # Per-file sections of a project file can change one TU's settings: hash the whole file.
        f"project-file {_file_digest(find_project_file(cwd))}",
        f"user-file {_file_digest(user_config_path())}",
    ]
    return "\n".join(lines) + "\n"
