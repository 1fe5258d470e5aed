"""GPU gauges, as nvitop shows them: utilization with history, memory (and the run's share),
temperature, power against its limit, SM clock. N/A with a reason when NVML can't tell."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widget import Widget

from ...gpu_procs import GpuProcess, hidden_note, line
from ...nvml import GIB, GpuReading, GpuSample
from .vram import bar

SPARK = "▁▂▃▄▅▆▇█"


def spark(values: list[float], width: int) -> str:
    vals = values[-width:]
    return "".join(SPARK[min(7, int(v / 100 * 7.999))] for v in vals).rjust(width, " ")


def na(value, fmt: str) -> str:
    return "N/A" if value is None else fmt.format(value)


SHOWN_PROCESSES = 3  # per card, largest first; the rest are counted


def render_processes(g: GpuSample, procs: list[GpuProcess], width: int) -> Text:
    t = Text()
    for p in procs[:SHOWN_PROCESSES]:
        t.append(line(p, width) + "\n", style="bold" if p.run else "")
    if len(procs) > SHOWN_PROCESSES:
        t.append(f"  … {len(procs) - SHOWN_PROCESSES} more\n", style="dim")
    note = hidden_note(g)
    if note:
        t.append(note + "\n", style="yellow")
    return t


def render_gpu(g: GpuSample, history: list[float], own: set[int], width: int) -> Text:
    t = Text()
    t.append(f"GPU {g.index} {g.name}\n", style="bold")
    util = g.utilization
    t.append(f"util {na(util, '{:3d}%')} ")
    t.append(spark(history, max(4, width - 10)) + "\n", style="green")
    frac = g.memory_used / g.memory_total if g.memory_total else 0
    t.append_text(bar(frac, width, "magenta"))
    held = g.used_by(own)
    t.append(f"\nmem {g.memory_used / GIB:.1f}/{g.memory_total / GIB:.1f} GB")
    t.append(f" · run {held / GIB:.1f}\n" if held else "\n", style="bold")
    power = f"{na(g.power_w, '{:.0f}')}/{na(g.power_limit_w, '{:.0f}')} W"
    t.append(f"{na(g.temperature, '{}°C')}  {power}  {na(g.sm_clock_mhz, '{} MHz')}\n", style="dim")
    return t


class GpuPanel(Widget):
    """The latest reading, rendered at the width the panel actually has."""

    DEFAULT_CSS = "GpuPanel { height: auto; padding: 0 1; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.history: dict[int, deque[float]] = {}
        self.selected: set[int] | None = None  # GPU indices the run uses; None = all
        self.reading: GpuReading | None = None
        self.own_pids: set[int] = set()
        self.procs: dict[int, list[GpuProcess]] = {}  # each card's processes, largest first

    def show(self, reading: GpuReading, own_pids: set[int], procs: dict[int, list[GpuProcess]] | None = None) -> None:
        self.reading, self.own_pids, self.procs = reading, own_pids, procs or {}
        for g in reading.gpus:
            if g.utilization is not None:
                self.history.setdefault(g.index, deque(maxlen=120)).append(g.utilization)
        self.refresh(layout=True)

    def render(self) -> Text:
        reading = self.reading
        if reading is None:
            return Text("reading GPUs…", style="dim")
        if not reading.gpus:
            return Text(f"GPU: N/A\n{reading.error}\nthe rest of this screen works as usual", style="yellow")
        width = max(16, self.content_size.width or 32)
        t = Text()
        for g in reading.gpus:
            if self.selected is None or g.index in self.selected:
                t.append_text(render_gpu(g, list(self.history.get(g.index, ())), self.own_pids, width))
                t.append_text(render_processes(g, self.procs.get(g.index, []), width))
        return t
