"""Start from the form: refuse what the engine would refuse, and ask what to do about an output
directory that already holds a run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...gpu_procs import others_gib
from ...runs import rundir
from ...settings import Resolved
from ...units import GIB
from ..messages import AttachRequested, StartRequested
from .modals import Choice

if TYPE_CHECKING:
    from .form import FormScreen

ANSWERS = {
    "attach": ("Attach to it", "a"),
    "resume": ("Resume it", "r"),
    "new": ("New directory", "d"),
    "cancel": ("Cancel", "escape"),
}


def prompts_problem(path: str) -> str | None:
    """A prompts file for the quick look that the engine would refuse after training: refused now."""
    if not path:
        return None
    from ...data.prompts import read_prompts
    from ...data.scan import DatasetError

    try:
        read_prompts(path)
    except DatasetError as e:
        return str(e)
    return None


class StartFlow:
    def __init__(self, form: FormScreen) -> None:
        self.form = form
        self.queue = False  # Queue (ctrl+b) rather than Start

    def start(self, queue: bool = False) -> None:
        self.queue = queue
        form, m = self.form, self.form.model
        if m.resolved is None or not m.valid:
            form.notify("Start refused: fix the marked fields first", severity="error")
            return
        if not m.value("dataset"):
            form.notify("Start refused: choose a dataset", severity="error")
            form.query_one("#i-dataset").focus()
            return
        # the engine would stop on any of these
        problem = (
            form.device_problem()
            or form.dataset_panel.error
            or form.dataset_panel.problem
            or form.dataset_panel.blocking
            or prompts_problem(m.value("eval_prompts"))
        )
        if problem:
            form.notify(f"Start refused: {problem}", severity="error", timeout=10)
            return
        res = m.resolved
        from ...hub_check import hub_names

        hub = hub_names(res["base_model"], res["dataset"])
        if hub or res["method"] == "grpo":  # asked in a thread: keys keep working
            what = ["the reward functions"] if res["method"] == "grpo" else []
            what += ["the model and data on the Hub"] if hub else []
            form.notify(f"Checking {' and '.join(what)}…", timeout=4)
            report = form.dataset_panel.report
            columns = None if report is None or report.hub else list(report.columns)
            form.run_worker(
                lambda: self.check_before(res, hub, columns), thread=True, exclusive=True, group="hub-check"
            )
            return
        self.proceed(res)

    def check_before(self, res: Resolved, hub: bool, columns: list[str] | None) -> None:
        """The reward file imported and its functions checked (in a process of their own), then the Hub."""
        from ...hub_check import check_hub
        from ...reward_check import rewards_problem

        problem = rewards_problem(res, columns)
        if problem:
            self.form.app.call_from_thread(self.checked, res, [problem], [])
            return
        if not hub:
            self.form.app.call_from_thread(self.checked, res, [], [])
            return
        found = check_hub(res["base_model"], res["dataset"], res["trust_remote_code"])
        self.form.app.call_from_thread(self.checked, res, found.problems, found.notes)

    def checked(self, res: Resolved, problems: list[str], notes: list[str]) -> None:
        if problems:
            self.form.notify(f"Start refused: {problems[0]}", severity="error", timeout=15)
            return
        if notes:
            self.form.notify("\n".join(notes), timeout=8)
        self.proceed(res)

    def proceed(self, res: Resolved) -> None:
        form = self.form
        out = Path(res["output_dir"]).expanduser()
        reason = rundir.occupied(out)
        if reason and not res["resume"]:
            answers = [(a, *ANSWERS[a]) for a in rundir.occupied_answers(out)]
            form.app.push_screen(Choice("Output directory in use", reason, answers), lambda a: self.answered(a, res))
            return
        busy = None if self.queue else self.busy()
        if busy:
            form.app.push_screen(
                Choice(
                    "The GPU is busy",
                    busy,
                    [("queue", "Queue it", "q"), ("start", "Start anyway", "s"), ("cancel", "Cancel", "escape")],
                ),
                lambda a: self.go(res, a == "queue") if a in ("queue", "start") else None,
            )
            return
        self.go(res, self.queue)

    def go(self, res: Resolved, queue: bool) -> None:
        self.form.post_message(StartRequested(res, self.form.estimate_gb(), queue))

    def busy(self) -> str | None:
        """The run would fit the card, but not beside what other processes hold on it now."""
        form = self.form
        if form.target is not None or not form.detected or form.plan is None or form.plan.estimate is None:
            return None
        g = form.planned_card()
        need = form.plan.estimate.peak_gib
        if need <= g.available_gib() or need > (g.memory_total - g.memory_reserved) / GIB:
            return None  # fits now, or fits no card of this size: the VRAM panel's steps say what to change
        return (
            f"GPU {g.index} has {g.available_gib():.1f} GB free; this run needs about {need:.1f} GB. "
            f"Other processes hold {others_gib(g):.1f} GB (ctrl+g lists them).\n"
            "Queue it to start by itself once there is room (it survives logout), or start anyway."
        )

    def answered(self, answer: str | None, res: Resolved) -> None:
        form = self.form
        if answer == "resume":
            form.model.apply({"resume": True})
            form.refresh_form()
            if form.model.resolved is not None:
                self.go(form.model.resolved, self.queue)
        elif answer == "new":
            form.model.apply({"output_dir": rundir.free_directory(res["output_dir"])})
            form.refresh_form()
            form.notify(f"Output directory set to {form.model.value('output_dir')}: press ctrl+r to start")
        elif answer == "attach":
            form.post_message(AttachRequested(Path(res["output_dir"]).expanduser()))
