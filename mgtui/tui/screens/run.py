"""The run screen: phase and progress, loss chart, metrics, log, GPU gauges, stop, and the
summary or failure panel; a preference or GRPO run's reward chart (v: its next view), and a GRPO
run's latest sampled completions (c). It follows the run directory's event log, so a fresh run, a reattach
after a dropped SSH session and a finished run all take the same path."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Header, RichLog, Sparkline, Static

from ...errors import how_it_ended
from ...gpu_procs import THIS_RUN, processes
from ...nvml import GpuSource
from ...runs import rundir
from ...runs.events import EVENTS_FILE, EventFollower
from ...runs.launch import request_stop
from ...runs.queue import place_of
from ...runs.registry import mark_seen, runs_by_pid
from ...runs.stall import STALL_S, engine_stall
from ...runs.view import FUNC, FUNC_STD, RunView, fmt_duration, functions, is_grpo, phase_line
from ...units import comma_list
from ..messages import AdviceChosen, ChatRequested, ExportRequested
from ..widgets.charts import LossChart, RewardChart
from ..widgets.completions import CompletionsPanel
from ..widgets.footer import KeyFooter
from ..widgets.gpu_gauges import GpuPanel
from ..widgets.vram import bar
from .base import AppScreen
from .modals import Choice, confirm

BEFORE_TRAINING = ("starting", "downloading", "loading_model", "preparing_data")
WIDE_FOOTER = 100  # columns from which a GRPO run's footer has room for every key
TALL = 36  # rows from which the completions show under the charts; below, c swaps them for the loss chart and log


def answers_text(a: dict[str, Any]) -> Text:
    """The quick look at quality: the first prompts' answers, tuned beside base."""
    t = Text()
    t.append(f"{a['count']} prompts answered (all in {Path(a['path']).name}):\n", style="bold")
    for row in a.get("sample") or []:
        t.append(f"› {row['prompt'][:120]}\n", style="bold")
        t.append("  tuned: ", style="green")
        t.append((row.get("tuned") or "").strip()[:200].replace("\n", " ") + "\n")
        if row.get("base") is not None:
            t.append("  base:  ", style="dim")
            t.append((row.get("base") or "").strip()[:200].replace("\n", " ") + "\n", style="dim")
    return t


LOG_STYLE = {"warning": "yellow", "error": "bold red", "phase": "cyan", "info": ""}


def load_snippet(run_dir: Path) -> str:
    if (run_dir / "config.json").exists() and not (run_dir / "adapter_config.json").exists():  # full fine-tuning
        return f"from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained({str(run_dir)!r})"
    return (
        f"from peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained({str(run_dir)!r})"
    )


