"""Dataset lengths in tokens: one summary for the form (before any model loads) and the engine
(after it tokenizes). The form counts with the base model's own tokenizer.json, from a local
directory or the HF cache, through the `tokenizers` library (no torch); without one it estimates
4 characters per token and says so."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..estimate.archs import hf_cache_file

CHARS_PER_TOKEN = 4.0


def length_stats(lengths: list[int], max_len: int) -> dict[str, Any]:
    """min/mean/p95/max of the lengths, and how many exceed max_len (they will be truncated)."""
    ordered = sorted(lengths)
    return {
        "tokens": {"min": ordered[0], "mean": round(sum(ordered) / len(ordered), 1),
                   "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1]},
        "max_seq_length": max_len,
        "truncated": len(ordered) - bisect_right(ordered, max_len),
    }


def find_tokenizer(base_model: str) -> Path | None:
    local = Path(base_model).expanduser()
    if local.is_dir():
        path = local / "tokenizer.json"
        return path if path.is_file() else None
    return hf_cache_file(base_model, "tokenizer.json") if base_model.count("/") == 1 else None


@dataclass(frozen=True)
class TokenCounter:
    how: str  # shown next to the figures
    exact: bool
    count: Callable[[list[str]], list[int]]


def counter_for(base_model: str) -> TokenCounter:
    path = find_tokenizer(base_model)
    if path is not None:
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path))
        except Exception:  # a tokenizer.json this version of tokenizers can't read: estimate instead
            pass
        else:
            encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # fast: no offsets (tokenizers >= 0.21)
            return TokenCounter("counted by the model's tokenizer", True, lambda texts: [len(e) for e in encode(texts)])
    return TokenCounter(f"estimated: {CHARS_PER_TOKEN:g} chars per token", False,
                        lambda texts: [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts])
