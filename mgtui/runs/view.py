"""A run's state, folded from its events: what the run screen shows. Pure; the same fold serves
a live run, a reattach (history first) and a finished run opened later."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import GRPO_SERIES, PREFERENCE_SERIES, TERMINAL

SMOOTHING = 0.1  # weight of the newest loss in the moving average
SCALARS = tuple(dict.fromkeys(PREFERENCE_SERIES + GRPO_SERIES))  # a log event's series, each once
FUNC = "reward:"  # a GRPO reward function's mean in RunView.series: "reward:<function>"
FUNC_STD = "reward_std:"  # and its spread: "reward_std:<function>"
BAND = ("reward+std", "reward-std")  # GRPO's reward mean plus and minus its spread, drawn as a band
PROMPT_CHARS = 160  # a sample's prompt, cut to one short line: the completion is what is read


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def phase_line(e: dict[str, Any]) -> str:
    """A phase with its progress: for a download, bytes done of the total, speed and time left."""
    line = e["phase"].replace("_", " ")
    if e.get("progress") is not None:
        line += f" {e['progress']:.0%}"
    if e.get("total_bytes"):
        line += f" · {fmt_bytes(e.get('done_bytes') or 0)} of {fmt_bytes(e['total_bytes'])}"
        if e.get("speed_bps"):
            line += f" · {fmt_bytes(e['speed_bps'])}/s · ETA {fmt_duration(e.get('eta_s'))}"
    return line + (f" · {e['detail']}" if e.get("detail") else "")


def describe(e: dict[str, Any]) -> str | None:
    """One line for an event, or None for events only the progress line shows."""
    t = e["type"]
    if t == "phase":
        if e.get("progress") not in (None, 0.0):
            return None  # the progress line is enough
        p = f" {e['progress']:.0%}" if e.get("progress") is not None and e["phase"] == "preparing_data" else ""
        return f"phase: {e['phase'].replace('_', ' ')}{p}{' - ' + e['detail'] if e.get('detail') else ''}"
    if t == "start":
        return f"engine: {e['backend']} on {e['device']} ({e.get('precision')}-bit), estimate {e.get('estimate_gb')} GB"
    if t == "dataset":
        tok = e["tokens"]
        return (
            f"dataset: {e['rows']} rows, {e['format']}, tokens min {tok['min']} mean {tok['mean']} max {tok['max']}"
            f" (max_seq_length {e['max_seq_length']}, {e['truncated']} truncated)"
        )
    if t in ("warning", "message"):
        return f"{t}: {e['message']}"
    if t == "answers":
        return f"answers: {e['count']} prompts answered by the tuned and the base model, in {e['path']}"
    if t == "eval":
        return f"eval: step {e['step']} loss {e.get('eval_loss')}"
    if t == "done":
        return f"done: {e['steps']} steps in {fmt_duration(e['runtime_s'])}, final loss {e.get('final_loss')}; adapter in {e['adapter']}"
    if t == "stopped" and e.get("download"):
        return f"stopped: {e['message']}"
    if t == "stopped":
        return f"stopped at step {e['steps']}; adapter in {e['adapter']}; continue with --resume"
    if t == "failed":
        lines = [f"failed ({e['kind']}) at step {e.get('step')}: {e['message']}"]
        for a in e.get("advice") or []:
            lines.append(f"  try: {a['title']} → {a['peak_gb']} GB{' (fits)' if a['fits'] else ''}")
        lines += [f"  try: {a}" for a in e.get("advice_text") or []]
        return "\n".join(lines)
    return None


@dataclass(frozen=True)
class ChartView:
    """One view of a run's reward chart: its name (None: the only view, drawn without a legend)
    and the series it draws, (key in RunView.series, label; "" keeps it off the legend)."""

    name: str | None
    lines: tuple[tuple[str, str], ...]


def is_grpo(series: dict[str, list[tuple[float, float]]]) -> bool:
    return "reward" in series or any(k.startswith(FUNC) for k in series)


def functions(series: dict[str, list[tuple[float, float]]]) -> list[str]:
    """The reward functions a GRPO run logged, in the order they first appeared."""
    return [k.removeprefix(FUNC) for k in series if k.startswith(FUNC)]


def chart_views(series: dict[str, list[tuple[float, float]]]) -> list[ChartView]:
    """The views of a run's reward chart (the run screen's `v` steps through them), each on one
    scale: a preference run's rewards; GRPO's reward mean with its spread and each function's
    mean, then KL, completion lengths, the shares clipped and without spread, and entropy. Only
    the views the run logged."""
    if not is_grpo(series):
        lines = (("reward_chosen", "chosen"), ("reward_rejected", "rejected"), ("reward_margin", "margin"))
        return [ChartView(None, lines)] if any(series.get(k) for k, _ in lines) else []
    views = [
        ChartView("reward", (("reward", "mean"), (BAND[0], "±std"), (BAND[1], ""),
                             *((FUNC + f, f) for f in functions(series)))),
        ChartView("KL", (("kl", "KL to the reference"),)),
        ChartView("completion length", (("completion_length", "mean"), ("completion_length_max", "max"))),
        ChartView("clipped", (("clipped_ratio", "cut at max length"), ("frac_reward_zero_std", "groups without spread"))),
        ChartView("entropy", (("entropy", "entropy"),)),
    ]  # fmt: skip
    return [v for v in views if any(series.get(k) for k, _ in v.lines)]


@dataclass(frozen=True)
class Sample:
    """One sampled completion, as the completions panel shows it."""

    prompt: str  # one line, cut at PROMPT_CHARS
    completion: str
    reward: float | None
    rewards: dict[str, float | None]
    advantage: float | None


def one_line(text: Any, limit: int = PROMPT_CHARS) -> str:
    """A prompt as one short line: a chat prompt's messages joined, whitespace collapsed."""
    if isinstance(text, list):  # conversational: [{role, content}]
        text = " · ".join(str(m.get("content", m) if isinstance(m, dict) else m) for m in text)
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def samples(event: dict[str, Any] | None) -> list[Sample]:
    """A `completions` event's samples, each with its prompt cut short; none for None."""
    out = []
    for s in (event or {}).get("samples") or []:
        if not isinstance(s, dict):
            continue
        completion = s.get("completion")
        if isinstance(completion, list):  # conversational: the assistant's messages
            completion = "\n".join(str(m.get("content", "") if isinstance(m, dict) else m) for m in completion)
        out.append(
            Sample(one_line(s.get("prompt")), str(completion or ""), s.get("reward"), dict(s.get("rewards") or {}),
                   s.get("advantage"))
        )  # fmt: skip
    return out


