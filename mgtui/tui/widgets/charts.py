"""A loss chart with axes, drawn with Braille dots (2×4 per cell): every point is kept; each
column shows its points' mean, so 30 000 steps draw almost as fast as 300."""

from __future__ import annotations

from bisect import bisect_left
from operator import itemgetter

from rich.text import Text
from textual.widget import Widget

from ...runs.view import BAND, FUNC, ChartView, chart_views, functions

_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col] bits of a Braille cell


def _columns(
    points: list[tuple[float, float]], cols: int, x0: float, x1: float, connect: bool = False
) -> list[float | None]:
    """Each column's mean, for points in step order: contiguous slices summed in C, so a 30 000
    point history costs a fraction of a millisecond. A series that spans only part of the x range
    (a shorter run beside a longer one) is sliced by x."""
    n = len(points)
    if n == 0:
        return [None] * cols
    ys = [y for _, y in points] if n <= cols else None
    if ys is not None:  # fewer points than columns: place each one by its step
        out: list[float | None] = [None] * cols
        placed: list[tuple[int, float]] = []
        for x, y in points:
            c = min(cols - 1, int((x - x0) / max(x1 - x0, 1e-9) * cols))
            out[c] = y
            placed.append((c, y))
        if connect:  # a line through the points, not dots: curves that cross stay readable
            for (ca, ya), (cb, yb) in zip(placed, placed[1:]):
                for c in range(ca + 1, cb):
                    out[c] = ya + (yb - ya) * (c - ca) / (cb - ca)
        return out
    values = list(map(itemgetter(1), points))
    if points[0][0] == x0 and points[-1][0] == x1:
        bounds = [round(i * n / cols) for i in range(cols + 1)]
    else:
        xs = list(map(itemgetter(0), points))
        bounds = [bisect_left(xs, x0 + i * (x1 - x0) / cols) for i in range(cols)] + [n]
    return [sum(values[a:b]) / (b - a) if b > a else None for a, b in zip(bounds, bounds[1:])]


def _tick(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.1f}M"
    return f"{x / 1e3:.1f}k" if x >= 1e4 else f"{int(x)}"


Series = list[tuple[list[tuple[float, float]], str]]


def render_chart(
    series: Series,
    width: int,
    height: int,
    x_label: str = "step",
    markers: Series | None = None,
    connect: bool = False,
) -> Text:
    """series: ([(x, value)], style), drawn as dots, joined where `connect`; markers: the same,
    drawn as ◆ at each point (evaluations beside training curves). Returns `height` lines of
    `width` cells with axes."""
    series = [(s, style) for s, style in series if s]
    markers = [(s, style) for s, style in markers or [] if s]
    if not series or width < 12 or height < 3:
        return Text("waiting for the first loss…", style="dim")
    both = series + markers
    lo = min(min(map(itemgetter(1), s)) for s, _ in both)
    hi = max(max(map(itemgetter(1), s)) for s, _ in both)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = min(s[0][0] for s, _ in both), max(s[-1][0] for s, _ in both)  # each in x order
    fmt = ".2f" if hi - lo >= 0.05 else ".3g"  # a small range (KL, a flat loss) keeps its digits
    label_w = max(len(f"{hi:{fmt}}"), len(f"{lo:{fmt}}")) + 1
    cols = width - label_w
    rows = height - 1
    grid = [[0] * cols for _ in range(rows)]
    owner: list[list[str]] = [[""] * cols for _ in range(rows)]
    for points, style in series:
        for sub_c, y in enumerate(_columns(points, cols * 2, x0, x1, connect)):
            if y is None:
                continue
            level = int((y - lo) / (hi - lo) * (rows * 4 - 1))
            r, dot_r = divmod(rows * 4 - 1 - level, 4)
            c, dot_c = divmod(sub_c, 2)
            grid[r][c] |= _DOTS[dot_r][dot_c]
            owner[r][c] = style
    marks: dict[tuple[int, int], str] = {}
    for points, style in markers:
        for x, y in points:
            c = min(cols - 1, int((x - x0) / max(x1 - x0, 1e-9) * cols))
            marks[(rows - 1 - int((y - lo) / (hi - lo) * (rows - 1) + 0.5), c)] = style
    t = Text()
    for r in range(rows):
        label = f"{hi:{fmt}}" if r == 0 else f"{lo:{fmt}}" if r == rows - 1 else ""
        t.append(f"{label:>{label_w - 1}}┤", style="dim")
        for c in range(cols):
            if (r, c) in marks:
                t.append("◆", style=marks[(r, c)])
            else:
                t.append(chr(0x2800 + grid[r][c]) if grid[r][c] else " ", style=owner[r][c])
        t.append("\n")
    axis = f"{x_label} {_tick(x0)}"
    end = _tick(x1)
    t.append(" " * (label_w - 1) + "└" + axis + "─" * max(1, cols - len(axis) - len(end)) + end, style="dim")
    return t


