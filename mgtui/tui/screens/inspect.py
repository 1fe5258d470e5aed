"""The inspector: a row of the form's dataset exactly as the trainer gets it (data/inspect.py), in a
process of its own so the app never imports a tokenizer's heavy stack or waits on one. Trained
tokens bold green, masked ones dim, special tokens magenta, the cut at max-seq-length struck
through. n/p (or →/←) move between rows, g jumps to one, r shows the raw ids, escape closes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...data.inspect import header, ids_table
from ...runs.json_process import JsonLinesProcess


def styled(pieces: list[dict[str, Any]]) -> Text:
    t = Text()
    for p in pieces:
        text = p["text"].replace("\n", "↵\n") if not p["special"] else p["text"]
        if p["cut"]:
            style = "strike dim"
        elif p["special"]:
            style = "bold magenta" if p["trained"] else "magenta"
        else:
            style = "bold green" if p["trained"] else "dim"
        t.append(text, style=style)
    return t


class InspectScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    InspectScreen { background: $background; }
    #inspect-head { height: auto; padding: 0 1; }
    #inspect-warn { height: auto; max-height: 5; padding: 0 1; }
    #inspect-scroll { height: 1fr; padding: 0 1; }
    #inspect-keys { height: 1; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", tooltip="back to the form"),
        Binding("n,right", "move(1)", "Next", tooltip="the next row"),
        Binding("p,left", "move(-1)", "Previous", tooltip="the previous row"),
        Binding("g", "jump", "Jump", tooltip="go to a row by its number in the file"),
        Binding("r", "raw", "Raw ids", tooltip="one line per token: position, id, label, text"),
    ]

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__()
        self.args = args
        self.proc = JsonLinesProcess()
        self.summary: dict[str, Any] | None = None
        self.row: dict[str, Any] | None = None
        self.index = 0
        self.raw = False
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("reading the rows…", id="inspect-head")
        yield Static("", id="inspect-warn")
        with VerticalScroll(id="inspect-scroll"):
            yield Static("", id="inspect-body")
        yield Input(placeholder="row number, then enter", id="inspect-jump", compact=True)
        yield Static(
            "[b]n[/b]/[b]p[/b] next/previous · [b]g[/b] jump · [b]r[/b] raw ids · [b]esc[/b] close · "
            "[bold green]trained[/] [dim]masked[/] [magenta]special[/]",
            id="inspect-keys",
        )

    def on_mount(self) -> None:
        self.query_one("#inspect-jump").display = False
        cmd = [sys.executable, "-m", "mgtui.data.inspect", json.dumps(self.args)]
        log = self.app_log()
        self.proc.spawn(cmd, log, subprocess.PIPE)
        self.set_interval(0.05, self.drain)

    def app_log(self) -> Any:
        import tempfile
        from pathlib import Path

        return Path(tempfile.gettempdir()) / "mgtui-inspect.log"

    @property
    def ready(self) -> bool:
        """A row, or the reason there is none, is shown (tests wait on it)."""
        return self.row is not None or self.error is not None

    def drain(self) -> None:
        for message in self.proc.drain():
            if "refused" in message:
                self.error = message["refused"]
            elif "ready" in message:
                self.summary = message["ready"]
                if self.summary["rows"]:
                    self.ask(0)
                else:
                    self.error = "no row to show"
            elif "row" in message:
                self.row, self.index = message["row"], message["index"]
            elif message.get("type") == "exit" and self.summary is None and self.error is None:
                self.error = "the inspector stopped without a word (see mgtui-inspect.log)"
            self.show()

    def ask(self, index: int) -> None:
        proc = self.proc.proc
        if proc is not None and proc.stdin is not None and self.proc.running:
            proc.stdin.write(json.dumps({"row": index}) + "\n")
            proc.stdin.flush()

    def show(self) -> None:
        head, warn, body = (self.query_one(f"#inspect-{n}", Static) for n in ("head", "warn", "body"))
        if self.error:
            head.update(Text(self.error, style="bold red"))
            return
        if self.summary is None or self.row is None:
            return
        head.update(Text(header(self.summary, self.row, self.index), style="bold"))
        said = [*([self.summary["skipped"]] if self.summary["skipped"] else []), *self.summary["warnings"]]
        said += self.row["warnings"]
        if not self.summary["masked"]:
            said.append("every token is trained (nothing masked)")
        warn.update(Text("\n".join(f"⚠ {w}" for w in said), style="yellow"))
        warn.display = bool(said)
        body.update(self.body())

    def body(self) -> Text:
        """The row; a preference row stacked (the prompt, then each reply), which fits 80 columns."""
        assert self.row is not None
        parts = self.row["sections"] or [{"name": "", "pieces": self.row["pieces"]}]
        out = Text()
        for part in parts:
            if part["name"]:
                out.append(f"{'' if part is parts[0] else chr(10)}── {part['name']} ──\n", style="bold")
            if self.raw:
                out.append("\n".join(["  pos      id   label  text", *ids_table(part["pieces"])]))
            else:
                out.append_text(styled(part["pieces"]))
        return out

    def action_move(self, step: int) -> None:
        if self.summary and self.summary["rows"]:
            self.ask(max(0, min(self.index + step, self.summary["rows"] - 1)))

    def action_raw(self) -> None:
        self.raw = not self.raw
        self.show()

    def action_jump(self) -> None:
        jump = self.query_one("#inspect-jump", Input)
        jump.display = True
        self.call_after_refresh(jump.focus)  # focusable once it is laid out

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        event.input.value, text = "", event.value.strip()
        if text.isdigit():
            self.request_number(int(text))

    def request_number(self, number: int) -> None:
        """The row with this number in the file: asked of the process by its index among usable rows."""
        proc = self.proc.proc
        if proc is not None and proc.stdin is not None and self.proc.running:
            proc.stdin.write(json.dumps({"number": number}) + "\n")
            proc.stdin.flush()

    def action_close(self) -> None:
        jump = self.query_one("#inspect-jump", Input)
        if jump.display:
            jump.display = False
            return
        if self.proc.proc is not None and self.proc.running:
            self.proc.proc.kill()
        self.dismiss(None)
