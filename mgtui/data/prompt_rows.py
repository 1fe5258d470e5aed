"""Prompt-only rows (TRL's prompt-only type, for GRPO): the prompt as text or as chat turns, and the
row's other columns, which reach the reward functions as they are (an `answer` to compare with, a
label). Pure: no tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .scan import DatasetError, _json_list, _turns, to_messages


@dataclass(frozen=True)
class PromptRow:
    prompt: str | list[dict[str, Any]]  # text, or chat turns (rendered with the generation prompt)
    extras: dict[str, Any]  # every other column, for the reward functions


def prompt_row(row: dict[str, Any], where: str) -> PromptRow | None:
    """The row's prompt and its other columns; None for an empty prompt (skipped, counted)."""
    value = row.get("prompt")
    extras = {k: v for k, v in row.items() if k != "prompt"}
    if isinstance(value, list) or _json_list(value):
        turns = to_messages("messages", {"messages": _turns(value, "prompt", where)}, where, reply=False)
        if turns is None:
            return None
        if turns[-1]["role"] == "assistant":
            raise DatasetError(
                f"{where}: the prompt ends with an assistant turn; GRPO samples the reply, so a prompt ends "
                "with the user's (or a tool's) turn"
            )
        return PromptRow(turns, extras)
    if value is not None and not isinstance(value, str):
        raise DatasetError(f"{where}: 'prompt' is neither text nor a list of turns")
    if not value or not value.strip():
        return None
    return PromptRow(value, extras)


def plain_prompt(row: dict[str, Any], where: str) -> str | None:
    """A readable rendering without a tokenizer, for previews and the quick scan."""
    p = prompt_row(row, where)
    if p is None:
        return None
    if isinstance(p.prompt, str):
        return p.prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in p.prompt)
