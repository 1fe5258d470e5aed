"""Columns that change what a file means: used, or the file refused in one line naming the column
and what to do. Nothing the user wrote is dropped in silence. Pure: no tokenizer, no Textual.

Data made for one training method is refused for another, naming the --method that trains it:
`wrong_method` for a layout, `needs_method` for a column that says so."""

from __future__ import annotations

from typing import Any

from .scan import SFT_FORMATS, DatasetError

MEDIA_COLUMNS = ("images", "videos", "audios")
MEDIA_TAGS = ("<image>", "<video>", "<audio>")
SYSTEM_READERS = ("messages", "sharegpt", "chat_prompt_completion", "preference", "sharegpt_preference", "kto")
TOOL_READERS = SYSTEM_READERS[:3]  # formats that put 'system' in a turn; those that pass tools to the template


def method_of(fmt: str) -> str:
    """The --method values that train data of this format."""
    if fmt == "kto":
        return "kto"
    if fmt == "prompt_only":
        return "grpo"
    return "sft" if fmt in SFT_FORMATS else "dpo, orpo or simpo"


def wrong_method(where: str, fmt: str, method: str) -> DatasetError | None:
    """Data of `fmt` given to a run of `method` that doesn't train it, in one line naming the method that does."""
    trains = method_of(fmt)
    if method in trains.replace(",", " ").split():
        return None
    kind = {
        "sft": "SFT (one reply per prompt)",
        "kto": "KTO (replies labelled true/false)",
        "grpo": "prompt-only",
    }.get(trains, "preference (chosen/rejected)")
    wants = {
        "sft": "prompts with one reply",
        "kto": "prompt, completion and label columns",
        "grpo": "a 'prompt' column and no replies (map a reference answer to another name, e.g. --columns answer=completion)",
    }.get(method, "chosen and rejected replies")
    hint = "; or name its reply column: --columns completion=NAME" if trains == "grpo" and method == "sft" else ""
    return DatasetError(
        f"{where}: this is {kind} data, which --method {trains} trains; --method {method} needs {wants}{hint}"
    )


def needs_method(where: str, column: str, kind: str, method: str) -> DatasetError:
    """A column that makes the data another method's, read as SFT: naming the method that trains it.
    `column` is a name, or what said so."""
    said = column if " " in column else f"the '{column}' column"
    return DatasetError(f"{where}: {said} makes this {kind} data, which --method {method} trains")


def _filled(value: Any) -> bool:
    return value not in (None, "", [], {}) and not (isinstance(value, str) and not value.strip())


def _texts(value: Any) -> str:
    """Every string inside a row's value, joined (to look for media placeholders)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_texts(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_texts(v) for v in value)
    return ""


def refusal(fmt: str, row: dict[str, Any], where: str) -> DatasetError | None:
    """Why a row of format `fmt` can't be trained as it means, or None."""
    if fmt == "prompt_only":  # its other columns are the reward functions' (answer, label, ...)
        return _media(row, where)
    if fmt in SFT_FORMATS and ("chosen" in row or "rejected" in row):
        column = "chosen" if "chosen" in row else "rejected"
        return needs_method(where, column, "preference (chosen/rejected)", "dpo, orpo or simpo")
    if "completions" in row and "labels" in row:
        return DatasetError(
            f"{where}: the 'labels' column makes this stepwise supervision data, which mgtui doesn't train; "
            "for SFT, keep the correct steps as the completion"
        )
    for column in ("label", "kto_tag"):
        if fmt == "kto" and column == "label":
            continue
        if column in row and (isinstance(row[column], bool) or str(row[column]).lower() in ("true", "false")):
            error = needs_method(where, column, "KTO (replies labelled true/false)", "kto")
            if column == "kto_tag":  # LLaMA-Factory's layout: KTO here reads TRL's unpaired type
                return DatasetError(f"{error} as prompt, completion and label columns")
            return error
        if column in row:
            return DatasetError(
                f"{where}: the '{column}' column would be dropped: SFT learns the text, not a label; "
                f"drop the column to train on the text alone"
            )
    media = _media(row, where)
    if media:
        return media
    if fmt not in SYSTEM_READERS and _filled(row.get("system")):
        return DatasetError(
            f"{where}: the 'system' column would be dropped: {fmt} rows have no system turn; give the rows as "
            f"messages (with a system turn) or drop the column"
        )
    if fmt not in TOOL_READERS and _filled(row.get("tools")):
        return DatasetError(
            f"{where}: the 'tools' column would be dropped: only chat rows (messages, sharegpt) call tools"
        )
    if fmt == "alpaca" and _filled(row.get("history")):
        return DatasetError(
            f"{where}: the 'history' column would be dropped: the Alpaca prompt has one turn; give the rows "
            f"as messages, or as ShareGPT conversations"
        )
    return None


def _media(row: dict[str, Any], where: str) -> DatasetError | None:
    """Media columns or placeholders: mgtui trains text-only models."""
    for column in MEDIA_COLUMNS:
        if _filled(row.get(column)):
            return DatasetError(
                f"{where}: the '{column}' column holds media, and mgtui trains text-only models; "
                f"drop the column (and its placeholders) to train on the text alone"
            )
    if any(c in row for c in MEDIA_COLUMNS):
        text = _texts({k: v for k, v in row.items() if k not in MEDIA_COLUMNS})
        tag = next((t for t in MEDIA_TAGS if t in text), None)
        if tag:
            return DatasetError(
                f"{where}: {tag} in the text stands for media the row doesn't have; mgtui trains text-only "
                f"models: remove the placeholders"
            )
    return None
