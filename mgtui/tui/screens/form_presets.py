"""Presets from the form: load one (each listed with what it would change), save the form as one
(asking before replacing a file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from ... import presets
from ...settings import Resolved, SettingError
from ..widgets.fields import label_of
from .modals import AskName, PickOne, confirm

if TYPE_CHECKING:
    from .form import FormScreen


class PresetDialogs:
    def __init__(self, form: FormScreen) -> None:
        self.form = form

    def choose_and_load(self) -> None:
        listing = presets.listing()
        loaded: dict[str, presets.Preset | str] = {}
        for name, (path, builtin) in listing.items():
            try:
                loaded[name] = presets.load_path(path, builtin)
            except presets.PresetError as e:
                loaded[name] = str(e)
        options = [
            (n, f"{n}  ({'built-in' if listing[n][1] else 'user'})" + ("  BROKEN" if isinstance(p, str) else ""))
            for n, p in loaded.items()
        ]

        def details(name: str) -> Text:
            p = loaded.get(name)
            if isinstance(p, str) or p is None:
                return Text(str(p), style="bold red")
            return self.changes_text(p)

        def chosen(name: str | None) -> None:
            if name is not None:
                self.load(name)

        self.form.app.push_screen(PickOne("Load a preset", options, details), chosen)

    def changes_text(self, p: presets.Preset) -> Text:
        """The preset's description, then what loading it would change on the form."""
        t = Text(p.description + "\n", style="italic")
        try:
            changes = self.form.model.diff(presets.resolved(p))
        except SettingError as e:  # a preset that resolves to a conflict
            return t + Text(str(e), style="bold red")
        if not changes:
            t.append("no change to the form", style="dim")
        for k, old, new in changes[:7]:
            t.append(f"{label_of(k)}: {old} → {new}\n")
        if len(changes) > 7:
            t.append(f"… and {len(changes) - 7} more", style="dim")
        return t

    def load(self, name_or_path: str) -> bool:
        """Apply a preset; a broken one leaves the form as it was and says why."""
        form = self.form
        try:
            p = presets.load(name_or_path)
            presets.resolved(p)
        except (presets.PresetError, ValueError) as e:
            form.notify(str(e), title="Preset not loaded", severity="error", timeout=10)
            return False
        form.model.replace(form.model.with_preset(p.values, p.explicit_keys()))
        form.follow_dataset(0)
        form.refresh_form()
        form.found = None
        form.schedule_lookup(0)
        form.notify(f"Loaded preset {p.name}")
        return True

    def ask_and_save(self) -> None:
        form = self.form
        res = form.model.resolved
        if res is None or not form.model.valid:
            form.notify("Fix the marked fields before saving", severity="error")
            return

        def check(name: str) -> str | None:
            if not name:
                return "Give a name"
            try:
                presets.target_path(name)
            except presets.PresetError as e:
                return str(e)
            return None

        def named(name: str | None) -> None:
            if not name:
                return
            path = presets.target_path(name)
            if path.exists():
                form.app.push_screen(
                    confirm("Overwrite preset?", f"{path} exists. Replace it?", "Overwrite", "Keep"),
                    lambda answer: self.save(res, name, answer == "yes"),
                )
            else:
                self.save(res, name, False)

        form.app.push_screen(
            AskName("Save preset as", f"saved in {presets.user_dir()} (or give a path ending .toml)", validate=check),
            named,
        )

    def save(self, res: Resolved, name: str, force: bool) -> None:
        form = self.form
        if presets.target_path(name).exists() and not force:
            form.notify("Not saved: the existing preset was kept")
            return
        try:
            path = presets.save(res, name, force=force)
        except presets.PresetError as e:
            form.notify(str(e), severity="error", timeout=10)
            return
        form.notify(f"Saved {path}")
