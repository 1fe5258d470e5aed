"""What screens ask of the app. A screen posts one; it bubbles to MgApp, which acts on it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

from ..settings import Resolved

if TYPE_CHECKING:  # the runs screen's module loads it when first opened
    from ..runs.history import RunRecord


class StartRequested(Message):
    """Start training with these settings (the form has checked them), or queue them."""

    def __init__(self, res: Resolved, estimate_gb: float | None, queue: bool = False) -> None:
        super().__init__()
        self.res = res
        self.estimate_gb = estimate_gb
        self.queue = queue


class AttachRequested(Message):
    """Follow the run in this directory."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir


class AdviceChosen(Message):
    """Back to the form with an out-of-memory step's changes applied."""

    def __init__(self, changes: dict[str, Any], title: str) -> None:
        super().__init__()
        self.changes = changes
        self.title = title


class RunsRequested(Message):
    """Open the runs screen: every run, to open, compare or tidy up."""


class CompareRequested(Message):
    """Compare these runs side by side."""

    def __init__(self, runs: list[RunRecord]) -> None:
        super().__init__()
        self.runs = runs


class ChatRequested(Message):
    """Try this run's model: the chat screen."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir


class ExportRequested(Message):
    """Export this run: a merged model, a GGUF file, an upload."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
