"""Preference and KTO rows: their layouts, which method trains each, and a row's prompt and replies.

Layouts read (TRL's dataset types, and LLaMA-Factory's ranking layouts):
    preference           chosen, rejected, and an optional prompt (without one the prompt is the
                         part chosen and rejected share: TRL's implicit prompt); text or role/content lists
    sharegpt_preference  conversations (from/value), chosen and rejected: one from/value turn each
    alpaca_preference    instruction, optional input, chosen and rejected replies as text
    kto                  prompt, completion, label (true: a good reply; false: a bad one); text or lists
Pure: no tokenizer, no Textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .scan import ALPACA_PROMPT, DatasetError, to_messages

PAIR_FORMATS = ("preference", "sharegpt_preference", "alpaca_preference")
UNPAIRED_FORMATS = ("kto",)
PREFERENCE_FORMATS = PAIR_FORMATS + UNPAIRED_FORMATS
REQUIRED = {
    "preference": {"chosen", "rejected"},
    "sharegpt_preference": {"conversations", "chosen", "rejected"},
    "alpaca_preference": {"instruction", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
}
ACCEPTED = (
    "preference (chosen, rejected, optional prompt); sharegpt_preference (conversations, chosen, rejected); "
    "alpaca_preference (instruction, input, chosen, rejected); kto (prompt, completion, label)"
)

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class PreferenceRow:
    """A row as the preference trainers take it: one prompt, then two replies (chosen, rejected)
    or one with a label (KTO). Chat rows hold role/content lists, the others text."""

    prompt: Messages | str
    replies: tuple[Messages | str, ...]
    label: bool | None = None

    @property
    def chat(self) -> bool:
        return isinstance(self.prompt, list)


def detect(columns: set[str], first: dict[str, Any] | None = None) -> str | None:
    """The preference layout a file's columns say, or None."""
    if {"chosen", "rejected"} <= columns:
        if "conversations" in columns:
            return "sharegpt_preference"
        if "instruction" in columns:
            return "alpaca_preference"
        return "preference"
    if {"prompt", "completion", "label"} <= columns and _is_label((first or {}).get("label")):
        return "kto"
    return None


def _is_label(value: Any) -> bool:
    return isinstance(value, bool) or str(value).lower() in ("true", "false", "1", "0")


def _label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise DatasetError(f"{where}: 'label' is {value!r}; KTO reads true (a good reply) or false (a bad one)")


