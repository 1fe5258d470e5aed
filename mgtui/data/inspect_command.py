"""`model-garden inspect`: a row as the trainer gets it, in the terminal (data/inspect.py shows it)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import EXIT_OK, UsageError
from .inspect import FileView, header, ids_table, inspect_rows, pieces_text
from .scan import DatasetError

if TYPE_CHECKING:
    from ..settings import Resolved

STYLE = {"trained": "\x1b[1;32m", "masked": "\x1b[2m", "special": "\x1b[35m", "cut": "\x1b[9;2m", "end": "\x1b[0m"}


def colored(pieces: list[dict[str, Any]]) -> str:
    """Trained tokens bold green, masked ones dim, special tokens magenta, the cut struck through."""
    out = []
    for p in pieces:
        kind = "cut" if p["cut"] else "special" if p["special"] else "trained" if p["trained"] else "masked"
        bold = "\x1b[1m" if p["trained"] and p["special"] and not p["cut"] else ""
        out.append(f"{STYLE[kind]}{bold}{p['text']}{STYLE['end']}")
    return "".join(out)


def show(view: FileView, index: int, raw: bool, out: TextIO, color: bool) -> None:
    summary, row = view.summary(), view.rows[index].as_json()
    print(header(summary, row, index), file=out)
    for w in [*(summary["skipped"] and [summary["skipped"]] or []), *summary["warnings"], *row["warnings"]]:
        print(f"warning: {w}", file=out)
    if not view.masked:
        print("every token is trained (nothing masked)", file=out)
    legend = "trained in bold green, masked dim, special tokens magenta" if color else "trained tokens within ⟦ ⟧"
    print(f"-- {legend}; max-seq-length {view.max_seq_length} --", file=out)
    parts = row["sections"] or [{"name": "", "pieces": row["pieces"]}]
    for part in parts:
        if part["name"]:  # a preference row: the prompt once, then each reply under its name
            print(f"── {part['name']} ──", file=out)
        if raw:
            print("  pos      id   label  text", file=out)
            print("\n".join(ids_table(part["pieces"])), file=out)
        else:
            print(colored(part["pieces"]) if color else pieces_text(part["pieces"], marks=True), file=out)


def run_inspect(res: Resolved, row: int, raw: bool, color: bool | None = None) -> int:
    """Row `row` (its number in the file, from 1) of the dataset the settings name."""
    try:
        view = inspect_rows(
            res["dataset"], res["dataset_format"], res["base_model"], res["chat_template"],
            res["max_seq_length"], res["train_on_responses_only"], res["columns"], limit=max(row, 10_000), max_prompt_length=res["max_prompt_length"],
        )  # fmt: skip
    except DatasetError as e:
        raise UsageError(str(e)) from None
    index = next((i for i, r in enumerate(view.rows) if r.number == row), None)
    if index is None:
        why = "it is skipped (empty after formatting)" if row <= view.read else f"the file has {view.read} rows"
        raise UsageError(f"--row {row}: not a row the trainer gets: {why}")
    show(view, index, raw, sys.stdout, sys.stdout.isatty() if color is None else color)
    return EXIT_OK
