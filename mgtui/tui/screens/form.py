"""The settings screen: the fields generated from the settings table, the live VRAM panel, the
dataset panel and the command preview. Its dialogs live beside it: form_presets.py (load, save),
form_gpus.py (the two GPU pickers) and form_start.py (Start, and an output directory in use)."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any, Callable, Iterable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Checkbox, Header, Input, Label, Select, Static

from ...form_model import FormModel
from ...gpu_procs import HIDDEN_GIB, others_gib
from ...nvml import GpuReading, GpuSample, GpuSource
from ...settings import BY_NAME, GROUPS, SETTINGS, Resolved, Setting
from ...units import comma_list, gib
from ..messages import RunsRequested
from ..widgets.dataset import DatasetPanel
from ..widgets.fields import FieldGroup, FieldInput, label_of
from ..widgets.footer import KeyFooter
from ..widgets.vram import VramPanel
from .base import AppScreen

if TYPE_CHECKING:  # the estimator, the device checks and the dialogs load after the first frame
    from ...estimate import Lookup, MemoryPlan
    from .form_gpus import GpuPickers
    from .form_presets import PresetDialogs
    from .form_start import StartFlow

QUALITY_HELP = "quality mode sets: 16-bit, checkpointing true, adamw_torch, RSLoRA when r >= 32"


FIRST_FRAME_ROWS = 1  # settings drawn before the form answers keys; the rest follow


class FormScreen(AppScreen):
    # Focused as the screen activates, before the first frame: a later focus() repaints once more.
    AUTO_FOCUS = "#i-base_model"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", priority=True, tooltip="start the run"),
        Binding("ctrl+o", "load_preset", "Load", tooltip="load a preset"),
        Binding("ctrl+s", "save_preset", "Save", tooltip="save the form as a preset"),
        Binding("ctrl+y", "copy_command", "Copy", tooltip="copy the command line (OSC 52: works over SSH)"),
        Binding("ctrl+g", "pick_planning_card", "GPU", tooltip="choose the GPU to plan for"),
        Binding("ctrl+t", "toggle_quality", "Quality", tooltip="toggle quality mode"),
        Binding("ctrl+l", "runs", "Runs", tooltip="every run: open, compare, archive, delete"),
        Binding("f3", "inspect", "Inspect", show=False, tooltip="the dataset's rows exactly as the trainer gets them"),
        Binding(
            "ctrl+b",
            "queue",
            "Queue",
            priority=True,
            show=False,  # the footer is full at 80 columns; Start offers it when the GPU is busy
            tooltip="queue the run: it starts by itself when the GPUs have room (survives logout)",
        ),
        Binding(
            "f2",
            "toggle_panels",
            "Panels",
            show=False,
            tooltip="under 72 columns: the GPU memory and dataset panels, or the fields",
        ),
        *[
            Binding(
                f"alt+{i}",
                f"advise({i})",
                f"Apply step {i}",
                show=False,
                tooltip="apply the VRAM panel's out-of-memory step N",
            )
            for i in range(1, 7)
        ],
    ]

    def __init__(
        self,
        chosen: dict[str, Any],
        gpu_source: GpuSource,
        target: tuple[str, float | None] | None = None,
        scan_limit: int = 20000,
    ) -> None:
        super().__init__(gpu_source)
        self.model = FormModel(chosen)
        self.target = target  # (label, GiB) chosen by flag or picker; None = the detected GPU
        self.gpus: GpuReading | None = None
        self.found: Lookup | None = None
        self.plan: MemoryPlan | None = None
        self._debounce_timers: dict[str, Timer] = {}
        self.groups: list[FieldGroup] = []
        self._deferred: list[tuple[str | None, FieldGroup]] = []  # (its title, if it starts a group)
        self.mounted_groups: list[FieldGroup] = []
        self.dataset_panel = DatasetPanel(scan_limit, id="dataset")

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        with Horizontal(id="main"):
            with VerticalScroll(id="form"):
                # The first frame holds the first row only; the other rows follow a group per frame
                # once it is up and answering keys (composing ~230 widgets first took 1.7x a bare
                # Textual app to start; see benchmarks/app_startup.py).
                for i, group in enumerate(GROUPS):
                    rows = [s for s in SETTINGS if s.group == group]
                    if i == 0:
                        yield Label(group, classes="group")
                        yield self._field_group(rows[:FIRST_FRAME_ROWS])
                        self._deferred.append((None, self._field_group(rows[FIRST_FRAME_ROWS:])))
                    else:
                        self._deferred.append((group, self._field_group(rows)))
            with VerticalScroll(id="side"):
                yield Label("GPU memory", classes="group")
                yield VramPanel(id="vram")
                yield Label("Dataset", classes="group", id="dataset-title")
                yield self.dataset_panel
        yield Static("", id="helpline")
        yield Static("", id="command")
        yield KeyFooter()  # every key fits in 80 columns

    def on_mount(self) -> None:
        self.title = "mgtui"
        self.sub_title = "settings"
        # Everything else waits until the first frame is up and answering keys: worker threads
        # (NVML, lookup, scan) would otherwise compete with it for the interpreter.
        self.set_timer(0.2, self._after_first_frame)

    def _after_first_frame(self) -> None:
        self.read_gpus()
        self.schedule_lookup(0)
        self.follow_dataset(0)
        self._mount_next_group()

    # --- background work: never in the way of the first frame or of a keystroke --------------
    @work(thread=True, exclusive=True, group="gpus")
    def read_gpus(self) -> None:
        reading = self.gpu_source.read()
        from ...cuda_check import torch_build

        torch_build()  # read torch/version.py here, off the UI thread (cached; torch is never imported)
        self.app.call_from_thread(self._got_gpus, reading)

    def _got_gpus(self, reading: GpuReading) -> None:
        self.gpus = reading
        self.refresh_form()
        problem = self.device_problem()
        if problem:
            self.notify(problem, title="No run can start here", severity="error", timeout=20)

    def device_problem(self) -> str | None:
        """Why a run started here could not use this machine's GPUs (the engine refuses the same)."""
        if self.gpus is None:
            return None
        from ...cuda_check import problems_here

        found = problems_here(self.gpus, self.model.value("gpus"))
        return found[0] if found else None

    def _debounce(self, key: str, delay: float, callback: Callable[[], object]) -> None:
        """Run `callback` once typing pauses for `delay` seconds (a new call restarts the wait)."""
        if key in self._debounce_timers:
            self._debounce_timers[key].stop()
        self._debounce_timers[key] = self.set_timer(max(delay, 0.01), callback)

    def schedule_lookup(self, delay: float = 0.4) -> None:
        self._debounce("lookup", delay, self._lookup)

    @work(thread=True, exclusive=True, group="lookup")
    def _lookup(self) -> None:
        base = self.model.value("base_model")
        from ...estimate import lookup

        found = lookup(base)
        self.app.call_from_thread(self._got_lookup, base, found)

    def _got_lookup(self, base: str, found: Lookup) -> None:
        if base == self.model.value("base_model"):
            self.found = found
            self.refresh_estimate()

    def follow_dataset(self, delay: float = 0.4) -> None:
        m = self.model
        self.dataset_panel.follow(
            m.value("dataset"),
            m.value("dataset_format"),
            m.value("base_model"),
            m.value("chat_template"),
            m.value("max_seq_length"),
            delay,
            m.value("columns"),
            m.value("train_on_responses_only"),
            m.value("method"),
        )

    def on_dataset_panel_changed(self, event: DatasetPanel.Changed) -> None:
        self.refresh_all_fields()  # the truncation note under max-seq-length

    # --- edits -------------------------------------------------------------------------------
    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        name = setting_name(event.input)
        if isinstance(event.input, FieldInput):
            event.input.synced = event.value
        if event.value == self.model.display(name) and name not in self.model.field_errors:
            return
        self.model.set_text(name, event.value)
        self._after_edit(name)

    @on(Select.Changed)
    def _picked(self, event: Select.Changed) -> None:
        name = setting_name(event.select)
        # Selects announce their initial value on mount: only a real change counts as a choice.
        if name and event.value is not Select.BLANK and event.value != self.model.value(name):
            self.model.set_value(name, event.value)
            self._after_edit(name)

    @on(Checkbox.Changed)
    def _toggled(self, event: Checkbox.Changed) -> None:
        name = setting_name(event.checkbox)
        if event.value != self.model.value(name):
            self.model.set_value(name, event.value)
            self._after_edit(name)

    def _after_edit(self, name: str) -> None:
        self.refresh_form()
        if name == "base_model":
            self.found = None
            self.schedule_lookup()

    def on_descendant_focus(self, event) -> None:
        self.show_help()
        # At 80x24 the side panel holds more than it shows: bring up the part about the field in hand.
        name = setting_name(event.widget)
        if name in ("dataset", "dataset_format"):
            self.query_one("#side").scroll_to_widget(self.query_one("#dataset-title"), animate=False, top=True)
        elif name in BY_NAME:
            self.query_one("#side").scroll_home(animate=False)

    def on_descendant_blur(self, event) -> None:
        if isinstance(event.widget, Input):  # typing is over: show the value as the command line does
            self.refresh_all_fields()

    def on_screen_resume(self) -> None:
        # Focus given while another screen covered the form (an attach at start-up) comes back
        # without a focus event: the help line would stay empty until the next move.
        self.show_help()

    def show_help(self) -> None:
        setting = BY_NAME.get(setting_name(self.focused))
        if setting is None:
            return
        text = Text(f"{label_of(setting.name)}: ", style="bold")
        text.append(setting.help)
        if setting.name == "quality_mode":
            text = Text(QUALITY_HELP, style="bold")
        self.query_one("#helpline", Static).update(text)

    # --- rendering ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Every group mounted and the background lookups settled (tests and snapshots wait on it)."""
        return len(self.mounted_groups) == len(self.groups) and self.found is not None and self.dataset_panel.settled

    def _mount_next_group(self) -> None:
        if self._deferred:
            title, group = self._deferred.pop(0)
            form = self.query_one("#form", VerticalScroll)
            if title:
                form.mount(Label(title, classes="group"), group)
            else:  # the rest of the first group, under its title
                form.mount(group)
            self.call_after_refresh(self._mount_next_group)  # one group per frame: keys interleave

    def _field_group(self, rows: list[Setting]) -> FieldGroup:
        group = FieldGroup(rows, self.model.value, self._group_ready)
        self.groups.append(group)
        return group

    def _group_ready(self, group: FieldGroup) -> None:
        self.mounted_groups.append(group)
        self.refresh_fields(group)
        if len(self.mounted_groups) == 1:
            self.refresh_estimate()
            self.refresh_command()

    def refresh_form(self) -> None:
        self.refresh_all_fields()
        self.refresh_estimate()
        self.refresh_command()
        self.follow_dataset()  # rescans only when the data or the model changed

    def refresh_all_fields(self) -> None:
        for group in self.mounted_groups:
            self.refresh_fields(group)

    def refresh_fields(self, group: FieldGroup) -> None:
        m = self.model
        errors = m.errors
        group.show_for_method(m.value("method"))
        for s in group.settings:
            note = m.quality_note(s.name)
            if s.name == "max_seq_length":
                note = self.dataset_panel.truncation(m.value("max_seq_length"))
            if s.name == "gpus" and self.gpus is not None:
                note = (
                    "detected: "
                    + ", ".join(f"{g.index}: {g.name} {gib(g.memory_total):.0f} GB" for g in self.gpus.gpus)
                    if self.gpus.gpus
                    else f"no GPU: {self.gpus.error}"
                )
            est = self.plan.estimate if self.plan else None
            if s.name == "output_dir" and m.resolved and est and self.dataset_panel.report is not None:
                from ...runs.launch import disk_warning  # the same warning model-garden train prints

                rows = self.dataset_panel.report.rows
                note = disk_warning(m.resolved, rows, est.trainable_params, len(self.detected))
            if s.name == "nproc_per_node" and m.resolved is not None:
                world = m.resolved.world_size(len(self.detected))
                backend, why = self.backend(m.resolved)
                note = (
                    f"{world} process{'es' if world > 1 else ''} · {backend}"
                    + (f" ({why})" if why else "")
                    + f" · effective batch {m.resolved.effective_batch * world}"
                )
            if s.name == "quality_mode" and m.value("quality_mode") and m.resolved is not None:
                note = (
                    "sets " + ", ".join(f"{label_of(k)}={v}" for k, v in m.resolved.quality_set.items())
                    if m.resolved.quality_set
                    else "nothing left to set: you chose those fields"
                )
            error = errors.get(s.name) or (self.device_problem() if s.name == "gpus" else None)
            group.show(s, m.display(s.name), m.value(s.name), error, note, s.name in m.chosen, s.name in m.texts)

    def refresh_command(self) -> None:
        res = self.model.resolved
        widget = self.query_one("#command", Static)
        if res is None or not self.model.valid:
            bad = "; ".join(f"{label_of(k)}: {v}" for k, v in self.model.errors.items())
            widget.update(Text(f"✗ {bad}", style="bold red"))
            return
        widget.update(Text("$ " + shlex.join(res.command_line()), style="green"))

    @property
    def detected(self) -> tuple[GpuSample, ...]:
        """The GPUs NVML found here (none until it has answered)."""
        return self.gpus.gpus if self.gpus else ()

    def current_target(self) -> tuple[str, float | None]:
        if self.target is not None:
            return self.target
        if self.gpus is None:
            return "reading GPUs…", None
        if not self.gpus.gpus:
            return f"no GPU: {self.gpus.error}", None
        g = self.planned_card()
        return f"GPU {g.index} {g.name} (free)", g.available_gib()

    def planned_card(self) -> GpuSample:
        """The card a run would have least room on: of those chosen to train on (all by default)."""
        chosen = set(comma_list(self.model.value("gpus")))
        cards = [g for g in self.detected if str(g.index) in chosen] or list(self.detected)
        return min(cards, key=lambda g: g.available_gib())

    def busy_note(self) -> str:
        """When other processes hold memory on the card planned for: the plan is for what is free now."""
        if self.target is not None or not self.detected:
            return ""
        g = self.planned_card()
        held = others_gib(g)
        if held <= HIDDEN_GIB:
            return ""
        return (
            f"other processes hold {held:.1f} GB of GPU {g.index}: planning on the {g.available_gib():.1f} GB free now"
        )

    def refresh_estimate(self) -> None:
        res = self.model.resolved
        panel = self.query_one("#vram", VramPanel)
        if res is None or self.found is None:
            self.plan = None
            panel.show(None, "looking up the architecture…" if res is not None else "fix the marked fields")
            return
        label, gpu_gib = self.current_target()
        from ...estimate import plan

        self.plan = plan(res, self.found, gpu_gib, label, self.backend(res)[0], gpu_count=len(self.detected))
        panel.show(self.plan, busy=self.busy_note())
        self.refresh_sub_title()

    def backend(self, res: Resolved) -> tuple[str, str | None]:
        """The backend a run would use. Without a GPU here the form plans for an NVIDIA box, where
        Unsloth is installed by default."""
        gpus = len(self.detected)
        from ...backend_choice import planned_backend

        return planned_backend(res["base_model"], res.world_size(gpus), gpus, res.sharded)

    # --- actions -----------------------------------------------------------------------------
    @property
    def pickers(self) -> GpuPickers:
        from .form_gpus import GpuPickers

        return GpuPickers(self)

    @property
    def preset_dialogs(self) -> PresetDialogs:
        from .form_presets import PresetDialogs

        return PresetDialogs(self)

    @property
    def start_flow(self) -> StartFlow:
        from .form_start import StartFlow

        return StartFlow(self)

    def action_start(self) -> None:
        self.start_flow.start()

    def action_queue(self) -> None:
        self.start_flow.start(queue=True)

    def action_load_preset(self) -> None:
        self.preset_dialogs.choose_and_load()

    def load_preset(self, name_or_path: str) -> bool:
        return self.preset_dialogs.load(name_or_path)

    def action_save_preset(self) -> None:
        self.preset_dialogs.ask_and_save()

    def action_pick_planning_card(self) -> None:
        self.pickers.pick_planning_card()

    @on(Input.Submitted, "#i-gpus")
    def action_pick_training_gpus(self) -> None:
        """Enter on the GPUs field: tick the detected GPUs to train on."""
        self.pickers.pick_training_gpus()

    def on_resize(self) -> None:
        self.refresh_sub_title()

    def refresh_sub_title(self) -> None:
        """Under 72 columns the panels are hidden: the header says what the VRAM panel would."""
        est = self.plan.estimate if self.plan else None
        if self.has_class("-narrow") and est is not None:
            verdict = {"over": "OVER", "unknown": "no GPU"}.get(est.state, est.state)
            self.sub_title = f"{est.peak_gib:.1f} GB · {verdict} · f2 panels"
        else:
            self.sub_title = "settings"

    def action_runs(self) -> None:
        self.post_message(RunsRequested())

    def action_toggle_quality(self) -> None:
        self.model.set_value("quality_mode", not self.model.value("quality_mode"))
        self.refresh_form()

    def action_advise(self, index: int) -> None:
        if not self.plan or not 0 < index <= len(self.plan.steps):
            self.notify("No advice to apply: the run fits or there is no GPU to compare with", severity="warning")
            return
        step = self.plan.steps[index - 1]
        self.model.apply(step.changes)
        self.refresh_form()
        self.notify(f"Applied: {step.title}")

    def action_inspect(self) -> None:
        from .inspect import InspectScreen

        m = self.model
        args = {
            k: m.value(k) for k in ("base_model", "chat_template", "max_seq_length", "columns", "max_prompt_length")
        }
        args |= {"source": m.value("dataset"), "fmt": m.value("dataset_format")}
        self.app.push_screen(InspectScreen({**args, "responses_only": m.value("train_on_responses_only")}))

    def action_copy_command(self) -> None:
        if self.model.resolved is None or not self.model.valid:
            self.notify("Fix the marked fields first", severity="error")
            return
        self.app.copy_to_clipboard(shlex.join(self.model.resolved.command_line()))
        self.notify("Command copied (OSC 52: works over SSH in most terminals)")

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Start the run", "Validate and start training (ctrl+r)", self.action_start)
        yield SystemCommand(
            "Queue the run", "Start by itself when the GPUs have room; survives logout (ctrl+b)", self.action_queue
        )
        yield SystemCommand("Runs", "Every run: open, compare, archive, delete (ctrl+l)", self.action_runs)
        yield SystemCommand("Load preset", "Apply a built-in or user preset (ctrl+o)", self.action_load_preset)
        yield SystemCommand("Save preset", "Save the form as a preset (ctrl+s)", self.action_save_preset)
        yield SystemCommand(
            "Copy command line", "model-garden train … to the clipboard (ctrl+y)", self.action_copy_command
        )
        yield SystemCommand(
            "Choose GPU target", "Plan for a detected or common GPU (ctrl+g)", self.action_pick_planning_card
        )
        yield SystemCommand(
            "Choose GPUs to train on", "Tick detected GPUs (enter on the gpus field)", self.action_pick_training_gpus
        )
        yield SystemCommand(
            "Toggle quality mode", "16-bit, checkpointing true, adamw_torch (ctrl+t)", self.action_toggle_quality
        )
        for i, step in enumerate(self.plan.steps if self.plan else (), 1):
            yield SystemCommand(f"Apply: {step.title}", f"OOM step (alt+{i})", lambda i=i: self.action_advise(i))

    def estimate_gb(self) -> float | None:
        return self.plan.estimate.peak_gib if self.plan and self.plan.estimate else None


def setting_name(widget: object) -> str:
    """The setting a form editor edits (its id is "i-" + the name); "" for any other widget."""
    return (getattr(widget, "id", None) or "").removeprefix("i-")