def _text(row: dict[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DatasetError(f"{where}: '{key}' is not text")
    return value


def _turns_of(value: Any, key: str, where: str) -> Messages | str:
    """Text, or a role/content list (CSV cells hold the list as JSON)."""
    import json

    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            value = json.loads(value)
        except ValueError:
            raise DatasetError(f"{where}: '{key}' is not a list") from None
    if isinstance(value, (str, list)):
        return value
    raise DatasetError(f"{where}: '{key}' is neither text nor a list of turns")


def shared_prefix(chosen: Messages | str, rejected: Messages | str) -> int:
    """Where chosen and rejected part: TRL's implicit prompt (trl/data_utils.py, extract_prompt:
    the longest common prefix, less a space it ends on)."""
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):
        if chosen[idx] != rejected[idx]:
            if idx and chosen[idx - 1] == " ":
                idx -= 1
            break
    else:
        idx = min(len(chosen), len(rejected))
    return idx


def _chat(prompt: Messages, replies: list[Messages], row: dict[str, Any], where: str) -> PreferenceRow | None:
    """Checked through the SFT path's to_messages (roles, tool calls, a system column), a reply at a time."""
    out: list[Messages] = []
    start = 0
    for reply in replies:
        msgs = to_messages("messages", {"messages": prompt + reply, "system": row.get("system")}, where)
        if msgs is None:
            return None
        start = len(msgs) - len(reply)
        out.append(msgs[start:])
    head = to_messages("messages", {"messages": prompt + replies[0], "system": row.get("system")}, where) or []
    return PreferenceRow(head[:start], tuple(out))


def preference_row(fmt: str, row: dict[str, Any], where: str) -> PreferenceRow | None:
    """A preference or KTO row's prompt and replies; None for a row with an empty reply (skipped)."""
    if fmt == "kto":
        label = _label(row.get("label"), where)
        prompt, completion = (
            _turns_of(row.get("prompt", ""), "prompt", where),
            _turns_of(row.get("completion"), "completion", where),
        )
        if isinstance(prompt, list) != isinstance(completion, list):
            raise DatasetError(f"{where}: 'prompt' and 'completion' must both be text or both lists of turns")
        if not completion or (isinstance(completion, str) and not completion.strip()):
            return None
        if isinstance(prompt, list) and isinstance(completion, list):
            chat = _chat(prompt, [completion], row, where)
            return None if chat is None else PreferenceRow(chat.prompt, chat.replies, label)
        return PreferenceRow(prompt, (completion,), label)
    if fmt == "alpaca_preference":
        instruction, given = _text(row, "instruction", where), _text(row, "input", where)
        good, bad = _text(row, "chosen", where), _text(row, "rejected", where)
        if not instruction or not good.strip() or not bad.strip():
            return None
        prompt = ALPACA_PROMPT.format(
            ctx=", paired with an input that provides further context" if given else "",
            instruction=instruction,
            input=f"### Input:\n{given}\n\n" if given else "",
        )
        return PreferenceRow(prompt, (good, bad))
    if fmt == "sharegpt_preference":
        replies = []
        for key in ("chosen", "rejected"):
            turn = row.get(key)
            msgs = to_messages("sharegpt", {"conversations": turn if isinstance(turn, list) else [turn]}, where)
            if msgs is None:
                return None
            replies.append(msgs)
        return _chat(_sharegpt_prompt(row, where), replies, row, where)
    chosen = _turns_of(row.get("chosen"), "chosen", where)
    rejected = _turns_of(row.get("rejected"), "rejected", where)
    if isinstance(chosen, list) != isinstance(rejected, list):
        raise DatasetError(f"{where}: 'chosen' and 'rejected' must both be text or both lists of turns")
    if "prompt" in row and row["prompt"] is not None:
        prompt = _turns_of(row["prompt"], "prompt", where)
    else:  # implicit prompt: what chosen and rejected share
        cut = shared_prefix(chosen, rejected)
        prompt, chosen, rejected = chosen[:cut], chosen[cut:], rejected[cut:]
    if isinstance(prompt, list) != isinstance(chosen, list):
        raise DatasetError(f"{where}: 'prompt' and the replies must both be text or both lists of turns")
    if not chosen or not rejected:
        return None
    if isinstance(prompt, list) and isinstance(chosen, list) and isinstance(rejected, list):
        return _chat(prompt, [chosen, rejected], row, where)
    assert isinstance(prompt, str) and isinstance(chosen, str) and isinstance(rejected, str)
    if not chosen.strip() or not rejected.strip():
        return None
    return PreferenceRow(prompt, (chosen, rejected))


def _sharegpt_prompt(row: dict[str, Any], where: str) -> Messages:
    """A ShareGPT prompt's turns as role/content (it ends on the user's turn, so the SFT reader's
    rule that a row has an assistant reply doesn't apply)."""
    from .scan import SHAREGPT_ROLES

    turns = row.get("conversations")
    if not isinstance(turns, list):
        raise DatasetError(f"{where}: 'conversations' is not a list")
    out: Messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DatasetError(f"{where}: turn {i + 1} needs 'from' and 'value'")
        if turn["from"] not in SHAREGPT_ROLES:
            raise DatasetError(f"{where}: turn {i + 1}: unknown speaker {turn['from']!r}")
        out.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]})
    return out


def plain(pref: PreferenceRow) -> str:
    """A readable rendering without a tokenizer: the prompt, then each reply under its name."""

    def text(part: Messages | str) -> str:
        return part if isinstance(part, str) else "\n".join(f"{m['role']}: {m['content']}" for m in part)

    names = ("chosen", "rejected") if len(pref.replies) == 2 else ("good" if pref.label else "bad",)
    return text(pref.prompt) + "".join(f"\n[{n}] {text(r)}" for n, r in zip(names, pref.replies))