class RunScreen(AppScreen):
    BINDINGS = [
        Binding("s", "stop", "Stop", tooltip="stop: asks first, saves adapter and checkpoint"),
        Binding("escape", "back", "Form", tooltip="back to the form (a live run asks: detach or stop)"),
        Binding("ctrl+y", "copy_snippet", "Copy load code", tooltip="copy the Python lines that load the adapter"),
        Binding("t", "chat", "Try it", tooltip="a finished run: chat with it, beside the base model"),
        Binding("e", "export", "Export", tooltip="a finished run: a merged model, a GGUF file, or the Hub"),
        Binding("c", "samples", "Samples", tooltip="GRPO: the latest sampled completions and their rewards"),
        Binding("v", "chart_view", "Chart", tooltip="GRPO: the reward chart's next view: reward, KL, length, clipped"),
        Binding("f2", "toggle_panels", "Panels", show=False, tooltip="under 72 columns: the metrics and GPU gauges"),
        *[
            Binding(
                f"alt+{i}",
                f"advise({i})",
                f"Back with step {i}",
                show=False,
                tooltip="after an out-of-memory failure: back to the form with step N applied",
            )
            for i in range(1, 7)
        ],
    ]

    def __init__(
        self,
        run_dir: Path,
        gpu_source: GpuSource,
        estimate_gb: float | None = None,
        proc: subprocess.Popen | None = None,
        poll_s: float = 0.1,
        stall_s: float = STALL_S,
    ) -> None:
        super().__init__(gpu_source)
        self.run_dir = Path(run_dir)
        self.proc = proc
        self.view = RunView(estimate_gb=estimate_gb)
        self.follower = EventFollower(self.run_dir / EVENTS_FILE)
        self.poll_s = poll_s
        self.exit_note: str | None = None
        self._log_shown = 0
        self._stop_requested = False
        self.queued: tuple[int, str, float | None] | None = None  # place, what it waits for
        self.stall_s = stall_s
        self.stall: str | None = None  # the engine is frozen or silent: what to do
        self._last_word: float | None = None  # the newest event's time
        self._stall_checked = 0.0
        self._samples_chosen = False  # c was pressed: the completions stay as the user left them
        self._keys: tuple[bool, ...] = (False, False, True)  # c and v on offer, running: as the footer last showed

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        with Horizontal(id="runmain"):
            with Vertical(id="runleft"):
                yield Static("", id="progress")
                yield Static("", id="end", classes="hidden")
                yield LossChart(id="chart")
                yield RewardChart(id="rewards")
                yield CompletionsPanel(id="completions")
                yield Sparkline([], id="spark")
                yield RichLog(id="log", wrap=True, markup=False, max_lines=2000, min_width=20)
            with VerticalScroll(id="runside"):
                yield Static("", id="metrics")
                yield GpuPanel(id="gpus")
        yield KeyFooter()  # as on the form

    def on_mount(self) -> None:
        gpus = rundir.read_json(self.run_dir / rundir.RUN_FILE).get("gpus") or ""
        if gpus:  # the GPUs the run was given; all of them otherwise
            self.query_one("#gpus", GpuPanel).selected = {int(g) for g in comma_list(str(gpus)) if g.isdigit()}
        self.title = "mgtui"
        self.sub_title = f"run · {self.run_dir}"
        self.on_resize()
        self.drain()
        self.set_interval(self.poll_s, self.drain)
        self.poll_gpus()
        self.gpu_timer = self.set_interval(1.0, self.poll_gpus)

    # --- events: drained in batches on a timer, so the UI never waits on the engine -----------
    def drain(self) -> None:
        events = self.follower.read_new()
        changed = bool(events)
        if events:
            self.view.apply(events)
            self._last_word = max((e["t"] for e in events if isinstance(e.get("t"), (int, float))), default=None)
            changed = changed or self._check_stall(force=True)
        elif not self.view.finished and self.exit_note is None:
            changed = self._check_engine() or self._check_stall()
        if changed or self.exit_note:
            self.render_view()
        elif self.view.phase in BEFORE_TRAINING:  # the phase's clock ticks between its events
            self.query_one("#progress", Static).update(self.progress_text())

    def _check_engine(self) -> bool:
        """An engine that died without a last word (killed, crashed) is reported, not waited on.
        Cheap enough for every quiet tick: a poll, or run.json and the pid, never the whole log.
        Returns whether the view changed."""
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return False
            how = how_it_ended(code)
        else:
            info, _ = rundir.run_info(self.run_dir)
            if info.get("state") == "queued":  # its turn has not come: say where it stands
                was, self.queued = self.queued, place_of(self.run_dir)
                return self.queued != was
            if info.get("state") == "cancelled":
                self.exit_note = "Cancelled: taken out of the queue before it started."
                return True
            if info.get("state") == "resuming" or rundir.engine_alive(info):
                self.queued = None
                return False
            how = "no running process"
        late = self.follower.read_new()  # its last words may have landed just now
        if late:
            self.view.apply(late)
            return True
        self.exit_note = f"The engine stopped without a last word ({how}). See {self.run_dir / rundir.LOG_FILE}."
        return True

    def _check_stall(self, force: bool = False) -> bool:
        """Once a second: is the running engine frozen or silent? Returns whether that changed."""
        now = time.monotonic()
        if not force and now - self._stall_checked < 1.0:
            return False
        self._stall_checked = now
        was = self.stall
        running = not self.view.finished and self.exit_note is None and self.queued is None
        self.stall = engine_stall(self.run_dir, self._last_word, self.stall_s) if running else None
        return self.stall != was

    def render_view(self) -> None:
        v = self.view
        self.query_one("#progress", Static).update(self.progress_text())
        self.query_one("#metrics", Static).update(self.metrics_text())
        self.query_one("#chart", LossChart).set_data(v.losses, v.smoothed, v.eval_losses)
        if v.series:
            self.query_one("#rewards", RewardChart).set_data(v.series)
        if v.completions is not None:
            self.query_one("#completions", CompletionsPanel).show(v.completions)
            if not self._samples_chosen and not self.has_class("-samples") and self.size.height >= TALL:
                self.add_class("-samples")  # room enough: under the charts from the first samples
        keys = (v.completions is not None, len(self.query_one("#rewards", RewardChart).views()) > 1, self.running)
        if keys != self._keys:
            self._keys = keys
            self.refresh_bindings()
        self.query_one("#spark", Sparkline).data = [y for _, y in v.losses[-200:]]
        log = self.query_one("#log", RichLog)
        for kind, text in v.log[self._log_shown :]:
            log.write(Text(text, style=LOG_STYLE.get(kind, "")))
        self._log_shown = len(v.log)
        end = self.query_one("#end", Static)
        if v.finished or self.exit_note:
            end.remove_class("hidden")
            end.update(self.end_text())
            self.sub_title = f"{v.end['type'] if v.end else 'engine gone'} · {self.run_dir}"
            mark_seen(self.run_dir)

    def progress_text(self) -> Text:
        v = self.view
        t = Text()
        if self.queued and v.phase == "starting":
            t.append(f"queued #{self.queued[0]}", style="bold yellow")
            t.append(f" · waits for {self.queued[1]}\n", style="yellow")
            t.append(
                "it starts by itself; the runs screen (ctrl+l on the form) can start it now or cancel it", style="dim"
            )
            return t
        if v.phase in BEFORE_TRAINING and v.phase_event:
            t.append(phase_line(v.phase_event), style="bold cyan")
            if v.phase_t is not None:  # a slow phase shows as slow, not as a hang
                t.append(f" · {fmt_duration(max(0.0, time.time() - v.phase_t))}", style="dim")
        else:
            t.append(v.phase.replace("_", " "), style="bold cyan")
        t.append("\n")
        total = v.total_steps or 0
        frac = v.step / total if total else 0.0
        t.append_text(bar(frac, 16, "green"))  # leaves room for the counts on one line at 80 columns
        t.append(f" {v.step}/{total or '?'} {frac:.0%}  epoch {v.epoch:.2f}\n")
        if self.stall:  # in the ETA's place: an ETA means nothing while the engine doesn't move
            t.append(f"⚠ stalled: {self.stall}", style="bold yellow")
            return t
        t.append(f"trained {fmt_duration(v.elapsed_s)}  ETA {fmt_duration(v.eta_s)}", style="dim")
        if v.missed:
            t.append(f"  ({v.missed} events missed)", style="yellow")
        return t

    def metrics_text(self) -> Text:
        v = self.view

        def num(x, f):
            return "-" if x is None else format(x, f)

        t = Text()
        t.append(f"loss      {num(v.loss, '.4f')}\n", style="bold")
        if v.eval_losses:
            t.append(f"eval loss {v.eval_losses[-1][1]:.4f}\n", style="yellow")
        last = {k: s[-1][1] for k, s in v.series.items() if s}
        if is_grpo(v.series):
            self.grpo_metrics(t, last)
        if "reward_accuracy" in last:
            t.append(f"reward acc {last['reward_accuracy']:.0%}\n", style="bold")
        if "reward_margin" in last:
            t.append(f"margin    {last['reward_margin']:.3f}\n", style="cyan")
        if "reward_chosen" in last and "reward_rejected" in last:
            t.append("chosen    ", style="green")
            t.append(f"{last['reward_chosen']:.3f}\n")
            t.append("rejected  ", style="red")
            t.append(f"{last['reward_rejected']:.3f}\n")
        if "logp_chosen" in last and "logp_rejected" in last:
            t.append(f"logp c/r  {last['logp_chosen']:.1f}/{last['logp_rejected']:.1f}\n", style="dim")
        if "kl" in last and not is_grpo(v.series):
            t.append(f"kl        {last['kl']:.3f}\n")
        t.append(f"lr        {num(v.learning_rate, '.2e')}\n")
        t.append(f"grad norm {num(v.grad_norm, '.3f')}\n")
        t.append(f"tokens/s  {num(v.tokens_per_s, ',.0f')}\n")
        peak = "-" if v.measured_gb is None else f"{v.measured_gb:.2f}"
        est = "-" if v.estimate_gb is None else f"{v.estimate_gb:.2f}"
        t.append(f"peak GB   {peak} (est {est})\n")
        if v.backend:
            t.append(f"{v.backend} · {v.device} · ×{v.world_size}\n", style="dim")
        return t

    def grpo_metrics(self, t: Text, last: dict[str, float]) -> None:
        """The last reward mean ± spread, each function's, KL, lengths and the shares clipped and
        without spread."""

        def g(x: float) -> str:
            return f"{x:.3g}"

        if "reward" in last:
            t.append(f"reward    {g(last['reward'])}", style="bold green")
            t.append(f" ±{g(last['reward_std'])}\n" if "reward_std" in last else "\n", style="green")
        for name in functions(self.view.series):
            t.append(f" {name[:12]:<12} ", style="dim")
            t.append(g(last[FUNC + name]))
            t.append(f" ±{g(last[FUNC_STD + name])}\n" if FUNC_STD + name in last else "\n", style="dim")
        if "kl" in last:
            t.append(f"kl        {last['kl']:.3g}\n", style="magenta")
        if "completion_length" in last:
            top = f" (max {last['completion_length_max']:.0f})" if "completion_length_max" in last else ""
            t.append(f"length    {last['completion_length']:.0f}{top}\n", style="cyan")
        if "clipped_ratio" in last:
            t.append(f"clipped   {last['clipped_ratio']:.0%}\n", style="yellow")
        if "frac_reward_zero_std" in last:
            t.append(f"no spread {last['frac_reward_zero_std']:.0%} of groups\n", style="dim")
        if "entropy" in last:
            t.append(f"entropy   {last['entropy']:.3g}\n", style="dim")

    def end_text(self) -> Text:
        v = self.view
        e = v.end or {}
        t = Text()
        if self.exit_note and not v.end:
            t.append("Failed\n", style="bold red")
            t.append(self.exit_note + "\n")
            t.append("The run directory keeps the last checkpoint and the event log; esc: back to the form\n")
            return t
        kind = e.get("type")
        if kind == "failed":
            t.append(f"Failed ({e.get('kind')}) at step {e.get('step')}\n", style="bold red")
            t.append(e.get("message", "") + "\n")
            if e.get("kind") == "oom":
                t.append(f"reserved {e.get('reserved_gb')} GB of {e.get('total_gb')} GB; estimate {v.estimate_gb} GB\n")
            for i, a in enumerate(e.get("advice") or [], 1):
                t.append(f"alt+{i} ", style="bold")
                t.append(f"{a['title']} → {a['peak_gb']} GB{' ✓' if a['fits'] else ''}\n")
            for a in e.get("advice_text") or []:
                t.append(f"· {a}\n")
            t.append("esc: back to the form", style="dim")
            return t
        if kind == "stopped" and e.get("download"):
            t.append("Stopped during the download\n", style="bold yellow")
            t.append(e.get("message", "") + "\nesc: back to the form", style="")
            return t
        style = "bold green" if kind == "done" else "bold yellow"
        t.append(
            f"{'Done' if kind == 'done' else 'Stopped'}: {e.get('steps')} steps in {fmt_duration(e.get('runtime_s'))}, "
            f"final loss {e.get('final_loss') or 0:.4f}\n",
            style=style,
        )
        peak = "n/a (CPU)" if v.measured_gb is None else f"{v.measured_gb:.2f} GB"
        if v.peak_nvml_gb is not None and v.peak_gb is not None:
            peak += f" (nvidia-smi; torch reserved {v.peak_gb:.2f})"
        t.append(f"peak memory {peak} · estimate {v.estimate_gb} GB\n")
        t.append(f"adapter: {e.get('adapter')}\n")
        if v.answers:
            t.append_text(answers_text(v.answers))
        t.append("t: try it beside the base · e: export\n", style="bold")
        t.append(load_snippet(self.run_dir) + "\n", style="cyan")
        if kind == "stopped":
            t.append("continue it later with --resume\n", style="dim")
        return t

    @work(thread=True, exclusive=True, group="gpu-poll")
    def poll_gpus(self) -> None:
        reading = self.gpu_source.read()
        info, _ = rundir.run_info(self.run_dir)
        candidates = reading.pids
        own = rundir.run_pids(info, candidates)
        names = {**runs_by_pid(candidates), **dict.fromkeys(own, THIS_RUN)}
        procs = {g.index: processes(g, names, self.gpu_source.describe) for g in reading.gpus}
        self.app.call_from_thread(self.query_one("#gpus", GpuPanel).show, reading, own, procs)

    # --- actions -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self.view.finished and self.exit_note is None

    def action_stop(self) -> None:
        if not self.running:
            self.notify("The run is not running")
            return

        def answer(a: str | None) -> None:
            if a == "yes":
                self.stop_run()

        self.app.push_screen(
            confirm(
                "Stop the run?",
                "It finishes the current step, saves the adapter and a "
                "checkpoint, then stops. You can resume it later.",
                "Stop",
                "Keep training",
            ),
            answer,
        )

    def stop_run(self) -> None:
        if request_stop(self.run_dir):
            self._stop_requested = True
            self.notify("Stopping after the current step…")
        else:
            self.notify("Could not signal the engine (is it still running?)", severity="error")

    def dismiss_to_form(self) -> None:
        self.app.pop_screen()

    def action_back(self) -> None:
        if self.running:
            self.ask_leave(self.dismiss_to_form)
        else:
            self.app.pop_screen()

    def ask_leave(self, then: Callable[[], None]) -> None:
        """Leaving a live run: detach (it keeps training) or stop it."""

        def answer(a: str | None) -> None:
            if a == "stop":
                self.stop_run()
                then()
            elif a == "detach":
                self.notify(f"Still training; reattach with: mgtui attach {self.run_dir}")
                then()

        self.app.push_screen(
            Choice(
                "The run is still training",
                f"Detach and let it train on, or stop it?\nReattach later with: mgtui attach {self.run_dir}",
                [("detach", "Detach", "d"), ("stop", "Stop", "s"), ("cancel", "Cancel", "escape")],
            ),
            answer,
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """c and v only where a GRPO run has samples and more than one chart view (off the footer
        otherwise). Beside them the footer would overflow 80 columns: s shows only while the run
        runs, t and e once it has ended, and ^y (still a key, and in the palette) only from
        WIDE_FOOTER columns once it has ended."""
        if action == "samples":
            return self.view.completions is not None
        if action == "chart_view":
            return len(self.query_one("#rewards", RewardChart).views()) > 1
        if any(self._keys[:2]):  # c and v crowd the footer: the keys that can't act now step off it
            if action == "stop":
                return self.running
            if action in ("chat", "export"):
                return not self.running
            if action == "copy_snippet":  # under 100 columns a finished run's summary shows the lines
                return self.running or self.size.width >= WIDE_FOOTER
        return True

    def on_resize(self) -> None:
        self.set_class(self.size.height < TALL, "-short")
        if any(self._keys[:2]):
            self.refresh_bindings()

    def action_samples(self) -> None:
        """Show or hide the completions; shown, they take the keyboard (↑↓ scroll them)."""
        self._samples_chosen = True
        self.toggle_class("-samples")
        panel = self.query_one("#completions", CompletionsPanel)
        if self.has_class("-samples"):
            panel.focus()
        elif panel.has_focus:
            self.set_focus(None)

    def action_chart_view(self) -> None:
        self.query_one("#rewards", RewardChart).next_view()  # its legend names the view

    def action_copy_snippet(self) -> None:
        self.app.copy_to_clipboard(load_snippet(self.run_dir))
        self.notify("Copied the lines that load the adapter")

    def action_advise(self, index: int) -> None:
        advice = (self.view.end or {}).get("advice") or []
        if not 0 < index <= len(advice):
            return
        self.post_message(AdviceChosen(advice[index - 1]["changes"], advice[index - 1]["title"]))

    def leave_then(self, then: Callable[[], None]) -> None:
        if self.running:
            self.ask_leave(then)
        else:
            then()

    def action_chat(self) -> None:
        if self.running:
            self.notify("Still training: the chat opens once the run has saved its adapter", severity="warning")
            return
        self.post_message(ChatRequested(self.run_dir))

    def action_export(self) -> None:
        if self.running:
            self.notify("Still training: export once the run has saved its adapter", severity="warning")
            return
        self.post_message(ExportRequested(self.run_dir))

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Try it: chat", "Ask the tuned and the base model (t)", self.action_chat)
        yield SystemCommand("Export", "Merged model, GGUF, or the Hub (e)", self.action_export)
        yield SystemCommand("Stop the run", "Finish the step, save, stop (s)", self.action_stop)
        yield SystemCommand("Copy adapter loading code", "Python lines (ctrl+y)", self.action_copy_snippet)
        if self.view.completions is not None:
            yield SystemCommand("Sampled completions", "GRPO: show or hide them (c)", self.action_samples)
        if self.check_action("chart_view", ()):
            yield SystemCommand(
                "Next chart view", "GRPO: reward, KL, length, clipped, entropy (v)", self.action_chart_view
            )
