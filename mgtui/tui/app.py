"""The Textual app: the form first, the run screen while training, help and the palette."""

from __future__ import annotations

import gc
import select
import sys
from pathlib import Path
from typing import Any, Iterable

from textual import events
from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from ..errors import UsageError
from ..nvml import GpuSource, NvmlSource
from ..runs import rundir
from .messages import (
    AdviceChosen,
    AttachRequested,
    ChatRequested,
    CompareRequested,
    ExportRequested,
    RunsRequested,
    StartRequested,
)
from .screens.base import AppScreen
from .screens.form import FormScreen
from .textual_private import SafeCommandPalette, WorkerGuard, guard_option_list_paging, guard_select_label

# Keys that are not bindings of their own: said once here, beside those generated from the bindings.
FORM_KEYS = [
    ("tab / shift+tab", "next / previous field"),
    ("→", "at a field's end: take its grey completion (paths, the demo, models and datasets in your HF cache)"),
    ("enter on gpus", "tick the GPUs to train on (space ticks, enter confirms)"),
]
NOTES = """\
Runs keep training when the terminal closes or SSH drops. `mgtui`
lists the runs queued, still going or finished since you last
looked; `mgtui attach OUTPUT_DIR` opens one directly; ctrl+l on
the form lists every run, to compare them.

The VRAM panel: fits (green), tight at 90% or more (yellow), over
(red) with the guide's "Out of Memory" steps, each with its new
estimate. Figures are GiB, labelled GB."""


def binding_lines(bindings: Iterable[Binding | tuple[str, ...]]) -> list[tuple[str, str]]:
    """(keys, what they do) for each binding, from its tooltip (else its description); a numbered
    family (alt+1 … alt+6) is one line."""
    lines: list[tuple[str, str]] = []
    family: dict[str, list[str]] = {}
    for b in bindings:
        if not isinstance(b, Binding):
            continue
        what = b.tooltip or b.description
        base = b.action.split("(")[0]
        if "(" in b.action:
            if base in family:
                family[base].append(b.key)
                continue
            family[base] = [b.key]
        lines.append((b.key, what))
    for keys in family.values():
        if len(keys) > 1:
            first = keys[0]
            i = next(n for n, (k, _) in enumerate(lines) if k == first)
            lines[i] = (f"{first}..{keys[-1].split('+')[-1]}", lines[i][1])
    return lines


def help_text() -> str:
    from .screens.chat import ChatScreen  # these screens' modules load when first needed
    from .screens.compare import CompareScreen
    from .screens.run import RunScreen
    from .screens.runs import RunsScreen

    def section(title: str, rows: list[tuple[str, str]]) -> str:
        return title + "\n" + "\n".join(f"  {k:<17} {w}" for k, w in rows)

    app_rows = [*binding_lines(MgApp.BINDINGS), ("ctrl+p", "command palette: every action by name")]
    return "\n\n".join(
        [
            "mgtui sets up and runs LoRA/QLoRA fine-tuning, all from the keyboard.",
            section("Form", [*FORM_KEYS, *binding_lines(FormScreen.BINDINGS)]),
            section("Run", binding_lines(RunScreen.BINDINGS)),
            section("Runs (ctrl+l on the form)", binding_lines(RunsScreen.BINDINGS)),
            section("Compare", binding_lines(CompareScreen.BINDINGS)),
            section("Chat (t on a finished run)", binding_lines(ChatScreen.BINDINGS)),
            section("Anywhere", app_rows),
            NOTES,
        ]
    )


