"""Renders mgtui/setting_types.py from the settings table. Run it after adding a setting:
uv run python tests/settings_render.py
"""

from __future__ import annotations

from pathlib import Path


def render(settings) -> str:
    names = "\n".join(f'    "{s.name}",' for s in settings)
    fields = "\n".join(f"    {s.name}: {s.type.__name__}" for s in settings)
    return f'''"""The settings' names and types, for the type checker: generated from the table in
mgtui/settings.py (tests/test_settings.py fails, printing this file anew, when they differ)."""

from __future__ import annotations

from typing import Literal, TypedDict

SettingName = Literal[
{names}
]


class SettingValues(TypedDict):
{fields}
'''


TARGET = Path(__file__).resolve().parent.parent / "mgtui" / "setting_types.py"

if __name__ == "__main__":
    from mgtui.settings import SETTINGS

    TARGET.write_text(render(SETTINGS))
