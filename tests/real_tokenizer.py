"""A tiny Llama on a real tokenizer, for the tests that need one (the GGUF export's: llama.cpp's
converter refuses the demo's homemade tokenizer). The tokenizer is Qwen2's (151 936 tokens, its
ChatML template), rebuilt by transformers from llama.cpp's vocab-only models/ggml-vocab-qwen2.gguf,
which the pinned llama-cpp-python sdist ships (mgtui/train/llama_cpp_source.py fetches its part).
No model hub: PyPI once, then offline. Both are kept once per machine under the user's cache,
read before conftest gives each test a cache of its own: building the tokenizer takes minutes."""

from __future__ import annotations

import os
from pathlib import Path

from mgtui.demo_model import TINY_LLAMA_CONFIG

MACHINE_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mgtui"
QWEN2_VOCAB = "ggml-vocab-qwen2.gguf"
END_OF_TURN = "<|im_end|>"  # where the ChatML template ends each turn: the stop token trained


def llama_cpp_dir() -> Path:
    from mgtui.train import llama_cpp_source

    return llama_cpp_source.fetch(MACHINE_CACHE)


def qwen2_tiny_llama() -> Path:
    """hidden 64, 2 layers, tied embeddings: 9.8 M parameters, 9.7 M of them the embeddings."""
    from mgtui.train.tiny import write_tiny_llama

    target = MACHINE_CACHE / "test-models" / "tiny-llama-qwen2-vocab"
    if (target / "config.json").exists():
        return target
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(llama_cpp_dir() / "models"), gguf_file=QWEN2_VOCAB)
    tokenizer.eos_token = END_OF_TURN  # as Qwen2-Instruct's: answers end where the template ends a turn
    config = TINY_LLAMA_CONFIG | {"vocab_size": len(tokenizer)}
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_tiny_llama(tokenizer, target, config, seed=0, what="tiny random Llama on Qwen2's tokenizer")
