"""Export a finished run from the app: what to write (a merged model, a GGUF file, an upload to
the Hub), then the export process's progress, in one dialog. The work runs in a process of its
own (runs/export_job.py starts it); escape cancels it, and nothing is left half-written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Select, Static

from ...runs.export_job import GGUF_TYPES, ExportProcess, export_command

LOG_FILE = "export.log"


class ExportScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", tooltip="close; a running export is cancelled, nothing half-written"),
        Binding("ctrl+r", "export", "Export", priority=True, tooltip="start the export"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.job: ExportProcess | None = None
        self.lines: list[tuple[str, str]] = []
        self.finished = False  # the export process has ended (tests wait on it)

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(f"Export {self.run_dir.name}", classes="title")
            yield Checkbox("merged 16-bit model (safetensors, loads with from_pretrained)", True, id="merged")
            with Horizontal(classes="exportrow"):
                yield Label("GGUF", classes="exportlabel")
                yield Select([(t, t) for t in GGUF_TYPES], prompt="none", id="gguf", compact=True)
            with Horizontal(classes="exportrow"):
                yield Label("Hub repo", classes="exportlabel")
                yield Input(
                    placeholder="org/name: upload (private; token from HF_TOKEN or hf auth login)",
                    id="repo",
                    compact=True,
                )
            yield Checkbox("public repo", False, id="public")
            yield Checkbox("replace an existing export", False, id="force")
            yield Label(f"writes to {self.run_dir / 'export'}", classes="detail")
            yield Static("", id="exportlog")
            yield Label("ctrl+r: export · escape: close (cancels a running export)", classes="detail")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_export()

    def action_export(self) -> None:
        if self.job is not None and self.job.running:
            return
        select = self.query_one("#gguf", Select)
        gguf = "" if select.is_blank() else str(select.value)
        merged = self.query_one("#merged", Checkbox).value
        repo = self.query_one("#repo", Input).value.strip()
        if not merged and not gguf and not repo:
            self.say("choose a merged model, a GGUF type or a Hub repo", "bold red")
            return
        cmd = export_command(
            self.run_dir,
            merged,
            gguf,
            repo,
            self.query_one("#public", Checkbox).value,
            self.query_one("#force", Checkbox).value,
        )
        self.lines.clear()
        self.finished = False
        self.job = ExportProcess(cmd, self.run_dir / LOG_FILE)
        self.job.start()
        self.say("starting…", "cyan")

    def on_mount(self) -> None:
        self.set_interval(0.1, self.drain)

    def drain(self) -> None:
        if self.job is None:
            return
        for e in self.job.drain():
            self.show_event(e)

    def show_event(self, e: dict[str, Any]) -> None:
        kind = e.get("type")
        if kind == "phase":
            self.say(f"{e['phase']}: {e.get('detail', '')}", "cyan")
        elif kind == "message":
            self.say(e.get("message", ""), "yellow")
        elif kind == "error":
            self.say(e.get("message", ""), "bold red")
        elif kind == "done":
            for w in e.get("written", []):
                self.say(f"written: {w}", "bold green")
        elif kind == "exit":
            self.finished = True
            if e.get("code") not in (0, None) and not any(style == "bold red" for _, style in self.lines):
                self.say(f"the export ended with exit {e['code']}: see {self.run_dir / LOG_FILE}", "bold red")

    def say(self, line: str, style: str) -> None:
        self.lines.append((line, style))
        t = Text()
        for text, st in self.lines[-8:]:
            t.append(text + "\n", style=st)
        self.query_one("#exportlog", Static).update(t)

    def action_cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.notify("Export cancelled: nothing half-written was left")
        self.dismiss(None)
