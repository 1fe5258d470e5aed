"""Form rows generated from the settings model: text settings get an Input, choices a Select
(never typed freely), switches a Checkbox.

Start-up matters (the form must answer keys within half a second of `mgtui`), so a row is three
plain widgets in its group's grid (name, editor, note) with no container of its own, and groups
below the fold are mounted lazily.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from textual.app import ComposeResult
from textual.containers import Grid
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select

from ...completion import COMPLETERS
from ...settings import Setting


def label_of(name: str) -> str:
    """How a setting is named on screen: as its flag, without the dashes in front."""
    return name.replace("_", "-")


PLACEHOLDERS = {"dataset": "path/to/train.jsonl or org/name", "chat_template": "tokenizer's own",
                "gpus": "all visible"}


class Completion(Suggester):
    """Offers one of our completers' answers as the Input's grey suggestion (→ accepts it).
    The completer reads directories, so it runs in a thread: a slow disk never holds up a key."""

    def __init__(self, complete: Callable[[str], str | None]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)  # the disk changes; paths are case-sensitive
        self.complete = complete

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(self.complete, value)


def editor_for(s: Setting, value: Any) -> Widget:
    eid = f"i-{s.name}"
    if s.type is bool:
        return Checkbox("on" if value else "off", value=bool(value), id=eid, tooltip=s.help, compact=True)
    if s.choices:
        return Select([(c, c) for c in s.choices], value=value, allow_blank=False, id=eid, compact=True, tooltip=s.help)
    complete = COMPLETERS.get(s.name)
    return Input(str(value), id=eid, compact=True, placeholder=PLACEHOLDERS.get(s.name, ""), tooltip=s.help,
                 select_on_focus=False, suggester=Completion(complete) if complete else None)


class FieldGroup(Grid):
    """One group of settings: a two-column grid of names and editors, with a note row under each.
    It keeps its rows' widgets by setting name, so updates never search the DOM."""

    DEFAULT_CSS = """
    FieldGroup { grid-size: 2; grid-columns: 24 1fr; grid-rows: auto; height: auto; }
    FieldGroup .name { color: $text-muted; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    FieldGroup .name.-explicit { color: $text; }
    FieldGroup .name.-invalid { color: $error; text-style: bold; }
    FieldGroup .note { column-span: 2; display: none; padding-left: 24; color: $text-muted; height: 1;
                       text-wrap: nowrap; text-overflow: ellipsis; }
    FieldGroup .note.-shown { display: block; }
    FieldGroup .note.-invalid { color: $error; }
    FieldGroup Input, FieldGroup Select, FieldGroup Checkbox { width: 1fr; height: 1; }
    """

    def __init__(self, settings: list[Setting], value: Callable[[str], Any],
                 on_ready: Callable[["FieldGroup"], None]) -> None:
        super().__init__()
        self.settings = settings
        self.value = value
        self.on_ready = on_ready
        self.rows: dict[str, tuple[Label, Widget, Label]] = {}
        self.shown: dict[str, tuple[bool, bool, str]] = {}

    def compose(self) -> ComposeResult:
        for s in self.settings:
            row = (Label(label_of(s.name), classes="name", id=f"f-{s.name}"), editor_for(s, self.value(s.name)),
                   Label("", classes="note", id=f"n-{s.name}"))
            self.rows[s.name] = row
            yield from row

    def on_mount(self) -> None:
        self.on_ready(self)  # a lazily mounted group catches up with what changed meanwhile

    def show(self, s: Setting, text: str, value: Any, error: str | None, note: str | None, explicit: bool,
             typed: bool) -> None:
        """Bring a row up to date without echoing a change message back to the form.
        A focused field whose text the user typed is theirs: keys can be ahead of the form (a burst
        over SSH, a paste), so writing the form's text back would drop them."""
        name, ed, note_label = self.rows[s.name]
        with ed.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
            if isinstance(ed, Checkbox):
                if ed.value != bool(value):
                    ed.value = bool(value)
                    ed.label = "on" if value else "off"
            elif isinstance(ed, Select):
                if ed.value != value:
                    ed.value = value
            elif isinstance(ed, Input) and ed.value != text and not (ed.has_focus and typed):
                ed.value = text
        # Only touch what changed: every class change restyles the widget.
        message = error or note or ""
        state = (bool(error), explicit, message)
        if self.shown.get(s.name) == state:
            return
        self.shown[s.name] = state
        name.set_class(bool(error), "-invalid")
        name.set_class(explicit, "-explicit")
        note_label.set_class(bool(message), "-shown")
        note_label.set_class(bool(error), "-invalid")
        note_label.update(message)
