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
from .encode import Coder, Encoded, Rendered, encode_rows, render_row, tokenizers_coder
from .scan import CHAT_FORMATS, COMPLETION_ONLY, SFT_FORMATS, DatasetError, iter_rows, resolve_source, scan
from .templates import saved_template, special_tokens, template_for

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
    coder: Coder | None = None  # the model's tokenizer and template: rows encoded as the engine encodes them

    @property
    def exact(self) -> bool:
        """Counted by the model's own tokenizer, rows rendered as the engine renders them."""
        return self.coder is not None


def _estimate(problem: str | None = None) -> TokenCounter:
    return TokenCounter(
        f"estimated: {CHARS_PER_TOKEN:g} chars per token",
        lambda texts: [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts],
        problem=problem,
    )


def load_tokenizer(base_model: str) -> tuple[Any, Path] | None:
    """The base model's tokenizer through the `tokenizers` library (no torch), and its directory;
    None when this machine doesn't have it (or can't read it)."""
    path = find_tokenizer(base_model)
    if path is None:
        return None
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path)), path.parent
    except Exception:  # a tokenizer.json this version of tokenizers can't read
        return None


def coder_for(base_model: str, fmt: str, chat_template: str) -> Coder | None:
    """The Coder for rows of `fmt`, or None without the tokenizer. Raises DatasetError for chat
    data with no template."""
    found = load_tokenizer(base_model)
    if found is None:
        return None
    tok, directory = found
    template = template_for(fmt, chat_template, saved_template(directory), base_model)
    return tokenizers_coder(tok, template, special_tokens(directory))


def counter_for(base_model: str, fmt: str = "text", chat_template: str = "") -> TokenCounter:
    """Counts rows of format `fmt` as the engine will tokenize them (encode.py: chat rows through
    the chat template, text and alpaca rows with the end-of-sequence token and special tokens)."""
    try:
        coder = coder_for(base_model, fmt, chat_template)
    except DatasetError as e:
        return _estimate(str(e))
    if coder is None:
        return _estimate()
    exact = coder

    def render(fmt: str, row: dict[str, Any], where: str) -> str | None:
        rendered = render_row(fmt, row, where, exact)
        return None if rendered is None else rendered.text

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids, _ in exact.encode(texts, fmt not in CHAT_FORMATS)]

    return TokenCounter("counted by the model's tokenizer", count, render, coder=coder)


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
) -> tuple[list[int], str, str | None, list[int]]:
    """(tokens per usable row, how they were counted, what the engine would refuse, and each usable
    row's tokens before its first trained one, when counted exactly) for the first `limit` rows of a
    dataset whose format is known. Raises DatasetError for a row the template refuses."""
    counter = counter_for(base_model, fmt, chat_template)
    if counter.coder is None:
        tokens = scan(source, fmt, limit=limit, count=counter.count, columns=columns).tokens
        return tokens, counter.how, counter.problem, []
    encoded = encode_file(source, fmt, counter.coder, limit, columns, progress)
    return [len(e.ids) for e in encoded], counter.how, None, [e.prompt_tokens for e in encoded]


def encode_file(
    source: str,
    fmt: str,
    coder: Coder,
    limit: int | None = None,
    columns: str = "",
    progress: Callable[[float], None] = lambda done: None,
) -> list[Encoded]:
    """Every usable row of a local dataset (the first `limit`), checked and encoded as the engine does."""
    path = resolve_source(source)
    if path is None:
        return []
    scan(source, fmt, limit=limit, columns=columns)  # every row checked first, each error with its line
    out: list[Encoded] = []
    batch: list[Rendered] = []
    for n, (where, row) in enumerate(islice(iter_rows(path, columns), limit), 1):
        rendered = render_row(fmt, row, where, coder)
        if rendered is not None:
            batch.append(rendered)
        if len(batch) == 512:
            progress(n / (limit or n))
            out += encode_rows(batch, coder)
            batch.clear()
    return out + encode_rows(batch, coder)


def masked(fmt: str, train_on_responses_only: bool) -> bool:
    """Whether the loss leaves a row's prompt out (and so a long prompt can leave nothing to learn)."""
    return fmt in COMPLETION_ONLY or fmt not in SFT_FORMATS or (train_on_responses_only and fmt != "text")


def unlearnable(prompts: list[int], max_seq_length: int) -> list[int]:
    """The prompt lengths of the rows in which truncation at max_seq_length leaves no trained token."""
    return [n for n in prompts if n >= max_seq_length]


def nothing_learned(dataset: str, max_seq_length: int, shortest_prompt: int) -> DatasetError:
    """Every row's response starts after max_seq_length: the run would train on no token."""
    return DatasetError(
        f"{dataset}: in every row the response starts after max_seq_length {max_seq_length}, "
        f"so nothing would be learned: --max-seq-length {shortest_prompt + 64} or more keeps "
        f"the shortest prompt ({shortest_prompt} tokens) with part of its response"
    )


def skipped_warning(skipped: int, rows: int, max_seq_length: int) -> str:
    return (
        f"{skipped} of {rows} rows skipped: their response starts after max_seq_length "
        f"{max_seq_length}, so truncation leaves nothing to learn"
    )


def check_rows(
    source: str, fmt: str, base_model: str, chat_template: str, max_seq_length: int, responses_only: bool, columns: str
) -> str | None:
    """What `model-garden train` checks before anything loads: rows the chat template refuses, and
    (when the prompt is masked and this machine has the tokenizer) rows that truncation leaves with
    nothing to learn. Raises DatasetError when the engine would stop; returns a warning for some rows."""
    if not masked(fmt, responses_only) or resolve_source(source) is None:
        check_chat_rows(source, fmt, base_model, chat_template, columns=columns)
        return None
    # Every row rendered and counted once: a row the template refuses raises here, as in check_chat_rows.
    _, _, problem, prompts = count_dataset(source, fmt, 10**9, base_model, chat_template, columns=columns)
    if problem:
        raise DatasetError(problem)
    lost = unlearnable(prompts, max_seq_length)
    if lost and len(lost) == len(prompts):
        raise nothing_learned(source, max_seq_length, min(lost))
    return skipped_warning(len(lost), len(prompts), max_seq_length) if lost else None


def count_command(**args: Any) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run count_dataset(**args) in a process of its own
    (`main` below), tokenizing on one thread so that a core stays free for the app."""
    return [sys.executable, "-m", "mgtui.data.tokens", json.dumps(args)], {**os.environ, "RAYON_NUM_THREADS": "1"}


def main(argv: list[str]) -> None:
    """`python -m mgtui.data.tokens '<json args>'`: count_dataset in a process of its own, so the app's
    interpreter stays free for keys. Writes JSON lines: {"progress": f} while it works, then
    {"tokens": [...], "how": ..., "problem": ..., "prompts": [...]} or {"refused": message}."""

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    args = json.loads(argv[0])
    if hasattr(os, "nice"):
        os.nice(10)  # background work: the app that answers keys comes first for the CPU
    try:
        tokens, how, problem, prompts = count_dataset(**args, progress=lambda done: say({"progress": done}))
    except DatasetError as e:
        say({"refused": str(e)})
    else:
        say({"tokens": tokens, "how": how, "problem": problem, "prompts": prompts})


if __name__ == "__main__":
    main(sys.argv[1:])
