"""One form row per setting, generated from the settings model: text settings get an Input,
choices a Select (never typed freely), switches a Checkbox."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select

from ...settings import Setting


def label_of(s: Setting) -> str:
    return s.name.replace("_", "-")


class SettingField(Vertical):
    """A label, the editor, and a note line (error or what quality mode set) shown when needed."""

    DEFAULT_CSS = """
    SettingField { height: auto; }
    SettingField > Horizontal { height: 1; }
    SettingField .name { width: 24; color: $text-muted; }
    SettingField.-explicit .name { color: $text; }
    SettingField.-invalid .name { color: $error; text-style: bold; }
    SettingField .note { display: none; padding-left: 24; color: $text-muted; height: auto; }
    SettingField.-noted .note { display: block; }
    SettingField.-invalid .note { color: $error; }
    SettingField Input, SettingField Select { width: 1fr; }
    SettingField Checkbox { width: 1fr; }
    """

    def __init__(self, setting: Setting, value: Any) -> None:
        super().__init__(id=f"f-{setting.name}")
        self.setting = setting
        self._initial = value

    def compose(self) -> ComposeResult:
        s = self.setting
        with Horizontal():
            yield Label(label_of(s), classes="name")
            yield self._editor(s, self._initial)
        yield Label("", classes="note")

    def _editor(self, s: Setting, value: Any) -> Widget:
        eid = f"i-{s.name}"
        if s.type is bool:
            return Checkbox("on" if value else "off", value=bool(value), id=eid, tooltip=s.help, compact=True)
        if s.choices:
            return Select([(c, c) for c in s.choices], value=value, allow_blank=False, id=eid, compact=True,
                          tooltip=s.help)
        placeholder = {"dataset": "path/to/train.jsonl or org/name", "chat_template": "tokenizer's own",
                       "gpus": "all visible"}.get(s.name, "")
        return Input(str(value), id=eid, compact=True, placeholder=placeholder, tooltip=s.help,
                     select_on_focus=False)

    @property
    def editor(self) -> Widget:
        return self.query_one(f"#i-{self.setting.name}")

    def show(self, text: str, value: Any, error: str | None, note: str | None, explicit: bool) -> None:
        """Bring the row up to date without echoing a change message back to the form."""
        ed = self.editor
        with ed.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
            if isinstance(ed, Checkbox):
                if ed.value != bool(value):
                    ed.value = bool(value)
                ed.label = "on" if value else "off"
            elif isinstance(ed, Select):
                if ed.value != value:
                    ed.value = value
            elif isinstance(ed, Input) and ed.value != text and not (ed.has_focus and error):
                ed.value = text
        self.set_class(bool(error), "-invalid")
        self.set_class(explicit, "-explicit")
        message = error or note or ""
        self.set_class(bool(message), "-noted")
        self.query_one(".note", Label).update(message)
