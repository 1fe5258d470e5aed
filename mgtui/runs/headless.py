"""`model-garden train`: run the engine in the foreground with a compact display.

On a terminal: one progress line redrawn in place (bar, step, loss, ETA), with phases and
warnings above it. Not a terminal: one plain line per event. Ctrl+C stops gracefully.
Exit codes: 0 done, 1 failed, 2 bad input, 130 stopped.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..data.preflight import preflight
from ..data.prompts import read_prompts
from ..data.scan import DatasetError
from ..errors import EXIT_FAILED, EXIT_FOR_STATE, EXIT_OK, EXIT_STOPPED, EXIT_USAGE, UsageError, how_it_ended
from ..hub_check import check_hub
from ..settings import Resolved, warmup_warning
from .events import EVENTS_FILE, INPUT_KINDS, EventFollower
from .launch import LaunchError, disk_warning, enqueue, request_stop, start, trainable_params
from .rundir import LOG_FILE, planned_steps
from .view import describe, fmt_duration, phase_line


def progress_line(e: dict[str, Any], width: int = 20) -> str:
    total = e.get("total_steps") or 0
    frac = min(e["step"] / total, 1.0) if total else 0.0
    bar = "█" * int(frac * width) + "░" * (width - int(frac * width))
    loss = f"{e['loss']:.4f}" if isinstance(e.get("loss"), (int, float)) else "-"
    return (
        f"[{bar}] {e['step']}/{total} {frac:4.0%}  loss {loss}  lr {e.get('learning_rate') or 0:.2e}  "
        f"{e.get('tokens_per_s') or 0:,.0f} tok/s  ETA {fmt_duration(e.get('eta_s'))}"
    )


class Display:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.line = ""
        self.tenth = -1

    def show(self, e: dict[str, Any]) -> None:
        text = describe(e)
        if e["type"] == "log":
            if self.tty:
                self.line = progress_line(e)
                self.out.write("\r\x1b[K" + self.line)
            else:
                self.out.write(progress_line(e) + "\n")
        elif e["type"] == "phase" and e.get("progress") not in (None, 0.0):
            line = phase_line(e)
            if self.tty:
                self.line = line
                self.out.write("\r\x1b[K" + line)
            elif int((e["progress"] or 0) * 10) != self.tenth:  # a log file gets a line per tenth
                self.tenth = int((e["progress"] or 0) * 10)
                self.out.write(line + "\n")
        elif text:
            self.out.write(("\r\x1b[K" if self.tty else "") + text + "\n" + (self.line if self.tty else ""))
        self.out.flush()


def follow(run_dir: Path, proc, display: Display, offset: int = 0, poll: float = 0.2) -> int:
    follower = EventFollower(run_dir / EVENTS_FILE, offset)
    stopping = False
    while True:
        try:
            for e in follower.read_new():
                display.show(e)
                if e["type"] in EXIT_FOR_STATE:
                    proc.wait()
                    return EXIT_USAGE if e.get("kind") in INPUT_KINDS else EXIT_FOR_STATE[e["type"]]
            code = proc.poll()
            if code is not None:
                for e in follower.read_new():
                    display.show(e)
                    if e["type"] in EXIT_FOR_STATE:
                        return EXIT_USAGE if e.get("kind") in INPUT_KINDS else EXIT_FOR_STATE[e["type"]]
                display.out.write(
                    f"\nfailed: the engine ended with {how_it_ended(code)} without a last word; "
                    f"see {run_dir / LOG_FILE}\n"
                )
                return EXIT_FAILED
            time.sleep(poll)
        except KeyboardInterrupt:
            if stopping:  # a second Ctrl+C: stop waiting; the engine still saves and exits
                display.out.write("\nleft the engine to finish its step and save\n")
                return EXIT_STOPPED
            stopping = True
            display.out.write("\nstopping after the current step (Ctrl+C again to stop waiting)...\n")
            request_stop(run_dir)


def queued(res: Resolved, force: bool, said: list[str]) -> int:
    """--queue: the run waits in this user's queue; the waiter starts it (LaunchError: bad input)."""
    from . import queue

    run_dir, place, noticed = enqueue(res, force=force)
    for line in said:
        print(line, file=sys.stderr)
    if noticed:
        print(f"note: {noticed}", file=sys.stderr)
    entry = queue.read_queue().find(run_dir)
    need = (
        f"needs {entry.need_gb:.1f} GB per GPU (estimate + {queue.MARGIN_GB:.0f} GB margin)"
        if entry and entry.need_gb
        else "no estimate for this model: it waits only for the runs before it"
    )
    print(f"queued #{place}: {run_dir}; {need}")
    print(
        f"see it with: model-garden runs · cancel: model-garden runs --cancel {run_dir} · follow: mgtui attach {run_dir}"
    )
    return EXIT_OK


def train_headless(res: Resolved, force: bool = False, detach: bool = False, queue: bool = False) -> int:
    said = [f"warning: {w}" for w in res.warnings]  # said once the run has started: a refusal is one line
    try:
        checked = preflight(res)  # bad data: exit 2 now
        report = checked.report
        said += [f"warning: {w}" for w in checked.warnings]
        if res["eval_prompts"]:
            read_prompts(res["eval_prompts"])  # a bad prompts file: exit 2 now, not after training
        hub = check_hub(res["base_model"], res["dataset"], res["trust_remote_code"])
        if hub.problems:
            raise UsageError(hub.problems[0])
        said += [f"hub: {note}" for note in hub.notes]
        trainable = trainable_params(res)
        warning = disk_warning(res, report.rows, trainable) if trainable else None
        if warning:
            said.append(f"warning: {warning}")
        if not res["max_steps"]:  # with max_steps the settings said it already
            steps = planned_steps(0, res["epochs"], report.rows, res["eval_split"], res.effective_batch)
            warmup = warmup_warning(res["warmup_steps"], steps)
            if warmup:
                said.append(f"warning: {warmup}")
        log = Path(res["output_dir"]).expanduser() / EVENTS_FILE
        offset = log.stat().st_size if res["resume"] and log.exists() else 0  # a resumed run's new events
        if queue:
            return queued(res, force, said)
        run_dir, proc, notice = start(res, force=force)
    except (DatasetError, LaunchError) as e:
        raise UsageError(str(e)) from None
    for line in [*said, *([notice] if notice else [])]:
        print(line, file=sys.stderr)
    if detach:
        print(f"started pid {proc.pid}; follow with: mgtui attach {run_dir}")
        return EXIT_OK
    if res["node_rank"] > 0:
        print(
            f"node {res['node_rank']} of {res['nnodes']}: joined the run at {res['master_addr']}:{res['master_port']}; "
            "its progress and files are on node 0"
        )
        try:
            return EXIT_OK if proc.wait() == 0 else EXIT_FAILED
        except KeyboardInterrupt:
            return EXIT_STOPPED
    return follow(run_dir, proc, Display(sys.stdout), offset)
