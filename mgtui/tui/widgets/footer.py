"""The key bar under every screen: Textual's Footer, cheaper to build.

Textual's Footer rebuilds all its keys whenever a screen's bindings may have changed (every focus
move), and each key then restyles itself once to take the compact look. With the form's dozen keys
that was a fifth of the time to the first frame (benchmarks/app_startup.py). Here each key is born
with its final look, and the bar is rebuilt only when the keys it shows did change.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from ..textual_private import FooterKey

Shown = tuple[tuple[str, str, str, bool, str], ...]


def keys_shown(screen: Screen[Any]) -> Shown:
    """What the bar shows for the screen now: key, description, action, enabled, tooltip."""
    return tuple(
        (binding.key, binding.description, binding.action, enabled, tooltip)
        for _, binding, enabled, tooltip in screen.active_bindings.values()
        if binding.show
    )


class KeyFooter(Footer):
    def __init__(self, *, compact: bool = True) -> None:
        super().__init__(compact=compact)
        self._shown: Shown | None = None  # what the last build showed; None before the first

    def compose(self) -> ComposeResult:
        built = False
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                built = True
                widget.set_reactive(FooterKey.compact, self.compact)
                widget.set_class(self.compact, "-compact", update=False)
            yield widget
        self._shown = keys_shown(self.screen) if built else None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if self._shown is not None and screen is self.screen and keys_shown(screen) == self._shown:
            return
        super().bindings_changed(screen)
