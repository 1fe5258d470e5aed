"""Two or more runs side by side: their loss curves overlaid (train as lines, evaluations as ◆),
by step or by tokens seen, smoothed on request; preference runs' reward margin or accuracy, or
GRPO runs' reward mean, spread, each reward function's mean, KL, completion length and share
clipped in place of the loss (v: runs/history.py's CURVES); their figures; and only the settings
that differ."""

from __future__ import annotations

from typing import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Header, Static

from ...nvml import GpuSource
from ...runs import history
from ...runs.history import RunRecord
from ..widgets.charts import render_chart
from ..widgets.footer import KeyFooter
from .base import AppScreen

COLOURS = ("cyan", "magenta", "yellow", "green", "red", "blue", "bright_white", "orange3")
SMOOTHING = (0.0, 0.6, 0.9)  # as TensorBoard's slider: the weight of the past
SERIES = history.CURVES  # Curves' fields, with their labels


def colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


class CompareChart(Widget):
    """Every run's training loss (or a reward series: SERIES) in its own colour, its evaluations
    as ◆ in the same colour."""

    def __init__(self, runs: list[RunRecord], **kw) -> None:
        super().__init__(**kw)
        self.runs = runs
        self.x = "step"
        self.smoothing = 0.0
        self.series = "train"  # a field of Curves: SERIES

    def offered(self) -> list[str]:
        return history.offered(self.runs)

    def lines(self) -> list[tuple[list[tuple[float, float]], str]]:
        return [
            (history.smooth(history.series(r.curves.get(self.series), self.x), self.smoothing), colour(i))
            for i, r in enumerate(self.runs)
        ]

    def marks(self) -> list[tuple[list[tuple[float, float]], str]]:
        if self.series != "train":  # evaluations are losses
            return []
        return [(history.series(r.curves.eval, self.x), f"bold {colour(i)}") for i, r in enumerate(self.runs)]

    def render(self) -> Text:
        if not any(r.curves.get(self.series) for r in self.runs):
            return Text(f"none of these runs logged a {history.curve_label(self.series)} yet", style="dim")
        x_label = "step" if self.x == "step" else "tokens"
        return render_chart(self.lines(), self.size.width, self.size.height, x_label, self.marks(), connect=True)


class CompareScreen(AppScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="back to the runs"),
        Binding("x", "toggle_x", "Step/tokens", tooltip="the x axis: optimizer steps or tokens seen"),
        Binding("m", "smooth", "Smoothing", tooltip="smoothing of the training curves: off, 0.6, 0.9"),
        Binding(
            "v",
            "series",
            "Loss/reward",
            tooltip="preference or GRPO runs: the loss, then each reward series (margin, accuracy; mean, spread, KL, …)",
        ),
    ]

    def __init__(self, gpu_source: GpuSource, runs: list[RunRecord]) -> None:
        super().__init__(gpu_source)
        self.runs = runs

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        yield Static(self.legend(), id="legend")
        yield CompareChart(self.runs, id="cmpchart")
        with VerticalScroll(id="cmpfigures"):
            yield Static(self.figures(), id="figures")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.title = "mgtui"
        self.refresh_sub_title()

    def refresh_sub_title(self) -> None:
        chart = self.query_one(CompareChart)
        smoothing = f"smoothing {chart.smoothing}" if chart.smoothing else "raw"
        shown = f" · {history.curve_label(chart.series)}" if len(chart.offered()) > 1 else ""  # beside reward runs
        self.sub_title = f"compare {len(self.runs)} runs{shown} · x: {chart.x} · {smoothing}"

    def legend(self) -> Text:
        t = Text()
        for i, r in enumerate(self.runs):
            t.append("━━ ", style=colour(i))
            t.append(r.name + "  ")
        t.append("◆ eval", style="dim")
        return t

    def figures(self) -> Table:
        summary, settings = history.compare_rows(self.runs)
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
        table.add_column("")
        for i, r in enumerate(self.runs):
            table.add_column(Text(r.name, style=f"bold {colour(i)}"), overflow="fold")
        for name, cells in summary:
            table.add_row(Text(name, style="dim"), *cells)
        table.add_section()
        if settings:
            table.add_row(Text("settings that differ", style="bold"), *[""] * len(self.runs))
            for name, cells in settings:
                table.add_row(Text(name, style="dim"), *cells)
        else:
            table.add_row(Text("settings: all the same", style="dim"), *[""] * len(self.runs))
        return table

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_toggle_x(self) -> None:
        chart = self.query_one(CompareChart)
        chart.x = "tokens" if chart.x == "step" else "step"
        chart.refresh()
        self.refresh_sub_title()

    def action_smooth(self) -> None:
        chart = self.query_one(CompareChart)
        chart.smoothing = SMOOTHING[(SMOOTHING.index(chart.smoothing) + 1) % len(SMOOTHING)]
        chart.refresh()
        self.refresh_sub_title()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """v only where a preference or GRPO run logged rewards (off the footer otherwise)."""
        if action == "series":
            return len(history.offered(self.runs)) > 1
        return True

    def action_series(self) -> None:
        chart = self.query_one(CompareChart)
        series = chart.offered()
        chart.series = series[(series.index(chart.series) + 1) % len(series)]
        chart.refresh()
        self.refresh_sub_title()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Step or tokens on the x axis", "Toggle (x)", self.action_toggle_x)
        yield SystemCommand("Smooth the curves", "Off, 0.6, 0.9 (m)", self.action_smooth)
        if len(history.offered(self.runs)) > 1:
            yield SystemCommand("Loss or a reward series", "Preference or GRPO runs (v)", self.action_series)
