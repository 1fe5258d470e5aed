"""What every mgtui screen offers the app: its commands for the palette, and how to leave it."""

from __future__ import annotations

from typing import Callable, Iterable

from textual.app import SystemCommand
from textual.screen import Screen

from ...nvml import GpuSource


class AppScreen(Screen):
    def __init__(self, gpu_source: GpuSource) -> None:
        super().__init__()
        self.gpu_source = gpu_source  # NVML, or a fixed reading in tests

    def action_toggle_panels(self) -> None:
        """Under 72 columns the side panels are hidden (app.tcss): f2 swaps them with the main column."""
        self.toggle_class("-panels")

    def palette_commands(self) -> Iterable[SystemCommand]:
        """This screen's actions for the command palette, beside the app's own."""
        return ()

    def leave_then(self, then: Callable[[], None]) -> None:
        """Leave (the app quits): at once, unless the screen has something to ask first."""
        then()