class LossChart(Widget):
    """Training loss (dim), its moving average (bold), evaluation loss (yellow)."""

    DEFAULT_CSS = "LossChart { height: 9; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.train: list[tuple[float, float]] = []
        self.eval: list[tuple[float, float]] = []

        self.smoothed: list[tuple[float, float]] = []

    def set_data(
        self, train: list[tuple[float, float]], smoothed: list[tuple[float, float]], eval_: list[tuple[float, float]]
    ) -> None:
        self.train, self.smoothed, self.eval = train, smoothed, eval_
        self.refresh()

    def render(self) -> Text:
        return render_chart(
            [(self.train, "grey50"), (self.smoothed, "bold cyan"), (self.eval, "bold yellow")],
            self.size.width,
            self.size.height,
        )


# Each series' colour on the reward chart; a GRPO run's reward functions take FUNC_STYLES in turn.
STYLES = {
    "reward_chosen": "bold green", "reward_rejected": "bold red", "reward_margin": "bold cyan",
    "reward": "bold green", BAND[0]: "grey50", BAND[1]: "grey50", "kl": "bold magenta", "entropy": "bold blue",
    "completion_length": "bold cyan", "completion_length_max": "grey50", "clipped_ratio": "bold yellow",
    "frac_reward_zero_std": "bold red",
}  # fmt: skip
FUNC_STYLES = ("cyan", "yellow", "magenta", "blue", "red", "bright_white")


def styles(series: dict[str, list[tuple[float, float]]]) -> dict[str, str]:
    return {**STYLES, **{FUNC + f: FUNC_STYLES[i % len(FUNC_STYLES)] for i, f in enumerate(functions(series))}}


class RewardChart(Widget):
    """A preference run's rewards beside the loss: chosen (green), rejected (red), margin (cyan).
    A GRPO run's views (runs/view.py: chart_views), one at a time under a legend: the reward mean
    (green) in its ±std band (grey) with each function's mean, KL, completion lengths, the shares
    clipped and without spread, entropy. Hidden until a run reports them."""

    DEFAULT_CSS = "RewardChart { height: 7; display: none; } RewardChart.-shown { display: block; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.view = 0  # which of chart_views: the run screen's `v` steps on

    def views(self) -> list[ChartView]:
        return chart_views(self.series)

    def shown(self) -> ChartView | None:
        views = self.views()
        return views[self.view % len(views)] if views else None

    def set_data(self, series: dict[str, list[tuple[float, float]]]) -> None:
        self.series = series
        self.set_class(bool(self.views()), "-shown")
        self.refresh()

    def next_view(self) -> None:
        self.view = (self.view + 1) % max(1, len(self.views()))
        self.refresh()

    def legend(self, view: ChartView) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{view.name}:", style="bold")
        colours = styles(self.series)
        for key, label in view.lines:
            if label and self.series.get(key):
                t.append(" ━", style=colours.get(key, ""))
                t.append(label)
        return t

    def render(self) -> Text:
        view = self.shown()
        if view is None:
            return Text("")
        colours = styles(self.series)
        lines = [(self.series.get(k, []), colours.get(k, "")) for k, _ in view.lines]
        if view.name is None:  # a preference run's rewards: the metrics beside name the colours
            return render_chart(lines, self.size.width, self.size.height, connect=True)
        t = self.legend(view)
        t.truncate(self.size.width, overflow="ellipsis")
        t.append("\n")
        t.append_text(render_chart(lines, self.size.width, self.size.height - 1, connect=True))
        return t
