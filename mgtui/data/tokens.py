"""Dataset lengths in tokens: one summary for the form (before any model loads) and the engine
(after it tokenizes). The form counts with the base model's own tokenizer.json and chat template,
from a local directory or the HF cache, through the `tokenizers` library (no torch), the way the
engine will; without them it estimates 4 characters per token and says so."""

from __future__ import annotations

import json
import math
import os
import sys
from bisect import bisect_right
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable

from ..demo_model import BUILTIN_MODEL, builtin_model_dir
from ..hub_cache import hf_cache_file
from .scan import (
    CHAT_FORMATS,
    DatasetError,
    alpaca_parts,
    iter_rows,
    plain_render,
    prompt_completion_parts,
    resolve_source,
    scan,
    to_messages,
)
from .templates import pick_template, refused, render_chat, saved_template, special_tokens

CHARS_PER_TOKEN = 4.0


def length_stats(lengths: list[int], max_len: int) -> dict[str, Any]:
    """min/mean/p95/max of the lengths, and how many exceed max_len (they will be truncated)."""
    ordered = sorted(lengths)
    return {
        "tokens": {
            "min": ordered[0],
            "mean": round(sum(ordered) / len(ordered), 1),
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "max": ordered[-1],
        },
        "max_seq_length": max_len,
        "truncated": len(ordered) - bisect_right(ordered, max_len),
    }


def find_tokenizer(base_model: str) -> Path | None:
    local = builtin_model_dir() if base_model == BUILTIN_MODEL else Path(base_model).expanduser()
    if local.is_dir():
        path = local / "tokenizer.json"
        return path if path.is_file() else None
    return hf_cache_file(base_model, "tokenizer.json") if base_model.count("/") == 1 else None


@dataclass(frozen=True)
class TokenCounter:
    how: str  # shown next to the figures
    count: Callable[[list[str]], list[int]]
    render: Callable[[str, dict[str, Any], str], str | None] | None = None  # None: rows as the scan shows them
    problem: str | None = None  # what the engine will refuse (a chat format without a template)

    @property
    def exact(self) -> bool:
        """Counted by the model's own tokenizer, rows rendered as the engine renders them."""
        return self.render is not None


def _estimate(problem: str | None = None) -> TokenCounter:
    return TokenCounter(
        f"estimated: {CHARS_PER_TOKEN:g} chars per token",
        lambda texts: [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts],
        problem=problem,
    )


def counter_for(base_model: str, fmt: str = "text", chat_template: str = "") -> TokenCounter:
    """Counts rows of format `fmt` as the engine will tokenize them: chat rows through the chat
    template, text and alpaca rows with the end-of-sequence token appended and special tokens added."""
    path = find_tokenizer(base_model)
    if path is None:
        return _estimate()
    try:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path))
    except Exception:  # a tokenizer.json this version of tokenizers can't read: estimate instead
        return _estimate()
    specials = special_tokens(path.parent)
    eos = specials.get("eos_token", "")
    if fmt in CHAT_FORMATS:
        try:
            template = pick_template(chat_template, saved_template(path.parent), base_model)
        except DatasetError as e:
            return _estimate(str(e))

        def render(fmt: str, row: dict[str, Any], where: str) -> str | None:
            msgs = to_messages(fmt, row, where)
            if msgs is None:
                return None
            try:
                return render_chat(template, msgs, specials)
            except Exception as e:  # the template's own raise_exception, or any error inside it
                raise refused(where, e) from None
    elif fmt in ("alpaca", "prompt_completion"):

        def render(fmt: str, row: dict[str, Any], where: str) -> str | None:
            parts = alpaca_parts(row, where) if fmt == "alpaca" else prompt_completion_parts(row, where)
            return None if parts is None else parts[0] + parts[1] + eos
    else:

        def render(fmt: str, row: dict[str, Any], where: str) -> str | None:
            text = plain_render(fmt, row, where)
            return None if text is None else text + eos

    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # fast: no offsets (tokenizers >= 0.21)
    special = fmt not in CHAT_FORMATS  # a chat template writes its own special tokens
    return TokenCounter(
        "counted by the model's tokenizer",
        lambda texts: [len(e) for e in encode(texts, add_special_tokens=special)],
        render,
    )


def check_chat_rows(
    source: str, fmt: str, base_model: str, chat_template: str, rows: int = 1000, columns: str = ""
) -> None:
    """What the engine would refuse about chat data, found before anything starts: a tokenizer with
    no template, or a row the template rejects (on the first `rows`: a rejection is usually every
    row's). Needs the tokenizer on this machine; without it, the engine finds out. Raises DatasetError."""
    if fmt not in CHAT_FORMATS:
        return
    counter = counter_for(base_model, fmt, chat_template)
    path = resolve_source(source)
    if counter.problem:
        raise DatasetError(counter.problem)
    if counter.render is None or path is None:
        return
    for where, row in islice(iter_rows(path, columns), rows):
        counter.render(fmt, row, where)


def count_dataset(
    source: str,
    fmt: str,
    limit: int,
    base_model: str,
    chat_template: str,
    progress: Callable[[float], None] = lambda done: None,
    columns: str = "",
) -> tuple[list[int], str, str | None]:
    """(tokens per usable row, how they were counted, what the engine would refuse) for the first
    `limit` rows of a dataset whose format is known. Raises DatasetError for a row the template refuses."""
    counter = counter_for(base_model, fmt, chat_template)
    rows = 0

    def count(texts: list[str]) -> list[int]:
        nonlocal rows
        progress(rows / limit)
        rows += len(texts)
        return counter.count(texts)

    tokens = scan(source, fmt, limit=limit, count=count, render=counter.render, columns=columns).tokens
    return tokens, counter.how, counter.problem


def count_command(**args: Any) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run count_dataset(**args) in a process of its own
    (`main` below), tokenizing on one thread so that a core stays free for the app."""
    return [sys.executable, "-m", "mgtui.data.tokens", json.dumps(args)], {**os.environ, "RAYON_NUM_THREADS": "1"}


def main(argv: list[str]) -> None:
    """`python -m mgtui.data.tokens '<json args>'`: count_dataset in a process of its own, so the app's
    interpreter stays free for keys. Writes JSON lines: {"progress": f} while it works, then
    {"tokens": [...], "how": ..., "problem": ...} or {"refused": message}."""

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    args = json.loads(argv[0])
    if hasattr(os, "nice"):
        os.nice(10)  # background work: the app that answers keys comes first for the CPU
    try:
        tokens, how, problem = count_dataset(**args, progress=lambda done: say({"progress": done}))
    except DatasetError as e:
        say({"refused": str(e)})
    else:
        say({"tokens": tokens, "how": how, "problem": problem})


if __name__ == "__main__":
    main(sys.argv[1:])
