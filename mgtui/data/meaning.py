"""Columns that change what a file means: used, or the file refused in one line naming the column
and what to do. Nothing the user wrote is dropped in silence. Pure: no tokenizer, no Textual.

Preference and KTO data need another training method than SFT; `needs_method` is the one place
that says so, so that a later --method (dpo, kto) is named here when it lands."""

from __future__ import annotations

from typing import Any

from .scan import DatasetError

MEDIA_COLUMNS = ("images", "videos", "audios")
MEDIA_TAGS = ("<image>", "<video>", "<audio>")
SYSTEM_READERS = ("messages", "sharegpt", "chat_prompt_completion")  # formats that put 'system' in a turn
TOOL_READERS = SYSTEM_READERS


def needs_method(where: str, column: str, kind: str, for_sft: str) -> DatasetError:
    """Data made for a method other than SFT: what it is, that mgtui trains SFT, and how to make
    SFT data of it. (A later --method names itself here.) `column` is a name, or what said so."""
    said = column if " " in column else f"the '{column}' column"
    return DatasetError(
        f"{where}: {said} makes this {kind} data, and mgtui trains SFT only today "
        f"(it would learn the wrong targets); for SFT, {for_sft}"
    )


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
    if "chosen" in row or "rejected" in row:
        column = "chosen" if "chosen" in row else "rejected"
        return needs_method(
            where, column, "preference (chosen/rejected)", "keep the chosen reply as the assistant turn"
        )
    if "completions" in row and "labels" in row:
        return needs_method(where, "labels", "stepwise supervision", "keep the correct steps as the completion")
    for column in ("label", "kto_tag"):
        if column in row and (isinstance(row[column], bool) or str(row[column]).lower() in ("true", "false")):
            return needs_method(
                where, column, "KTO (unpaired preference)", "keep only the rows labelled true and drop the column"
            )
        if column in row:
            return DatasetError(
                f"{where}: the '{column}' column would be dropped: SFT learns the text, not a label; "
                f"drop the column to train on the text alone"
            )
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