class MgApp(WorkerGuard):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it
    TITLE = "mgtui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (72, "-normal"), (150, "-wide")]
    BINDINGS = [
        Binding("f1", "help", "Help", tooltip="this help"),
        # Not in the footer: at 80 columns the form's own keys and f1 fill it (f1 and the palette say ctrl+q).
        Binding(
            "ctrl+q", "quit_app", "Quit", priority=True, show=False, tooltip="quit (a live run asks: detach or stop)"
        ),
    ]

    def __init__(
        self,
        chosen: dict[str, Any] | None = None,
        target: tuple[str, float | None] | None = None,
        gpu_source: GpuSource | None = None,
        attach: Path | None = None,
        chat: Path | None = None,
        notice: str | None = None,
        scan_limit: int = 20000,
        offer_runs: bool = True,
    ) -> None:
        super().__init__()
        self.chosen = chosen or {}
        self.target = target
        self.gpu_source = gpu_source or NvmlSource()
        self.attach_to = attach
        self.chat_with = chat
        self.notice = notice
        self.scan_limit = scan_limit
        self.offer_runs = offer_runs

    async def on_event(self, event: events.Event) -> None:
        # Keys typed while the app closes reach it after its screens are gone (a burst after ctrl+q):
        # they have nothing to act on, where Textual would raise ScreenStackError.
        if isinstance(event, events.Key) and not self.screen_stack:
            return
        await super().on_event(event)

    def worker_failed(self, error: Exception) -> None:
        """A background task failed: one line on screen, the traceback in the state directory's
        app-errors.log; the app and any run go on."""
        import traceback

        from ..runs.registry import registry_dir

        log = registry_dir().parent / "app-errors.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a", encoding="utf-8") as f:
                f.write("".join(traceback.format_exception(error)) + "\n")
            where = f"; details in {log}"
        except OSError:
            where = ""
        first = str(error).splitlines()[0][:200] if str(error) else ""
        self.notify(f"A background task failed ({type(error).__name__}: {first}){where}", severity="error", timeout=15)

    def get_default_screen(self) -> Screen[Any]:
        # The form is the bottom screen itself: a blank default screen under it cost a frame.
        # The guards go in first: this runs before on_mount, and they must precede any widget.
        guard_option_list_paging()
        guard_select_label()
        return FormScreen(self.chosen, self.gpu_source, self.target, self.scan_limit)

    def on_mount(self) -> None:
        if not self.is_headless and sys.__stdin__ is not None and sys.__stdin__.isatty():
            self._hangup = select.poll()
            self._hangup.register(sys.__stdin__.fileno(), select.POLLIN)
            self.set_interval(1.0, self._leave_if_terminal_gone)
        if self.notice:
            self.notify(self.notice, title="Preset not loaded", severity="error", timeout=10)
        if self.chat_with is not None:
            self.open_chat(self.chat_with)
        elif self.attach_to is not None:
            self.attach(self.attach_to)
        elif self.offer_runs:
            self.call_after_refresh(self.offer_listed_runs)

    def _leave_if_terminal_gone(self) -> None:
        """A terminal that goes away without a hang-up signal reaching us (the app started in a
        session of its own) leaves Textual reading end-of-file in a busy loop, a core at 100% for
        ever: leave instead. A run goes on in its own session, as after any quit."""
        if any(events & select.POLLHUP for _, events in self._hangup.poll(0)):
            self.exit()

    def offer_listed_runs(self) -> None:
        from ..runs.registry import list_runs  # after the first frame, as the dialogs are
        from .screens.modals import PickOne

        runs = list_runs()
        if not runs:
            return
        options = [(r.output_dir, f"{r.state:<8} {r.output_dir}") for r in runs]
        by_dir = {r.output_dir: r for r in runs}

        def details(key: str) -> str:
            r = by_dir[key]
            if r.state == "queued":
                from ..runs.queue import place_of

                place = place_of(Path(r.output_dir))
                return f"queued #{place[0]}: waits for {place[1]}" if place else "queued"
            return f"started {r.started}, pid {r.pid}: {'still training' if r.state == 'running' else r.state}"

        self.push_screen(
            PickOne(
                "Your runs: queued, still going, or finished since you last looked",
                options,
                details,
                "enter: attach · escape: go to the form",
            ),
            lambda d: self.attach(Path(d)) if d else None,
        )

    # --- what screens ask for ------------------------------------------------------------------
    def on_start_requested(self, message: StartRequested) -> None:
        try:
            from ..runs import launch

            if message.queue:
                run_dir, place, noticed = launch.enqueue(message.res, message.estimate_gb, source=self.gpu_source)
                self.notify(
                    f"Queued #{place}: {run_dir}. It starts when the GPUs have room; ctrl+l lists it"
                    + (f"\n{noticed}" if noticed else ""),
                    timeout=10,
                )
                return
            run_dir, proc, notice = launch.start(message.res, source=self.gpu_source)
        except launch.LaunchError as e:
            self.notify(str(e), severity="error", timeout=10)
            return
        if notice:
            self.notify(notice, timeout=8)
        from .screens.run import RunScreen  # imported when first needed: the form opens faster

        self.push_screen(RunScreen(run_dir, self.gpu_source, message.estimate_gb, proc))

    def on_attach_requested(self, message: AttachRequested) -> None:
        self.attach(message.run_dir)

    def on_runs_requested(self, message: RunsRequested) -> None:
        from .screens.runs import RunsScreen  # loaded when first opened: the form opens faster

        self.push_screen(RunsScreen(self.gpu_source))

    def on_compare_requested(self, message: CompareRequested) -> None:
        from .screens.compare import CompareScreen

        self.push_screen(CompareScreen(self.gpu_source, message.runs))

    def on_export_requested(self, message: ExportRequested) -> None:
        from .screens.export import ExportScreen

        if self.has_weights(message.run_dir):
            self.push_screen(ExportScreen(message.run_dir))

    def on_chat_requested(self, message: ChatRequested) -> None:
        self.open_chat(message.run_dir)

    def open_chat(self, run_dir: Path) -> None:
        from .screens.chat import ChatScreen

        if self.has_weights(run_dir):
            self.push_screen(ChatScreen(run_dir, self.gpu_source))

    def has_weights(self, run_dir: Path) -> bool:
        """A trained model to chat with or export; else why not, said."""
        problem = rundir.weights_problem(run_dir)
        if problem:
            self.notify(problem, severity="error", timeout=10)
        return problem is None

    def attach(self, run_dir: Path) -> None:
        if not rundir.is_run_dir(run_dir):
            self.notify(f"{run_dir}: not a run directory", severity="error")
            return
        from .screens.run import RunScreen

        self.push_screen(RunScreen(run_dir, self.gpu_source))

    def on_advice_chosen(self, message: AdviceChosen) -> None:
        while not isinstance(self.screen, FormScreen) and len(self.screen_stack) > 1:
            self.pop_screen()
        form = self.screen
        if isinstance(form, FormScreen):
            form.model.apply({**message.changes, "resume": False})
            form.refresh_form()
            self.notify(f"Applied: {message.title}")

    # --- app-wide actions --------------------------------------------------------------------
    def action_command_palette(self) -> None:
        if self.use_command_palette and not SafeCommandPalette.is_open(self):
            self.push_screen(SafeCommandPalette(id="--command-palette"))

    def action_help(self) -> None:
        from .screens.modals import HelpScreen

        self.push_screen(HelpScreen(help_text()))

    def action_quit_app(self) -> None:
        screen = self.screen
        if isinstance(screen, AppScreen):  # a live run asks first: detach or stop
            screen.leave_then(self.exit)
        else:
            self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, AppScreen):
            yield from screen.palette_commands()
        yield SystemCommand("Help", "Keys and what the panels mean (f1)", self.action_help)


