"""Is the engine still getting on? A running engine writes events as it goes, and touches a
heartbeat file every few seconds from a thread of its own, so that a long step (a first step
compiling kernels, a slow evaluation) is not taken for a stall. An engine frozen by SIGSTOP or
ctrl+z, or one that has written nothing and beaten no heart for a while, is a stall: said on
the run screen, with what to do. Pure, apart from reading the file's time and /proc.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from .rundir import proc_state, run_info

HEARTBEAT_FILE = ".heartbeat"
HEARTBEAT_S = 5.0  # how often the engine beats
STALL_S = 60.0  # silence, beats included, that reads as a stall


def beat(run_dir: Path) -> None:
    path = run_dir / HEARTBEAT_FILE
    try:
        path.touch()
        os.utime(path)
    except OSError:
        pass  # a full or read-only disk says so elsewhere; a missed beat only delays a stall note


def start_heartbeat(run_dir: Path, every: float = HEARTBEAT_S) -> threading.Event:
    """Beat from a daemon thread until the returned event is set (or the process ends)."""
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            beat(run_dir)
            done.wait(every)

    threading.Thread(target=run, name="mgtui-heartbeat", daemon=True).start()
    return done


def last_beat(run_dir: Path) -> float | None:
    try:
        return (run_dir / HEARTBEAT_FILE).stat().st_mtime
    except OSError:
        return None


def stall_note(
    now: float, last_word: float | None, last_beat: float | None, state: str | None, pid: int | None, stall_s: float
) -> str | None:
    """One line when the engine is frozen (`state` "T": stopped by a signal) or silent for longer
    than `stall_s` (no event and no heartbeat); None while it gets on."""
    if state == "T":
        return f"the engine (pid {pid}) is stopped by a signal (SIGSTOP or ctrl+z): kill -CONT {pid} resumes it"
    heard = max((t for t in (last_word, last_beat) if t is not None), default=None)
    if heard is None or now - heard <= stall_s:
        return None
    return f"no word from the engine (pid {pid}) for {int(now - heard)} s: it may be stuck; see train.log"


def engine_stall(run_dir: Path, last_word: float | None, stall_s: float = STALL_S) -> str | None:
    """stall_note for a run directory whose engine is running (run.json's pid)."""
    info, _ = run_info(run_dir)
    pid = info.get("pid")
    state = proc_state(pid) if isinstance(pid, int) and pid > 0 else None
    return stall_note(time.time(), last_word, last_beat(run_dir), state, pid, stall_s)
