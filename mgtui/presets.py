"""TOML presets: load, save (atomic), list. Built-in ones ship in presets/; the user's live in
$XDG_CONFIG_HOME/mgtui/presets and shadow built-ins of the same name. Pure: no Textual, no torch."""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from .settings import BY_NAME, DEFAULTS, QUALITY_KEYS, Resolved, SettingError

SCHEMA = 1
_META = ("schema", "description")
# Shapes of Hugging Face and W&B keys: refused in any preset value, whatever the key.
_SECRET = re.compile(r"\bhf_[A-Za-z0-9]{20,}|\b[0-9a-f]{40}\b")


class PresetError(Exception):
    """A preset can't be read or written. str() is one line naming the file (and key, line)."""


@dataclass
class Preset:
    name: str
    path: Path
    builtin: bool
    description: str
    values: dict[str, Any]

    def explicit_keys(self) -> set[str]:
        """Keys the preset chose, as opposed to defaults it merely recorded. A stored quality
        key under quality mode is a deliberate choice against it, so it counts as explicit."""
        quality = self.values.get("quality_mode", False)
        return {k for k, v in self.values.items() if v != DEFAULTS[k] or (quality and k in QUALITY_KEYS)}


def builtin_dir() -> Path:
    here = Path(__file__).resolve().parent
    packaged = here / "_builtin_presets"  # inside a wheel
    return packaged if packaged.is_dir() else here.parent / "presets"


def user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mgtui" / "presets"


def _line_of(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return i
    return None


def parse(text: str, path: Path, builtin: bool = False) -> Preset:
    """Parse and check a preset's text. Raises PresetError naming file, key and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{path}: invalid TOML: {e}") from None
    schema = data.get("schema", SCHEMA)
    if not isinstance(schema, int) or schema > SCHEMA:
        raise PresetError(
            f"{path}: line {_line_of(text, 'schema')}: schema {schema!r} is newer than this mgtui understands ({SCHEMA}); upgrade mgtui"
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _META:
            continue
        where = f"{path}: line {_line_of(text, key)}: "
        setting = BY_NAME.get(key)
        if setting is None or not setting.in_preset:
            raise PresetError(f"{where}unknown key {key!r}")
        try:
            values[key] = setting.check(value)
        except SettingError as e:
            raise PresetError(f"{where}{e}") from None
    desc = data.get("description", "")
    return Preset(path.stem, path, builtin, desc if isinstance(desc, str) else "", values)


def load_path(path: Path, builtin: bool = False) -> Preset:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PresetError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    return parse(text, path, builtin)


def locate(name_or_path: str) -> tuple[Path, bool]:
    """A preset's file and whether it is built in. Paths win; then user presets; then built-ins."""
    p = Path(name_or_path).expanduser()
    if p.suffix == ".toml" or os.sep in name_or_path:
        if not p.is_file():
            raise PresetError(f"{p}: no such preset file")
        return p, False
    for directory, builtin in ((user_dir(), False), (builtin_dir(), True)):
        candidate = directory / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate, builtin
    names = ", ".join(sorted(listing())) or "none"
    raise PresetError(f"unknown preset {name_or_path!r} (available: {names})")


def load(name_or_path: str) -> Preset:
    return load_path(*locate(name_or_path))


def listing() -> dict[str, tuple[Path, bool]]:
    """name -> (path, builtin); user presets shadow built-ins."""
    found: dict[str, tuple[Path, bool]] = {}
    for directory, builtin in ((builtin_dir(), True), (user_dir(), False)):
        if directory.is_dir():
            for f in sorted(directory.glob("*.toml")):
                if f.is_file():  # a folder named x.toml is not a preset
                    found[f.stem] = (f, builtin)
    return dict(sorted(found.items()))


def target_path(name_or_path: str) -> Path:
    p = Path(name_or_path).expanduser()
    if p.suffix == ".toml" or os.sep in name_or_path:
        return p
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name_or_path):
        raise PresetError(f"preset name {name_or_path!r}: use letters, digits, '.', '_' or '-'")
    return user_dir() / f"{name_or_path}.toml"


def dumps(res: Resolved, description: str = "", include_paths: bool = False) -> str:
    doc: dict[str, Any] = {"schema": SCHEMA}
    if description:
        doc["description"] = description
    doc.update(res.preset_values(include_paths))
    text = tomli_w.dumps(doc)
    if _SECRET.search(text):
        raise PresetError("refusing to write a preset that contains what looks like a token or API key")
    return text


def save(
    res: Resolved, name_or_path: str, *, force: bool = False, description: str = "", include_paths: bool = True
) -> Path:
    """Write atomically: a temporary file in the same directory, fsync, then rename, so a
    failure leaves the old preset (if any) untouched."""
    path = target_path(name_or_path)
    if path.exists() and not force:
        raise PresetError(f"{path}: already exists (use --force to overwrite)")
    text = dumps(res, description, include_paths)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise PresetError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise PresetError(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    return path


def resolved(p: Preset) -> Resolved:
    """The preset's own choices, resolved; SettingError if they conflict."""
    from .settings import resolve

    return resolve([{k: p.values[k] for k in p.explicit_keys()}], p.explicit_keys())
