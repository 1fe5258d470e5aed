"""Try a finished run in the terminal: each prompt answered by the tuned model and, beside it, by
the base model (the same weights with the adapter disabled), streamed as the tokens come. The
model runs in a process of its own (runs/chat.py starts it); this screen drains its events on
a timer, so keys are answered throughout and escape stops an answer mid-way."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Header, Input, Label, Static

from ...nvml import GpuSource
from ...runs.chat import (
    CONVERSATIONS_FILE,
    LOG_FILE,
    ChatProcess,
    Sampling,
    Turn,
    history,
    parse_sampling,
    save_conversation,
    shown,
)
from ..widgets.footer import KeyFooter
from .base import AppScreen

WHICH = ("tuned", "base")


class SamplingDialog(ModalScreen[Sampling | None]):
    """Temperature, top-p, max new tokens and the system prompt; enter in any field applies them."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: Sampling) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        c = self.current
        with Vertical(classes="modal"):
            yield Label("Sampling (temperature 0 answers greedily, the same every time)", classes="title")
            for name, value in [
                ("temperature", f"{c.temperature:g}"),
                ("top_p", f"{c.top_p:g}"),
                ("max_new_tokens", str(c.max_new_tokens)),
                ("system", c.system),
            ]:
                with Horizontal(classes="samplingrow"):
                    yield Label(name.replace("_", "-"), classes="samplinglabel")
                    yield Input(value, id=f"s-{name}", compact=True)
            yield Label("enter: apply · tab: next field · escape: cancel", id="hint", classes="detail")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        values = {i.id.removeprefix("s-"): i.value for i in self.query(Input) if i.id}
        sampling, problem = parse_sampling(values)
        if problem:
            self.query_one("#hint", Label).update(Text(problem, style="bold red"))
            return
        self.dismiss(sampling)