@dataclass
class RunView:
    phase: str = "starting"
    phase_t: float | None = None  # when the phase began (event time)
    phase_event: dict[str, Any] = field(default_factory=dict)  # its latest event: bytes, speed, ETA
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None
    losses: list[tuple[float, float]] = field(default_factory=list)  # every logged (step, loss)
    smoothed: list[tuple[float, float]] = field(default_factory=list)  # its moving average, kept as it grows
    eval_losses: list[tuple[float, float]] = field(default_factory=list)
    # A preference or GRPO run's series beside the loss (events.py: PREFERENCE_SERIES, GRPO_SERIES;
    # GRPO's per-function means and spreads as FUNC/FUNC_STD + name, its band as BAND): name -> [(step, value)]
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    completions: dict[str, Any] | None = None  # GRPO: the latest `completions` event
    method: str = ""  # the start event's settings: sft, dpo, ..., grpo
    peak_gb: float | None = None  # torch's peak reserved
    peak_nvml_gb: float | None = None  # the process as nvidia-smi shows it
    estimate_gb: float | None = None
    backend: str = ""
    device: str = ""
    world_size: int = 1
    dataset: dict[str, Any] | None = None
    log: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    end: dict[str, Any] | None = None  # the terminal event
    answers: dict[str, Any] | None = None  # --eval-prompts answered: path, count, sample
    started_t: float | None = None
    last_seq: int = -1
    missed: int = 0  # gaps in seq: events a reader never saw

    @property
    def finished(self) -> bool:
        return self.end is not None

    def _note(self, kind: str, e: dict[str, Any]) -> None:
        text = describe(e)
        if text:
            self.log.append((kind, text))

    def apply(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            seq = e.get("seq", self.last_seq + 1)
            if seq > self.last_seq + 1:
                self.missed += seq - self.last_seq - 1
            self.last_seq = max(self.last_seq, seq)
            getattr(self, "_on_" + e.get("type", ""), self._on_other)(e)

    def _on_phase(self, e: dict[str, Any]) -> None:
        changed = (e["phase"], e.get("detail", "")) != (self.phase, self.phase_event.get("detail", ""))
        if changed and e.get("progress") in (None, 0, 0.0):  # progress updates are shown, not logged
            self._note("phase", e)
        if e["phase"] != self.phase:
            self.phase_t = e.get("t")
        self.phase = e["phase"]
        self.phase_event = e
        if e.get("total_steps"):
            self.total_steps = e["total_steps"]

    def _on_start(self, e: dict[str, Any]) -> None:
        self.backend, self.device = e.get("backend", ""), e.get("device", "")
        self.world_size = e.get("world_size", 1)
        self.estimate_gb = e.get("estimate_gb", self.estimate_gb)
        self.started_t = self.started_t or e.get("t")
        self.method = str((e.get("settings") or {}).get("method") or self.method)
        self._note("info", e)

    def _on_dataset(self, e: dict[str, Any]) -> None:
        self.dataset = e
        self._note("info", e)

    def _on_log(self, e: dict[str, Any]) -> None:
        self.step, self.total_steps = e.get("step", self.step), e.get("total_steps") or self.total_steps
        self.epoch = e.get("epoch") or self.epoch
        for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "eta_s", "elapsed_s"):
            if e.get(key) is not None:
                setattr(self, key, e[key])
        step = e.get("step", self.step)
        for key in SCALARS:
            if e.get(key) is not None:
                self.series.setdefault(key, []).append((step, e[key]))
        if e.get("reward") is not None and e.get("reward_std") is not None:
            self.series.setdefault(BAND[0], []).append((step, e["reward"] + e["reward_std"]))
            self.series.setdefault(BAND[1], []).append((step, e["reward"] - e["reward_std"]))
        for prefix, key in ((FUNC, "reward_funcs"), (FUNC_STD, "reward_funcs_std")):
            for name, value in (e.get(key) or {}).items():
                if value is not None:
                    self.series.setdefault(prefix + name, []).append((step, value))
        if e.get("loss") is not None:
            self.losses.append((e["step"], e["loss"]))
            prev = self.smoothed[-1][1] if self.smoothed else e["loss"]
            self.smoothed.append((e["step"], SMOOTHING * e["loss"] + (1 - SMOOTHING) * prev))

    def _on_completions(self, e: dict[str, Any]) -> None:
        if e.get("samples"):
            self.completions = e

    def _on_eval(self, e: dict[str, Any]) -> None:
        if e.get("eval_loss") is not None:
            self.eval_losses.append((e["step"], e["eval_loss"]))
            self._note("info", e)

    @property
    def measured_gb(self) -> float | None:
        """The peak to hold against the estimate: NVML's (it includes the CUDA context, as the
        estimate does) where NVML could see the process, else torch's reserved pool."""
        return self.peak_nvml_gb if self.peak_nvml_gb is not None else self.peak_gb

    def _on_memory(self, e: dict[str, Any]) -> None:
        self.peak_gb = e.get("peak_reserved_gb", self.peak_gb)
        self.peak_nvml_gb = e.get("peak_nvml_gb", self.peak_nvml_gb)

    def _on_answers(self, e: dict[str, Any]) -> None:
        self.answers = e
        self._note("info", e)

    def _on_warning(self, e: dict[str, Any]) -> None:
        self._note("warning", e)

    def _on_message(self, e: dict[str, Any]) -> None:
        self._note("info", e)

    def _on_other(self, e: dict[str, Any]) -> None:
        if e.get("type") in TERMINAL:
            self.end = e
            self.phase = e["type"]
            if e.get("steps"):
                self.step = e["steps"]
            self._note("error" if e["type"] == "failed" else "info", e)

    _on_done = _on_stopped = _on_failed = _on_other
