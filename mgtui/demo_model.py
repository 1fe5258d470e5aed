"""The demo's tiny model: its name in the settings, its config, and where the engine builds it once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .user_cache import user_cache_dir

BUILTIN_MODEL = "builtin:tiny-llama"

TINY_LLAMA_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 172,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "tie_word_embeddings": True,
    "max_position_embeddings": 512,
}


def builtin_model_dir() -> Path:
    """Where the engine builds the demo's model and tokenizer, once."""
    return user_cache_dir() / "tiny-llama"
