"""The settings screen: the form, the live VRAM panel, the dataset panel, presets, the command
preview, and Start."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Checkbox, Footer, Header, Input, Label, Select, Static

from ... import presets
from ...backend_choice import planned_backend
from ...cuda_check import problems_here, torch_build
from ...estimate import Lookup, MemoryPlan, lookup, plan
from ...estimate.gpu_catalog import COMMON_GPUS
from ...form_model import FormModel
from ...nvml import GpuReading, GpuSample, GpuSource
from ...runs import rundir
from ...settings import BY_NAME, GROUPS, SETTINGS, Resolved
from ...units import comma_list, gib
from ..messages import AttachRequested, StartRequested
from ..widgets.dataset import DatasetPanel
from ..widgets.fields import FieldGroup, FieldInput, label_of
from ..widgets.vram import VramPanel
from .base import AppScreen
from .modals import AskName, Choice, PickMany, PickOne, confirm

QUALITY_HELP = "quality mode sets: 16-bit, checkpointing true, adamw_torch, RSLoRA when r >= 32"
NO_TARGET = "__none__"


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
        self._deferred: list[FieldGroup] = []
        self.mounted_groups: list[FieldGroup] = []
        self.dataset_panel = DatasetPanel(scan_limit, id="dataset")

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        with Horizontal(id="main"):
            with VerticalScroll(id="form"):
                for i, group in enumerate(GROUPS):
                    yield Label(group, classes="group")
                    fields = FieldGroup([s for s in SETTINGS if s.group == group], self.model.value, self._group_ready)
                    self.groups.append(fields)
                    if i == 0:
                        yield fields
                    else:  # below the fold: mounted just after the first frame, so keys are answered sooner
                        self._deferred.append(fields)
                        yield Vertical(id=f"g-{i}", classes="later")
            with VerticalScroll(id="side"):
                yield Label("GPU memory", classes="group")
                yield VramPanel(id="vram")
                yield Label("Dataset", classes="group", id="dataset-title")
                yield self.dataset_panel
        yield Static("", id="helpline")
        yield Static("", id="command")
        yield Footer(compact=True)  # every key fits in 80 columns

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

    def show_help(self) -> None:
        setting = BY_NAME.get(setting_name(self.app.focused))
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
            group = self._deferred.pop(0)
            index = self.groups.index(group)
            self.query_one(f"#g-{index}", Vertical).mount(group)
            self.call_after_refresh(self._mount_next_group)  # one group per frame: keys interleave

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
        g = self.gpus.gpus[0]
        return f"GPU {g.index} {g.name} (free)", g.available_gib()

    def refresh_estimate(self) -> None:
        res = self.model.resolved
        panel = self.query_one("#vram", VramPanel)
        if res is None or self.found is None:
            self.plan = None
            panel.show(None, "looking up the architecture…" if res is not None else "fix the marked fields")
            return
        label, gib = self.current_target()
        self.plan = plan(res, self.found, gib, label, self.backend(res)[0], gpu_count=len(self.detected))
        panel.show(self.plan)

    def backend(self, res: Resolved) -> tuple[str, str | None]:
        """The backend a run would use. Without a GPU here the form plans for an NVIDIA box, where
        Unsloth is installed by default."""
        gpus = len(self.detected)
        return planned_backend(res["base_model"], res.world_size(gpus), gpus)

    @on(Input.Submitted, "#i-gpus")
    def action_pick_training_gpus(self) -> None:
        """Enter on the GPUs field: tick the detected GPUs to train on."""
        found = self.detected
        if not found:
            why = self.gpus.error if self.gpus else "still reading the GPUs"
            self.notify(
                f"No GPU detected here ({why}): type the indices for the machine the run will use", severity="warning"
            )
            return
        chosen = set(comma_list(self.model.value("gpus")))
        options = [
            (
                str(g.index),
                f"GPU {g.index}: {g.name} · {gib(g.memory_used):.1f} of {gib(g.memory_total):.0f} GB used"
                + (f" · {g.utilization}% busy" if g.utilization is not None else ""),
                not chosen or str(g.index) in chosen,
            )
            for g in found
        ]

        def picked(keys: list[str] | None) -> None:
            if keys is None:
                return
            if not keys:
                self.notify("No GPU ticked: the field is unchanged", severity="warning")
                return
            every = len(keys) == len(found)  # all of them: the default, "all visible"
            self.model.apply({"gpus": "" if every else ",".join(sorted(keys, key=int))})
            self.refresh_form()

        self.app.push_screen(PickMany("Train on which GPUs?", options), picked)

    # --- actions -----------------------------------------------------------------------------
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

    def action_copy_command(self) -> None:
        if self.model.resolved is None or not self.model.valid:
            self.notify("Fix the marked fields first", severity="error")
            return
        self.app.copy_to_clipboard(shlex.join(self.model.resolved.command_line()))
        self.notify("Command copied (OSC 52: works over SSH in most terminals)")

    def action_pick_planning_card(self) -> None:
        options: list[tuple[str, str]] = []
        for g in self.detected:
            options.append((f"gpu:{g.index}", f"GPU {g.index}: {g.name} · {g.available_gib():.1f} GB free"))
        options += [(f"plan:{name}", f"{name} · {gib:.1f} GB (planning)") for name, gib in COMMON_GPUS.items()]
        options.append((NO_TARGET, "No target: show the estimate only"))

        def details(key: str) -> str:
            return (
                "The detected GPU's total minus what other processes hold"
                if key.startswith("gpu:")
                else "Plan a run for a GPU you don't have here"
                if key.startswith("plan:")
                else ""
            )

        def chosen(key: str | None) -> None:
            if key is None:
                return
            if key.startswith("gpu:") and self.gpus:
                g = self.gpus.gpus[int(key[4:])]
                self.target = (f"GPU {g.index} {g.name} (free)", g.available_gib())
            elif key.startswith("plan:"):
                self.target = (key[5:] + " (planning)", COMMON_GPUS[key[5:]])
            else:
                self.target = ("no target", None)
            self.refresh_estimate()

        self.app.push_screen(PickOne("Plan for which GPU?", options, details), chosen)

    def action_load_preset(self) -> None:
        listing = presets.listing()
        loaded: dict[str, presets.Preset | str] = {}
        for name, (path, builtin) in listing.items():
            try:
                loaded[name] = presets.load_path(path, builtin)
            except presets.PresetError as e:
                loaded[name] = str(e)
        options = [
            (n, f"{n}  ({'built-in' if listing[n][1] else 'user'})" + ("  BROKEN" if isinstance(p, str) else ""))
            for n, p in loaded.items()
        ]

        def details(name: str) -> Text:
            p = loaded.get(name)
            if isinstance(p, str) or p is None:
                return Text(str(p), style="bold red")
            t = Text(p.description + "\n", style="italic")
            try:
                changes = self.model.diff(_resolve_preset(p))
            except Exception as e:  # a preset that resolves to a conflict
                return t + Text(str(e), style="bold red")
            if not changes:
                t.append("no change to the form", style="dim")
            for k, old, new in changes[:7]:
                t.append(f"{label_of(k)}: {old} → {new}\n")
            if len(changes) > 7:
                t.append(f"… and {len(changes) - 7} more", style="dim")
            return t

        def chosen(name: str | None) -> None:
            if name is not None:
                self.load_preset(name)

        self.app.push_screen(PickOne("Load a preset", options, details), chosen)

    def load_preset(self, name_or_path: str) -> bool:
        """Apply a preset; a broken one leaves the form as it was and says why."""
        try:
            p = presets.load(name_or_path)
            _resolve_preset(p)
        except (presets.PresetError, ValueError) as e:
            self.notify(str(e), title="Preset not loaded", severity="error", timeout=10)
            return False
        # A preset without paths keeps the user's dataset and output directory.
        kept = {
            s.name: self.model.chosen[s.name]
            for s in SETTINGS
            if s.path and s.name not in p.values and s.name in self.model.chosen
        }
        self.model.replace({**kept, **{k: p.values[k] for k in p.explicit_keys()}})
        self.follow_dataset(0)
        self.refresh_form()
        self.found = None
        self.schedule_lookup(0)
        self.notify(f"Loaded preset {p.name}")
        return True

    def action_save_preset(self) -> None:
        if self.model.resolved is None or not self.model.valid:
            self.notify("Fix the marked fields before saving", severity="error")
            return
        res = self.model.resolved

        def check(name: str) -> str | None:
            if not name:
                return "Give a name"
            try:
                presets.target_path(name)
            except presets.PresetError as e:
                return str(e)
            return None

        def named(name: str | None) -> None:
            if not name:
                return
            path = presets.target_path(name)
            if path.exists():
                self.app.push_screen(
                    confirm("Overwrite preset?", f"{path} exists. Replace it?", "Overwrite", "Keep"),
                    lambda answer: self._save(res, name, answer == "yes"),
                )
            else:
                self._save(res, name, False)

        self.app.push_screen(
            AskName("Save preset as", f"saved in {presets.user_dir()} (or give a path ending .toml)", validate=check),
            named,
        )

    def _save(self, res: Resolved, name: str, force: bool) -> None:
        if presets.target_path(name).exists() and not force:
            self.notify("Not saved: the existing preset was kept")
            return
        try:
            path = presets.save(res, name, force=force)
        except presets.PresetError as e:
            self.notify(str(e), severity="error", timeout=10)
            return
        self.notify(f"Saved {path}")

    def action_start(self) -> None:
        m = self.model
        if m.resolved is None or not m.valid:
            self.notify("Start refused: fix the marked fields first", severity="error")
            return
        if not m.value("dataset"):
            self.notify("Start refused: choose a dataset", severity="error")
            self.query_one("#i-dataset").focus()
            return
        # the engine would stop on any of these
        problem = self.device_problem() or self.dataset_panel.error or self.dataset_panel.problem
        if problem:
            self.notify(f"Start refused: {problem}", severity="error", timeout=10)
            return
        res = m.resolved
        out = Path(res["output_dir"]).expanduser()
        reason = rundir.occupied(out)
        if reason and not res["resume"]:
            running = rundir.run_state(out).state == "running"
            answers = [("new", "New directory", "d"), ("cancel", "Cancel", "escape")]
            if not running and rundir.latest_checkpoint(out):
                answers.insert(0, ("resume", "Resume it", "r"))
            if running:
                answers.insert(0, ("attach", "Attach to it", "a"))
            self.app.push_screen(
                Choice("Output directory in use", reason, answers), lambda a: self._occupied_answer(a, res)
            )
            return
        self.post_message(StartRequested(res, self.estimate_gb()))

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Start the run", "Validate and start training (ctrl+r)", self.action_start)
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

    def _occupied_answer(self, answer: str | None, res: Resolved) -> None:
        if answer == "resume":
            self.model.apply({"resume": True})
            self.refresh_form()
            if self.model.resolved is not None:
                self.post_message(StartRequested(self.model.resolved, self.estimate_gb()))
        elif answer == "new":
            self.model.apply({"output_dir": free_directory(res["output_dir"])})
            self.refresh_form()
            self.notify(f"Output directory set to {self.model.value('output_dir')}: press ctrl+r to start")
        elif answer == "attach":
            self.post_message(AttachRequested(Path(res["output_dir"]).expanduser()))


def _resolve_preset(p: presets.Preset) -> Resolved:
    from ...settings import resolve

    return resolve([{k: p.values[k] for k in p.explicit_keys()}], p.explicit_keys())


def free_directory(base: str) -> str:
    for n in range(2, 1000):
        candidate = f"{base.rstrip('/')}-{n}"
        if rundir.occupied(Path(candidate).expanduser()) is None:
            return candidate
    return base + "-new"


def setting_name(widget: object) -> str:
    """The setting a form editor edits (its id is "i-" + the name); "" for any other widget."""
    return (getattr(widget, "id", None) or "").removeprefix("i-")
