"""Form rows generated from the settings model: text settings get an Input, choices a Select
(never typed freely), switches a Checkbox.

Start-up matters (the form must answer keys within half a second of `mgtui`), so a row is three
plain widgets in its group's grid (name, editor, note) with no container of its own, and groups
below the fold are mounted lazily.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from textual import events
from textual.app import ComposeResult
from textual.containers import Grid
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select

from ...completion import COMPLETERS
from ...settings import Setting
from ..textual_private import forward_key, restart_blink, run_bindings


def label_of(name: str) -> str:
    """How a setting is named on screen: as its flag, without the dashes in front."""
    return name.replace("_", "-")


PLACEHOLDERS = {"dataset": "path/to/train.jsonl or org/name", "chat_template": "tokenizer's own", "gpus": "all visible"}


class KeysInOrder:
    """Keeps a burst of keys in order in the form's editors (keys typed over SSH arrive together).

    Textual runs a printable key at once in the widget, but a bound key (backspace, arrows, tab,
    space on a checkbox) only after it has bubbled up to the app, behind the keys that follow it.
    So a bound key runs here as it arrives, as the app would run it, and a key that arrives after
    an earlier one moved the focus goes on to the widget focused now."""

    types_text = False  # whether printable keys are typed into the widget rather than bound

    async def _on_key(self, event: events.Key) -> None:
        app = self.app  # type: ignore[attr-defined]
        if app.focused is not self:
            event.stop()
            event.prevent_default()  # ends Textual's walk over the class's other key handlers
            forward_key(app.focused or app.screen, events.Key(event.key, event.character))
        elif not (self.types_text and event.is_printable) and await run_bindings(app, event.key):
            # stopping the event keeps the binding from running twice
            event.stop()
            event.prevent_default()
            if isinstance(self, Input):
                restart_blink(self)  # as Input's own key handler would: the cursor shows as it moves


class FieldInput(KeysInOrder, Input):
    """A setting's text box. It remembers the text last exchanged with the form: while its value
    differs, edits are on their way to the form in Changed messages (a burst of keys is applied
    before the form hears of the first), and the form must not write its older text over them."""

    types_text = True

    def __init__(self, value: str, **kw: Any) -> None:
        super().__init__(value, **kw)
        self.synced = value


class FieldSelect(KeysInOrder, Select):
    pass


class FieldCheckbox(KeysInOrder, Checkbox):
    pass


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
        return FieldCheckbox("on" if value else "off", value=bool(value), id=eid, tooltip=s.help, compact=True)
    if s.choices:
        return FieldSelect(
            [(c, c) for c in s.choices], value=value, allow_blank=False, id=eid, compact=True, tooltip=s.help
        )
    complete = COMPLETERS.get(s.name)
    return FieldInput(
        str(value),
        id=eid,
        compact=True,
        placeholder=PLACEHOLDERS.get(s.name, ""),
        tooltip=s.help,
        select_on_focus=False,
        suggester=Completion(complete) if complete else None,
    )


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

    def __init__(
        self, settings: list[Setting], value: Callable[[str], Any], on_ready: Callable[["FieldGroup"], None]
    ) -> None:
        super().__init__()
        self.settings = settings
        self.value = value
        self.on_ready = on_ready
        self.rows: dict[str, tuple[Label, Widget]] = {}
        self.notes: dict[str, Label] = {}  # made when a row first has a note: most rows never do
        self.shown: dict[str, tuple[bool, bool, str]] = {}

    def compose(self) -> ComposeResult:
        for s in self.settings:
            row = (Label(label_of(s.name), classes="name", id=f"f-{s.name}"), editor_for(s, self.value(s.name)))
            self.rows[s.name] = row
            yield from row

    def on_mount(self) -> None:
        self.on_ready(self)  # a lazily mounted group catches up with what changed meanwhile

    def show_for_method(self, method: str) -> None:
        """Only the chosen training method's rows (a setting of no method is every method's)."""
        for s in self.settings:
            if s.methods is None:
                continue
            visible = method in s.methods
            name, ed = self.rows[s.name]
            if name.display != visible:
                name.display = ed.display = visible
                note = self.notes.get(s.name)
                if note is not None:
                    note.display = visible

    def show(
        self, s: Setting, text: str, value: Any, error: str | None, note: str | None, explicit: bool, typed: bool
    ) -> None:
        """Bring a row up to date without echoing a change message back to the form. A text field
        is left alone while it holds edits the form has not heard of yet, and while it has focus
        and its text is what the user typed (it is shown as the value once they leave it)."""
        name, ed = self.rows[s.name]
        with ed.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
            if isinstance(ed, Checkbox):
                if ed.value != bool(value):
                    ed.value = bool(value)
                    ed.label = "on" if value else "off"
            elif isinstance(ed, Select):
                if ed.value != value:
                    ed.value = value
            elif (
                isinstance(ed, FieldInput)
                and ed.value != text
                and ed.value == ed.synced
                and not (ed.has_focus and typed)
            ):
                ed.value = ed.synced = text
        # Only touch what changed: every class change restyles the widget.
        message = error or note or ""
        state = (bool(error), explicit, message)
        if self.shown.get(s.name) == state:
            return
        self.shown[s.name] = state
        name.set_class(bool(error), "-invalid")
        name.set_class(explicit, "-explicit")
        note_label = self.notes.get(s.name)
        if note_label is None:
            if not message:
                return
            note_label = self.notes[s.name] = Label("", classes="note", id=f"n-{s.name}")
            self.mount(note_label, after=ed)
        note_label.set_class(bool(message), "-shown")
        note_label.set_class(bool(error), "-invalid")
        note_label.update(message)
