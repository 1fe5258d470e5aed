"""The form's two GPU pickers: the card to plan the estimate for (ctrl+g), and the cards to train
on (enter on the gpus field)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...estimate.gpu_catalog import COMMON_GPUS
from ...gpu_procs import HIDDEN_GIB, hidden_note, line, others_gib, processes
from ...nvml import GpuSample
from ...runs.registry import runs_by_pid
from ...units import comma_list, gib
from .modals import PickMany, PickOne

if TYPE_CHECKING:
    from .form import FormScreen

NO_TARGET = "__none__"


class GpuPickers:
    def __init__(self, form: FormScreen) -> None:
        self.form = form

    def process_lines(self, g: GpuSample, width: int = 70) -> list[str]:
        """Who holds the card: its processes (this user's mgtui runs named), or why none are shown."""
        candidates = set(g.process_memory)
        procs = processes(g, runs_by_pid(candidates), self.form.gpu_source.describe)
        out = [line(p, width) for p in procs]
        note = hidden_note(g)
        return [*out, *([note] if note else [])] or ["no process holds memory on it"]

    @staticmethod
    def holders(g: GpuSample) -> str:
        held = others_gib(g)
        if held <= HIDDEN_GIB:
            return ""
        n = len(g.process_memory)
        return f" · {n or 'hidden'} process{'es' if n != 1 else ''} hold {held:.1f} GB"

    def pick_training_gpus(self) -> None:
        form = self.form
        found = form.detected
        if not found:
            why = form.gpus.error if form.gpus else "still reading the GPUs"
            form.notify(
                f"No GPU detected here ({why}): type the indices for the machine the run will use", severity="warning"
            )
            return
        chosen = set(comma_list(form.model.value("gpus")))
        options = [
            (
                str(g.index),
                f"GPU {g.index}: {g.name} · {gib(g.memory_used):.1f} of {gib(g.memory_total):.0f} GB used"
                + (f" · {g.utilization}% busy" if g.utilization is not None else "")
                + self.holders(g),
                not chosen or str(g.index) in chosen,
            )
            for g in found
        ]

        def picked(keys: list[str] | None) -> None:
            if keys is None:
                return
            if not keys:
                form.notify("No GPU ticked: the field is unchanged", severity="warning")
                return
            every = len(keys) == len(found)  # all of them: the default, "all visible"
            form.model.apply({"gpus": "" if every else ",".join(sorted(keys, key=int))})
            form.refresh_form()

        form.app.push_screen(PickMany("Train on which GPUs?", options), picked)

    def pick_planning_card(self) -> None:
        form = self.form
        options: list[tuple[str, str]] = []
        for g in form.detected:
            options.append((f"gpu:{g.index}", f"GPU {g.index}: {g.name} · {g.available_gib():.1f} GB free"))
        options += [(f"plan:{name}", f"{name} · {size:.1f} GB (planning)") for name, size in COMMON_GPUS.items()]
        options.append((NO_TARGET, "No target: show the estimate only"))

        def details(key: str) -> str:
            if key.startswith("gpu:") and form.gpus:
                g = form.gpus.gpus[int(key[4:])]
                return "\n".join(["The detected GPU's total minus what other processes hold:", *self.process_lines(g)])
            return "Plan a run for a GPU you don't have here" if key.startswith("plan:") else ""

        def chosen(key: str | None) -> None:
            if key is None:
                return
            if key.startswith("gpu:") and form.gpus:
                g = form.gpus.gpus[int(key[4:])]
                form.target = (f"GPU {g.index} {g.name} (free)", g.available_gib())
            elif key.startswith("plan:"):
                form.target = (key[5:] + " (planning)", COMMON_GPUS[key[5:]])
            else:
                form.target = ("no target", None)
            form.refresh_estimate()

        form.app.push_screen(PickOne("Plan for which GPU?", options, details), chosen)
