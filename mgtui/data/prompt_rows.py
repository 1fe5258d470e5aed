"""Prompt-only rows (TRL's prompt-only type, for GRPO): the prompt as text or as chat turns. The row's
other columns reach the reward functions as they are (an `answer` to compare with, a label).
Pure: no tokenizer."""

from __future__ import annotations

from typing import Any

from .scan import DatasetError, _json_list, _turns, to_messages


def prompt_row(row: dict[str, Any], where: str) -> str | list[dict[str, Any]] | None:
    """The row's prompt: text, or chat turns (checked); None for an empty prompt (skipped, counted)."""
    value = row.get("prompt")
    if isinstance(value, list) or _json_list(value):
        turns = to_messages("messages", {"messages": _turns(value, "prompt", where)}, where, reply=False)
        if turns is None:
            return None
        if turns[-1]["role"] == "assistant":
            raise DatasetError(
                f"{where}: the prompt ends with an assistant turn; GRPO samples the reply, so a prompt ends "
                "with the user's (or a tool's) turn"
            )
        return turns
    if value is not None and not isinstance(value, str):
        raise DatasetError(f"{where}: 'prompt' is neither text nor a list of turns")
    if not value or not value.strip():
        return None
    return value


def plain_prompt(row: dict[str, Any], where: str) -> str | None:
    """A readable rendering without a tokenizer, for previews and the quick scan."""
    p = prompt_row(row, where)
    if p is None:
        return None
    if isinstance(p, str):
        return p
    return "\n".join(f"{m['role']}: {m['content']}" for m in p)
