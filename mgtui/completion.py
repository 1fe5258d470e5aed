"""Completions for the form's text fields: paths on this machine, the built-in demo names, and the
models and datasets already in the local Hugging Face cache. Pure (os and pathlib only).

Each completer takes what the user has typed and returns one completion that extends it, or None.
"""

from __future__ import annotations

import os
from typing import Callable

from .data.scan import BUILTIN, FILE_KINDS
from .demo_model import BUILTIN_MODEL
from .hub_cache import hub_cached


def complete_path(text: str, want_file: Callable[[str], bool] = lambda name: True) -> str | None:
    """The first entry (by name) of the typed directory that extends the typed name: a directory
    gets a trailing slash, so accepting it leads on to its contents. Hidden entries only when the
    typed name starts with a dot; files only when `want_file` accepts their name."""
    if not text:
        return None
    head, tail = os.path.split(os.path.expanduser(text))
    try:
        entries = sorted(os.scandir(head or "."), key=lambda e: e.name)
    except OSError:
        return None
    for entry in entries:
        name = entry.name
        if not name.startswith(tail) or (name.startswith(".") and not tail.startswith(".")):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir:
            name += "/"
        elif not want_file(name):
            continue
        if len(name) > len(tail):
            return text + name[len(tail) :]  # extends the text as typed (a "~" stays a "~")
    return None


def _first_extending(text: str, names: list[str]) -> str | None:
    return next((n for n in names if n.startswith(text) and n != text), None)


def complete_model(text: str) -> str | None:
    return complete_path(text, lambda name: name.endswith(".json")) or _first_extending(
        text, [BUILTIN_MODEL, *hub_cached("models")]
    )


def complete_dataset(text: str) -> str | None:
    return complete_path(text, lambda name: name.endswith(FILE_KINDS)) or _first_extending(
        text, [*BUILTIN, *hub_cached("datasets")]
    )


def complete_directory(text: str) -> str | None:
    return complete_path(text, lambda name: False)


COMPLETERS: dict[str, Callable[[str], str | None]] = {
    "base_model": complete_model,
    "dataset": complete_dataset,
    "output_dir": complete_directory,
}
