"""The VRAM panel: the estimate against the available memory, its breakdown, the fit search,
and, when it won't fit, the guide's steps with their new estimates (each one key away)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widget import Widget

if TYPE_CHECKING:
    from ...estimate import MemoryPlan

SHORT = {
    "cuda_context": "context",
    "base_weights": "weights",
    "lora_weights": "lora",
    "gradients": "grads",
    "optimizer_states": "optim",
    "activations": "activ",
    "logits_and_loss": "logits",
    "evaluation": "eval",
    "allocator_overhead": "alloc",
}
STYLE = {"fits": "green", "tight": "yellow", "over": "bold red", "unknown": "cyan"}


def bar(fraction: float, width: int, style: str) -> Text:
    filled = max(0, min(width, round(fraction * width)))
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")


def render_plan(p: MemoryPlan | None, width: int = 32, pending: str = "", busy: str = "") -> Text:
    t = Text()
    if p is None:
        return Text(pending or "waiting for valid settings", style="dim")
    gpu = p.gpu_label or "no GPU"
    t.append(f"{gpu}\n", style="bold")
    if busy:
        t.append(busy + "\n", style="yellow")
    e = p.estimate
    if e is None:
        t.append(p.lookup.source + "\n", style="yellow")
        return t
    if e.unreliable:
        t.append(f"peak {e.peak_gib:.1f} GB · ", style="bold")
        t.append("fits: unknown\n", style="cyan")
        t.append(f"UNRELIABLE: {e.unreliable}\n", style="bold yellow")
    elif p.gpu_gib:
        frac = e.peak_gib / p.gpu_gib
        t.append_text(bar(frac, width, STYLE[e.state]))
        label = {"fits": "fits", "tight": "TIGHT ≥90%", "over": "OVER"}[e.state]
        if p.sharded and e.state != "over":
            label += f" sharded over {p.world_size}"
        t.append(f"\n{e.peak_gib:.1f} / {p.gpu_gib:.1f} GB  {frac:.0%}  ", style="bold")
        t.append(label + "\n", style=STYLE[e.state])
    else:
        t.append(f"peak {e.peak_gib:.1f} GB · ", style="bold")
        t.append("fits: unknown\n", style="cyan")
        t.append("no GPU here: pick a target (ctrl+g)\n", style="dim")
    items = [(SHORT[k], v) for k, v in e.breakdown.items()]
    for i in range(0, len(items), 2):
        row = "  ".join(f"{name:<7}{value:6.2f}" for name, value in items[i : i + 2])
        t.append(row + "\n", style="dim" if i else "")
    if e.cpu_ram_gib:
        t.append(f"host RAM (offload) {e.cpu_ram_gib:.1f} GB\n")
    per_gpu = f"per GPU × {p.world_size} processes · " if p.world_size > 1 else ""
    t.append(f"{per_gpu}effective batch {p.effective_batch}\n", style="dim")
    t.append(f"backend: {p.backend}\n", style="dim")
    if p.max_batch_size is not None or p.gpu_gib:
        t.append(f"max batch {p.max_batch_size or '-'} · max seq {p.max_seq_length or '-'}\n", style="dim")
    for note in e.notes:
        t.append(note + "\n", style="dim italic")
    if p.steps:
        t.append("Out of memory - try in order:\n", style="bold red")
        for i, s in enumerate(p.steps, 1):
            mark = "✓" if s.fits else "✗"
            t.append(f"alt+{i} ", style="bold")
            t.append(
                f"{s.short[: width - 15]:<{width - 15}} {s.estimate.peak_gib:5.1f} {mark}\n",
                style="green" if s.fits else "",
            )
    return t


class VramPanel(Widget):
    """Rendered at render time, at the width it actually has (a width read at update time can
    predate layout)."""

    DEFAULT_CSS = "VramPanel { height: auto; padding: 0 1; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.plan: MemoryPlan | None = None
        self.pending = ""
        self.busy = ""  # other processes hold memory on the card planned for

    def show(self, p: MemoryPlan | None, pending: str = "", busy: str = "") -> None:
        self.plan, self.pending, self.busy = p, pending, busy
        self.refresh(layout=True)

    def render(self) -> Text:
        return render_plan(self.plan, max(20, self.content_size.width or 32), self.pending, self.busy)
