"""LLaMA-Factory's dataset_info.json: a dataset registered there works here by its name, or by its
file beside the registry. Its entry's columns, tags and roles are read as LLaMA-Factory's
data/README.md and parser.py define them, and each row is rewritten to mgtui's own names:
alpaca columns to instruction/input/output (or text, for a pre-training entry), a sharegpt
entry's messages to 'conversations' with from/value and the speakers human, gpt, system,
function_call and observation. Pure: json only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .scan import DatasetError

INFO_FILE = "dataset_info.json"
# LLaMA-Factory's column roles, and the column mgtui reads each as.
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}
COMMON_COLUMNS = ("system", "tools", "images", "videos", "audios", "chosen", "rejected", "kto_tag")
TAGS = {  # LLaMA-Factory's tag: (its default, mgtui's ShareGPT name)
    "user_tag": ("human", "human"),
    "assistant_tag": ("gpt", "gpt"),
    "observation_tag": ("observation", "observation"),
    "function_tag": ("function_call", "function_call"),
    "system_tag": ("system", "system"),
}

Convert = Callable[[dict[str, Any], str], dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    name: str
    formatting: str = "alpaca"
    ranking: bool = False
    columns: dict[str, str] = field(default_factory=dict)  # the file's column: the name mgtui reads
    role_tag: str = "from"
    content_tag: str = "value"
    speakers: dict[str, str] = field(default_factory=dict)  # the file's speaker: mgtui's ShareGPT speaker


def _registry(folder: Path) -> dict[str, Any]:
    path = folder / INFO_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not readable JSON: {getattr(e, 'msg', e)}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object of datasets")
    return data


def entry(name: str, info: dict[str, Any], where: str) -> Entry:
    """One dataset's description, with LLaMA-Factory's defaults (parser.py)."""
    if not isinstance(info, dict):
        raise DatasetError(f"{where}: the entry for {name!r} is not an object")
    formatting = info.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt", "openai"):
        raise DatasetError(f"{where}: {name!r}: unknown formatting {formatting!r} (alpaca, sharegpt)")
    given = info.get("columns")
    columns: dict[str, str] = {}
    if isinstance(given, dict):  # as parser.py: with a columns object, a role it leaves out is unused
        roles = dict(ALPACA_COLUMNS) if formatting == "alpaca" else {"messages": "conversations"}
        if formatting == "alpaca" and "response" not in given and "prompt" in given and "chosen" not in given:
            roles["prompt"] = "text"  # a pre-training entry: {"prompt": "text"}
        roles.update({c: c for c in COMMON_COLUMNS})
        columns = {str(source): roles[role] for role, source in given.items() if role in roles and source}
    tags: dict[str, Any] = info["tags"] if isinstance(info.get("tags"), dict) else {}
    speakers = {str(tags.get(tag, default)): ours for tag, (default, ours) in TAGS.items()}
    return Entry(
        name,
        "alpaca" if formatting == "alpaca" else "sharegpt",
        bool(info.get("ranking", False)),
        columns,
        str(tags.get("role_tag", "from")),
        str(tags.get("content_tag", "value")),
        speakers,
    )


def registered_file(name: str) -> Path | None:
    """The file a dataset_info.json registers under `name`: DIR/NAME reads DIR's registry; a bare
    NAME reads ./dataset_info.json, then ./data/dataset_info.json (LLaMA-Factory's dataset_dir)."""
    given = Path(name).expanduser()
    folders = [given.parent] if given.parent != Path(".") else [Path("."), Path("data")]
    for folder in folders:
        info = _registry(folder).get(given.name)
        if info is None:
            continue
        if isinstance(info, dict) and isinstance(info.get("file_name"), str):
            return folder / info["file_name"]
        hub = info.get("hf_hub_url") if isinstance(info, dict) else None
        raise DatasetError(
            f"{folder / INFO_FILE}: {given.name!r} is "
            + (f"on the Hub: use --dataset {hub}" if hub else "not a local file (no file_name)")
        )
    return None


def entry_for(path: Path) -> Entry | None:
    """The entry of the registry beside `path` whose file_name is this file, if any."""
    registry = _registry(path.parent)
    for name, info in registry.items():
        if isinstance(info, dict) and info.get("file_name") == path.name:
            return entry(name, info, str(path.parent / INFO_FILE))
    return None


def registration(path: Path) -> Convert | None:
    """A function that rewrites the file's rows to mgtui's names, when dataset_info.json registers it."""
    found = entry_for(path) if path.is_file() else None
    if found is None:
        return None

    def convert(row: dict[str, Any], where: str) -> dict[str, Any]:
        out = {found.columns.get(k, k): v for k, v in row.items()}
        turns = out.get("conversations")
        if found.formatting == "sharegpt" and isinstance(turns, list):
            out["conversations"] = [_turn(found, t) for t in turns]
        if found.formatting == "sharegpt" and found.ranking:  # LLaMA-Factory's chosen/rejected: a turn each
            for key in ("chosen", "rejected"):
                if key in out:
                    out[key] = _turn(found, out[key])
        return out

    return convert


def _turn(found: Entry, turn: Any) -> Any:
    if not isinstance(turn, dict) or found.role_tag not in turn:
        return turn
    rest = {k: v for k, v in turn.items() if k not in (found.role_tag, found.content_tag)}
    speaker = turn[found.role_tag]
    return {**rest, "from": found.speakers.get(speaker, speaker), "value": turn.get(found.content_tag)}
