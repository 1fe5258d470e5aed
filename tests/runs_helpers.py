"""Run directories for the runs screen's tests, made from the recorded event logs with settings
and losses changed: their figures are fixed, so snapshots are the same on every machine."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from conftest import ROOT

from mgtui.runs import registry

DATA = ROOT / "tests" / "data"
T0 = 1700000000.0  # the recorded logs' clock


def recorded_run(
    path: Path,
    log: str = "run_done.jsonl",
    scale: float = 1.0,
    evals: tuple[int, ...] = (),
    hours: float = 0.0,
    margin: float = 1.0,
    **settings: Any,
) -> Path:
    """A registered run made from a recorded log: its losses times `scale` (a preference run's
    reward margins times `margin`), evaluations at `evals`, its settings changed, started `hours`
    after the recording."""
    path.mkdir(parents=True)
    out = []
    shift = hours * 3600
    for line in (DATA / log).read_text().splitlines():
        e = json.loads(line)
        e["t"] += shift
        if e["type"] == "start":
            e["settings"].update(settings)
        if e.get("loss") is not None:
            e["loss"] *= scale
        if e.get("reward_margin") is not None:
            e["reward_margin"] *= margin
        if e.get("final_loss") is not None:
            e["final_loss"] *= scale
        out.append(e)
        if e["type"] == "log" and e["step"] in evals:
            out.append({"v": 1, "seq": 0, "t": e["t"], "type": "eval", "step": e["step"], "eval_loss": e["loss"] + 0.1})
    for seq, e in enumerate(out):
        e["seq"] = seq
    (path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in out))
    run = {"pid": 999999999, "uid": os.getuid(), "started": T0 + shift, "state": out[-1]["type"]}
    (path / "run.json").write_text(json.dumps(run))
    registry.register(path)
    return path


def three_runs(base: Path) -> list[Path]:
    """r16 (as recorded), r64 (lower loss), lr-half (half the learning rate, evaluated), a failed
    one, and one whose directory was deleted."""
    runs = [
        recorded_run(base / "r16", hours=0),
        recorded_run(base / "r64", scale=0.9, evals=(60, 120), hours=1, lora_r=64, lora_alpha=64),
        recorded_run(base / "lr-half", scale=0.95, evals=(60, 120), hours=2, learning_rate=0.001),
        recorded_run(base / "oom", log="run_failed_oom.jsonl", hours=3),
    ]
    gone = recorded_run(base / "gone", hours=4)
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()
    return runs


def queued_run(path: Path, estimate_gb: float | None, **settings: Any) -> Path:
    """A run directory prepared as `--queue` leaves it, and its entry in this user's queue."""
    from mgtui.runs import launch, queue
    from mgtui.settings import resolve

    values = {"base_model": "builtin:tiny-llama", "dataset": "builtin:demo-chat", "output_dir": str(path)}
    res = resolve([{**values, **settings}])
    run_dir, _ = launch.prepare(res)
    queue.add(run_dir, estimate_gb)
    registry.register(run_dir)
    return run_dir


def recorded_settings() -> dict[str, Any]:
    """The recorded run's settings, for queued runs listed beside it (so that only what the test
    changes differs)."""
    start = next(json.loads(x) for x in (DATA / "run_done.jsonl").read_text().splitlines() if '"start"' in x)
    return {k: v for k, v in start["settings"].items() if k not in ("output_dir", "resume")}


def two_queued(base: Path, hours: float = 5.0) -> list[Path]:
    """Two runs waiting in the queue, at a fixed time: #1 waits for memory, #2 for #1."""
    from mgtui.runs import queue

    runs = [queued_run(base / "q-r32", 8.5, **{**recorded_settings(), "lora_r": 32}),
            queued_run(base / "q-r128", 8.5, **{**recorded_settings(), "lora_r": 128})]  # fmt: skip
    with queue.locked() as q:
        for i, e in enumerate(q.entries):
            e.queued = T0 + hours * 3600 + i
            e.reason = "GPU 0: needs 9.5 GB, 2.0 GB free" if i == 0 else "1 earlier queued run"
    for i, run in enumerate(runs):
        info = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**info, "queued": T0 + hours * 3600 + i}))
    return runs
