"""Model backends behind one small interface; the default is a local CTranslate2 model.

Importing this package is cheap and never imports torch or transformers (those are only for
training, in `clang_llm.train`).
"""

from clang_llm.errors import ModelError
from clang_llm.model.card import CARD_FILE, ModelCard, read_card, write_card
from clang_llm.model.ct2 import MODEL_FILES, Model, load_model, model_content_id

__all__ = [
    "CARD_FILE",
    "MODEL_FILES",
    "Model",
    "ModelCard",
    "ModelError",
    "load_model",
    "model_content_id",
    "read_card",
    "write_card",
]
