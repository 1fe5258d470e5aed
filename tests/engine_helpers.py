"""Shared by the engine tests: the tiny model, datasets in every format, and run helpers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mgtui.data.scan import BUILTIN
from mgtui.runs.events import read_events
from mgtui.settings import resolve


def demo_messages() -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in BUILTIN["builtin:demo-chat"].read_text().splitlines()]
    return [r["messages"] for r in rows]


def write_dataset(path: Path, fmt: str, n: int = 64) -> Path:
    rows: list[dict[str, Any]] = []
    for msgs in demo_messages()[:n]:
        q, a = msgs[1]["content"], msgs[2]["content"]
        if fmt == "text":
            rows.append({"text": f"Q: {q}\nA: {a}"})
        elif fmt == "messages":
            rows.append({"messages": msgs})
        elif fmt == "sharegpt":
            rows.append({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]})
        elif fmt == "alpaca":
            rows.append({"instruction": q, "input": "", "output": a})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def settings(model: Path, dataset: Path, out: Path, **overrides: Any):
    values = dict(
        base_model=str(model),
        dataset=str(dataset),
        output_dir=str(out),
        max_seq_length=128,
        batch_size=8,
        gradient_accumulation_steps=1,
        learning_rate=1e-2,
        warmup_steps=0,
        max_steps=24,
        logging_steps=1,
        save_steps=1000,
        lora_r=8,
        lora_alpha=16,
        lr_scheduler_type="constant",
    )
    values.update(overrides)
    return resolve([values])


def run_in_process(res) -> tuple[int, Path]:
    """The engine in this process (the tests' own signal handlers are put back)."""
    import signal

    from mgtui.runs import launch
    from mgtui.train import worker

    run_dir, _ = launch.prepare(res)
    old = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        return worker.run(run_dir, resume=res["resume"]), run_dir
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])


def events(run_dir: Path) -> list[dict[str, Any]]:
    return list(read_events(Path(run_dir) / "events.jsonl"))


def losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in events(run_dir) if e["type"] == "log"]


def wait_for(predicate, timeout: float = 120.0, poll: float = 0.1):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError("condition not met in time")


def as_killed(run_dir: Path) -> Path:
    """A finished run made to look as an engine killed after its last checkpoint leaves it: no last
    word in its log, run.json still "running" with a pid that is gone. Such a run may be resumed."""
    import os

    kept = [e for e in events(run_dir) if e["type"] not in ("done", "stopped", "failed")]
    (Path(run_dir) / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    (Path(run_dir) / "run.json").write_text(json.dumps({"state": "running", "pid": 2**22 + 7, "uid": os.getuid()}))
    return Path(run_dir)


def ctrl_c_after(argv: list[str], run_dir: Path, step: int = 3, timeout: float = 300) -> tuple[int, str, str]:
    """`python -m mgtui ARGV` in the foreground, Ctrl+C once its log reaches `step`: (exit code,
    stdout, stderr). Ctrl+C reaches the command as at a terminal, however pytest was started (a
    shell's background job ignores SIGINT, and its children inherit that)."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "mgtui", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(
        lambda: any(e["type"] == "log" and e["step"] >= step for e in events(run_dir)) if run_dir.exists() else False
    )
    proc.send_signal(signal.SIGINT)  # Ctrl+C in the foreground command
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
