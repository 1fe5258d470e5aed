"""The prompts for the quick look at quality (--eval-prompts): one prompt per line, or JSON lines
with "prompt" or "messages". Read before the run starts, with errors naming the line. Pure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .scan import DatasetError

MAX_PROMPTS = 50  # answered twice each after training: a quick look, not an evaluation


def read_prompts(path: str) -> list[list[dict[str, Any]]]:
    """Each prompt as the messages of a conversation that the model answers."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"--eval-prompts {p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    out: list[list[dict[str, Any]]] = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{p}: line {n}: not valid JSON ({e.msg})") from None
            if isinstance(row.get("messages"), list) and row["messages"]:
                msgs = [m for m in row["messages"] if m.get("role") != "assistant" or m is not row["messages"][-1]]
                out.append(msgs)
            elif isinstance(row.get("prompt"), str) and row["prompt"].strip():
                out.append([{"role": "user", "content": row["prompt"]}])
            else:
                raise DatasetError(f'{p}: line {n}: expected "prompt" (text) or "messages" (a list)')
        else:
            out.append([{"role": "user", "content": text}])
    if not out:
        raise DatasetError(f"--eval-prompts {p}: no prompts in it")
    if len(out) > MAX_PROMPTS:
        raise DatasetError(f"--eval-prompts {p}: {len(out)} prompts; at most {MAX_PROMPTS} (each is answered twice)")
    return out