class ChatScreen(AppScreen):
    AUTO_FOCUS = "#prompt"
    BINDINGS = [
        Binding("escape", "stop_or_back", "Stop/Back", tooltip="stop the answer being written; else back"),
        Binding("ctrl+b", "toggle_base", "Base too", tooltip="answer with the base model beside the tuned one, or not"),
        Binding("ctrl+t", "sampling", "Sampling", tooltip="temperature, top-p, max new tokens, system prompt"),
        Binding("ctrl+s", "save", "Save", tooltip="append the conversation to the run's conversations.jsonl"),
    ]

    def __init__(self, run_dir: Path, gpu_source: GpuSource, sampling: Sampling | None = None) -> None:
        super().__init__(gpu_source)
        self.run_dir = Path(run_dir)
        self.sampling = sampling or Sampling()
        self.chat = ChatProcess(self.run_dir)
        self.turns: list[Turn] = []
        self.ready = False  # the model is loaded (tests wait on it)
        self.adapter = False
        self.compare = True
        self.rid = 0
        self.pending: set[str] = set()  # answers still being written for the latest prompt
        self.ended: str | None = None  # why the generation process is gone

    @property
    def generating(self) -> bool:
        return bool(self.pending)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        yield Static("starting the model…", id="chatstatus")
        with Horizontal(id="panes"):
            for which in WHICH:
                with VerticalScroll(id=f"{which}-pane", classes="pane"):
                    yield Static("", id=f"{which}-text")
        yield Static(self.sampling.line(), id="samplingline")
        yield Input(placeholder="ask the tuned model; enter sends", id="prompt")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.title = "mgtui"
        self.sub_title = f"chat · {self.run_dir.name}"
        self.query_one("#tuned-pane").border_title = "tuned (base + adapter)"
        self.query_one("#base-pane").border_title = "base (adapter disabled)"
        self.chat.start()
        self.set_interval(0.05, self.drain)

    def on_unmount(self) -> None:
        # The model's process ends by itself once asked; the screen does not wait on it.
        threading.Thread(target=self.chat.close, name="chat-close", daemon=True).start()

    # --- the generation process's events ---------------------------------------------------
    def drain(self) -> None:
        events = self.chat.drain()
        if not events:
            return
        for e in events:
            getattr(self, f"_on_{e.get('type')}", lambda e: None)(e)
        self.render_turns()

    def _on_loading(self, e: dict[str, Any]) -> None:
        self.query_one("#chatstatus", Static).update(Text(e.get("detail", "loading…") + "…", style="cyan"))

    def _on_ready(self, e: dict[str, Any]) -> None:
        self.ready, self.adapter = True, bool(e.get("adapter"))
        if not self.adapter:
            self.compare = False
            self.query_one("#tuned-pane").border_title = "tuned (a full fine-tune: no base to compare)"
        self.show_status(f"ready · {e.get('backend')} on {e.get('device')}")
        self.set_class(not self.compare, "-tuned-only")

    def _on_token(self, e: dict[str, Any]) -> None:
        if e.get("id") == self.rid and self.turns:
            turn = self.turns[-1]
            turn.answers[e["which"]] = turn.answers.get(e["which"], "") + e.get("text", "")

    def _on_done(self, e: dict[str, Any]) -> None:
        if e.get("id") != self.rid or not self.turns:
            return
        rate = e["tokens"] / e["seconds"] if e.get("seconds") else 0
        note = f"{e['tokens']} tokens · {rate:.0f} tok/s" + (" · stopped" if e.get("stopped") else "")
        self.turns[-1].done[e["which"]] = note
        self.turns[-1].answers.setdefault(e["which"], "")
        self.pending.discard(e["which"])
        if e.get("stopped"):
            self.pending.clear()
        if not self.pending:
            self.show_status("ready")

    def _on_error(self, e: dict[str, Any]) -> None:
        if "id" in e:
            self.pending.discard(e.get("which", ""))
        self.show_status(e.get("message", "error"), "bold red")

    def _on_exit(self, e: dict[str, Any]) -> None:
        self.ready = False
        self.pending.clear()
        self.ended = f"the model's process ended (exit {e.get('code')}); see {self.run_dir / LOG_FILE}"
        if e.get("code") not in (0, None):
            self.show_status(self.ended, "bold red")

    def show_status(self, text: str, style: str = "green") -> None:
        mode = "tuned and base" if self.compare else "tuned only"
        suffix = f" · {mode} · ctrl+b toggles" if self.adapter and style == "green" else ""
        self.query_one("#chatstatus", Static).update(Text(text + suffix, style=style))

    def render_turns(self) -> None:
        for which in WHICH:
            t = Text()
            for turn in self.turns:
                t.append(f"you: {turn.prompt}\n", style="bold")
                if which in turn.answers or which in self.pending:
                    t.append(shown(turn.answers.get(which, "")) + ("▌" if which in self.pending else "") + "\n")
                if which in turn.done:
                    t.append(turn.done[which] + "\n", style="dim")
                t.append("\n")
            self.query_one(f"#{which}-text", Static).update(t)
            self.query_one(f"#{which}-pane", VerticalScroll).scroll_end(animate=False)

    # --- what the keys do ------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        if not self.ready:
            self.notify(self.ended or "The model is still loading", severity="warning")
            return
        if self.generating:
            self.notify("Still answering: escape stops it", severity="warning")
            return
        event.input.value = ""
        messages = history(self.turns) + [{"role": "user", "content": prompt}]
        self.turns.append(Turn(prompt))
        self.rid += 1
        which = ["tuned", "base"] if self.compare and self.adapter else ["tuned"]
        self.pending = set(which)
        if not self.chat.ask(self.rid, messages, self.sampling, which):
            self.pending.clear()
            self.show_status("the model's process is gone", "bold red")
        else:
            self.show_status("answering… (escape stops)", "cyan")
        self.render_turns()

    def action_stop_or_back(self) -> None:
        if self.generating:
            self.chat.stop(self.rid)
            self.show_status("stopping…", "yellow")
        else:
            self.app.pop_screen()

    def action_toggle_base(self) -> None:
        if not self.adapter:
            self.notify("This run has no adapter to disable: only the tuned model answers", severity="warning")
            return
        self.compare = not self.compare
        self.set_class(not self.compare, "-tuned-only")
        self.show_status("ready" if not self.generating else "answering…", "green" if not self.generating else "cyan")

    def action_sampling(self) -> None:
        def chosen(s: Sampling | None) -> None:
            if s is not None:
                self.sampling = s
                self.query_one("#samplingline", Static).update(s.line())

        self.app.push_screen(SamplingDialog(self.sampling), chosen)

    def action_save(self) -> None:
        if not any(t.answers for t in self.turns):
            self.notify("Nothing to save yet", severity="warning")
            return
        path = self.run_dir / CONVERSATIONS_FILE
        rows = save_conversation(path, self.turns, self.sampling.system)
        self.notify(f"Saved to {path} ({rows} conversation{'s' if rows != 1 else ''}, messages format)")

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Sampling settings", "Temperature, top-p, max new tokens, system (ctrl+t)", self.action_sampling
        )
        yield SystemCommand("Base beside tuned", "Toggle the base model's answers (ctrl+b)", self.action_toggle_base)
        yield SystemCommand(
            "Save the conversation", "As a messages row in conversations.jsonl (ctrl+s)", self.action_save
        )
