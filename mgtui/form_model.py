"""The settings form's state, without any UI: what the user typed, what they chose explicitly,
and what it resolves to. The screen renders it; tests drive it directly. Pure."""

from __future__ import annotations

from typing import Any, Mapping

from .settings import BY_NAME, DEFAULTS, SETTINGS, Resolved, SettingError, apply_layer, resolve


class FormModel:
    def __init__(self, chosen: Mapping[str, Any] | None = None) -> None:
        # Values the user set (typed, picked, or from a preset/flags): quality mode leaves them alone.
        self.chosen: dict[str, Any] = dict(chosen or {})
        self.field_errors: dict[str, str] = {}  # text that doesn't parse, by setting
        self.texts: dict[str, str] = {}
        self.resolved: Resolved | None = None
        self.cross_error: tuple[str, str] | None = None  # (setting, message) of a conflict
        self.recompute()

    # --- edits -------------------------------------------------------------------------------
    def set_text(self, name: str, text: str) -> None:
        """What was typed into a text field; parsed and checked like a flag."""
        self.texts[name] = text
        try:
            value = BY_NAME[name].parse(text)
        except SettingError as e:
            self.field_errors[name] = str(e)
        else:
            self.field_errors.pop(name, None)
            self.chosen[name] = value
        self.recompute()

    def set_value(self, name: str, value: Any) -> None:
        """A picked choice or a toggled switch."""
        self.field_errors.pop(name, None)
        # picking one precision unpicks the other, as a radio would, and as a later flag does
        apply_layer(self.chosen, {name: BY_NAME[name].check(value)})
        self.recompute()

    def apply(self, changes: Mapping[str, Any]) -> None:
        """Several explicit changes at once (an advisor step, a loaded preset)."""
        for name in changes:
            self.field_errors.pop(name, None)
            self.texts.pop(name, None)
        self.chosen.update(changes)
        self.recompute()

    def replace(self, chosen: Mapping[str, Any]) -> None:
        self.chosen = dict(chosen)
        self.field_errors.clear()
        self.texts.clear()
        self.recompute()

    # --- reading -----------------------------------------------------------------------------
    def recompute(self) -> None:
        self.cross_error = None
        try:
            self.resolved = resolve([self.chosen], set(self.chosen))
        except SettingError as e:
            self.resolved = None
            self.cross_error = (e.name, str(e))

    @property
    def errors(self) -> dict[str, str]:
        out = dict(self.field_errors)
        if self.cross_error and self.cross_error[0] not in out:
            out[self.cross_error[0]] = self.cross_error[1]
        return out

    @property
    def valid(self) -> bool:
        return self.resolved is not None and not self.field_errors

    def value(self, name: str) -> Any:
        if self.resolved is not None:
            return self.resolved.by_name(name)
        return self.chosen.get(name, DEFAULTS[name])

    def display(self, name: str) -> str:
        """The text a field shows: what was typed if it doesn't parse, else the value."""
        if name in self.field_errors:
            return self.texts.get(name, "")
        v = self.value(name)
        s = BY_NAME[name]
        if s.type is float:
            return f"{v:g}"
        return str(v)

    def quality_note(self, name: str) -> str | None:
        """'set by quality mode' when quality mode chose this field's value."""
        if self.resolved is not None and name in self.resolved.quality_set:
            return f"quality mode sets {self.resolved.quality_set[name]}".replace("True", "on")
        return None

    def with_preset(self, values: Mapping[str, Any], explicit: set[str]) -> dict[str, Any]:
        """The choices a loaded preset leaves: its own, and the user's paths where it has none
        (a preset saved without paths keeps the dataset and output directory)."""
        kept = {
            s.name: self.chosen[s.name] for s in SETTINGS if s.path and s.name not in values and s.name in self.chosen
        }
        return {**kept, **{k: values[k] for k in explicit}}

    def diff(self, other: Resolved) -> list[tuple[str, Any, Any]]:
        """(setting, current, other) for each setting that `other` changes."""
        return [
            (s.name, self.value(s.name), other.by_name(s.name))
            for s in SETTINGS
            if s.in_preset and self.value(s.name) != other.by_name(s.name)
        ]