def run_app(
    preset: str | None = None,
    gpu_memory: float | None = None,
    gpu_name: str | None = None,
    attach: str | None = None,
    chat: str | None = None,
) -> int:
    chosen: dict[str, Any] = {}
    notice = None
    if preset:
        from .. import presets

        try:
            p = presets.load(preset)
            chosen = {k: p.values[k] for k in p.explicit_keys()}
        except presets.PresetError as e:
            notice = str(e)  # the app still opens, with the defaults, and says why
    if attach and not rundir.is_run_dir(Path(attach).expanduser()):
        raise UsageError(f"{attach}: not a run directory (no {rundir.RUN_FILE} or events file)")
    target = None
    if gpu_memory is not None or gpu_name:
        from ..estimate.command import EstimateInputError, gpu_target

        try:
            gib, label = gpu_target(gpu_memory, gpu_name)
        except EstimateInputError as e:
            raise UsageError(str(e)) from None
        target = (label + " (planning)", gib)
    if chat:
        problem = rundir.weights_problem(Path(chat).expanduser())
        if problem:
            raise UsageError(problem)
    app = MgApp(
        chosen,
        target,
        attach=Path(attach).expanduser() if attach else None,
        chat=Path(chat).expanduser() if chat else None,
        notice=notice,
    )
    # What exists now (modules, classes, the settings table) lives as long as the app: moved out of
    # the collector's sight, it is not walked at every collection while the form is built.
    gc.freeze()
    app.run()
    return 0
