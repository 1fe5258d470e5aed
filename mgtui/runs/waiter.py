"""The queue's waiter: a small process in a session of its own (it outlives SSH, as a run does).
It looks at the GPUs every few seconds and starts the first waiting run once its cards have room
(runs/queue.py decides), then exits when nothing waits. Killed, it is restarted by whoever looks
at the queue next (queue.ensure_waiter); the queue itself is a file, so nothing is lost."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..nvml import GpuSource, NvmlSource, file_source
from . import queue
from .events import EVENTS_FILE, EventWriter
from .rundir import mark_state

POLL_S = 3.0


def fail(entry: queue.Entry, reason: str) -> None:
    """Its turn came and it can't start: said in the queue, and in the run directory when there is
    one, so the runs list and attach show why."""
    entry.state, entry.reason = "failed", reason
    path = Path(entry.output_dir)
    if path.is_dir():
        ev = EventWriter(path / EVENTS_FILE)
        ev.emit("failed", kind="input", message=f"queued run not started: {reason}", step=0)
        ev.close()
        mark_state(path, "failed")


def step(source: GpuSource, me: int) -> bool:
    """One look: start, fail or note the reason of each waiting run. Returns whether to go on."""
    from .launch import LaunchError, start_queued

    reading = source.read()
    with queue.locked() as q:
        if q.waiter_pid not in (None, me):
            return False  # another waiter took over
        q.waiter_pid = me
        for entry, action, detail in queue.decide(q, reading, queue.pending_gb(q, reading)):
            if action == "fail":
                fail(entry, detail)
            elif action == "wait":
                entry.reason = detail
            else:
                try:
                    start_queued(Path(entry.output_dir), detail, entry.nproc)
                except (LaunchError, OSError, ValueError) as e:
                    fail(entry, str(e))
                    continue
                entry.state, entry.started, entry.cards = "started", time.time(), detail
                entry.reason = f"started on GPU {','.join(map(str, detail))}" if detail else "started"
        if not q.waiting:
            q.waiter_pid = None
            return False
    return True


def main() -> int:
    source = file_source() or NvmlSource()
    me = os.getpid()
    while step(source, me):
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
