"""A run's state, folded from its events: what the run screen shows. Pure; the same fold serves
a live run, a reattach (history first) and a finished run opened later."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import TERMINAL

SMOOTHING = 0.1  # weight of the newest loss in the moving average


@dataclass
class RunView:
    phase: str = "starting"
    phase_progress: float | None = None
    phase_detail: str = ""
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
    peak_gb: float | None = None
    estimate_gb: float | None = None
    backend: str = ""
    device: str = ""
    world_size: int = 1
    dataset: dict[str, Any] | None = None
    log: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    end: dict[str, Any] | None = None  # the terminal event
    started_t: float | None = None
    last_seq: int = -1
    missed: int = 0  # gaps in seq: events a reader never saw

    @property
    def finished(self) -> bool:
        return self.end is not None

    def apply(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            seq = e.get("seq", self.last_seq + 1)
            if seq > self.last_seq + 1:
                self.missed += seq - self.last_seq - 1
            self.last_seq = max(self.last_seq, seq)
            getattr(self, "_on_" + e.get("type", ""), self._on_other)(e)

    def _on_phase(self, e: dict[str, Any]) -> None:
        changed = (e["phase"], e.get("detail", "")) != (self.phase, self.phase_detail)
        if changed and e.get("progress") in (None, 0, 0.0):  # progress updates are shown, not logged
            self.log.append(("phase", e["phase"].replace("_", " ") + (f": {e['detail']}" if e.get("detail") else "")))
        self.phase = e["phase"]
        self.phase_progress = e.get("progress")
        self.phase_detail = e.get("detail", "")
        if e.get("total_steps"):
            self.total_steps = e["total_steps"]

    def _on_start(self, e: dict[str, Any]) -> None:
        self.backend, self.device = e.get("backend", ""), e.get("device", "")
        self.world_size = e.get("world_size", 1)
        self.estimate_gb = e.get("estimate_gb", self.estimate_gb)
        self.started_t = self.started_t or e.get("t")
        self.log.append(("info", f"engine: {self.backend} on {self.device}, {e.get('precision')}-bit, "
                                 f"{self.world_size} process(es)"))

    def _on_dataset(self, e: dict[str, Any]) -> None:
        self.dataset = e
        tok = e.get("tokens", {})
        self.log.append(("info", f"dataset: {e.get('rows')} rows, {e.get('format')}, mean {tok.get('mean')} tokens, "
                                 f"{e.get('truncated', 0)} truncated"))

    def _on_log(self, e: dict[str, Any]) -> None:
        self.step, self.total_steps = e.get("step", self.step), e.get("total_steps") or self.total_steps
        self.epoch = e.get("epoch") or self.epoch
        for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "eta_s", "elapsed_s"):
            if e.get(key) is not None:
                setattr(self, key, e[key])
        if e.get("loss") is not None:
            self.losses.append((e["step"], e["loss"]))
            prev = self.smoothed[-1][1] if self.smoothed else e["loss"]
            self.smoothed.append((e["step"], SMOOTHING * e["loss"] + (1 - SMOOTHING) * prev))

    def _on_eval(self, e: dict[str, Any]) -> None:
        if e.get("eval_loss") is not None:
            self.eval_losses.append((e["step"], e["eval_loss"]))
            self.log.append(("info", f"eval loss {e['eval_loss']:.4f} at step {e['step']}"))

    def _on_memory(self, e: dict[str, Any]) -> None:
        self.peak_gb = e.get("peak_reserved_gb", self.peak_gb)

    def _on_warning(self, e: dict[str, Any]) -> None:
        self.log.append(("warning", e["message"]))

    def _on_message(self, e: dict[str, Any]) -> None:
        self.log.append(("info", e["message"]))

    def _on_other(self, e: dict[str, Any]) -> None:
        if e.get("type") in TERMINAL:
            self.end = e
            self.phase = e["type"]
            if e.get("steps"):
                self.step = e["steps"]
            self.log.append(("error" if e["type"] == "failed" else "info", f"{e['type']}: {e.get('message', '')}".rstrip(": ")))

    _on_done = _on_stopped = _on_failed = _on_other
