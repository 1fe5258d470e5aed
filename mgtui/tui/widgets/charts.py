"""A loss chart with axes, drawn with Braille dots (2×4 per cell): every point is kept; each
column shows its points' mean, so 30 000 steps draw as fast as 300."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col] bits of a Braille cell


def smooth(values: list[float], alpha: float = 0.1) -> list[float]:
    out, ema = [], None
    for v in values:
        ema = v if ema is None else alpha * v + (1 - alpha) * ema
        out.append(ema)
    return out


def _columns(points: list[tuple[float, float]], x0: float, x1: float, cols: int) -> list[float | None]:
    sums, counts = [0.0] * cols, [0] * cols
    span = max(x1 - x0, 1e-9)
    for x, y in points:
        c = min(cols - 1, int((x - x0) / span * cols))
        sums[c] += y
        counts[c] += 1
    return [s / n if n else None for s, n in zip(sums, counts)]


def render_chart(series: list[tuple[list[tuple[float, float]], str]], width: int, height: int) -> Text:
    """series: ([(step, value)], style). Returns `height` lines of `width` cells with a y axis."""
    pts = [p for s, _ in series for p in s]
    if not pts or width < 12 or height < 3:
        return Text("waiting for the first loss…", style="dim")
    ys = [y for _, y in pts]
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = min(x for x, _ in pts), max(x for x, _ in pts)
    label_w = max(len(f"{hi:.2f}"), len(f"{lo:.2f}")) + 1
    cols = width - label_w
    rows = height - 1
    grid = [[0] * cols for _ in range(rows)]
    owner: list[list[str]] = [[""] * cols for _ in range(rows)]
    for points, style in series:
        for sub_c, y in enumerate(_columns(points, x0, x1, cols * 2)):
            if y is None:
                continue
            level = int((y - lo) / (hi - lo) * (rows * 4 - 1))
            r, dot_r = divmod(rows * 4 - 1 - level, 4)
            c, dot_c = divmod(sub_c, 2)
            grid[r][c] |= _DOTS[dot_r][dot_c]
            owner[r][c] = style
    t = Text()
    for r in range(rows):
        label = f"{hi:.2f}" if r == 0 else f"{lo:.2f}" if r == rows - 1 else ""
        t.append(f"{label:>{label_w - 1}}┤", style="dim")
        for c in range(cols):
            t.append(chr(0x2800 + grid[r][c]) if grid[r][c] else " ", style=owner[r][c])
        t.append("\n")
    axis = f"step {int(x0)}"
    end = f"{int(x1)}"
    t.append(" " * (label_w - 1) + "└" + axis + "─" * max(1, cols - len(axis) - len(end)) + end, style="dim")
    return t


class LossChart(Widget):
    """Training loss (dim), its moving average (bold), evaluation loss (yellow)."""

    DEFAULT_CSS = "LossChart { height: 9; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.train: list[tuple[float, float]] = []
        self.eval: list[tuple[float, float]] = []

    def set_data(self, train: list[tuple[float, float]], eval_: list[tuple[float, float]]) -> None:
        self.train, self.eval = train, eval_
        self.refresh()

    def render(self) -> Text:
        ema = list(zip([x for x, _ in self.train], smooth([y for _, y in self.train])))
        return render_chart([(self.train, "grey50"), (ema, "bold cyan"), (self.eval, "bold yellow")],
                            self.size.width, self.size.height)
