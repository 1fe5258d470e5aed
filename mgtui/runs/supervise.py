"""`python -m mgtui.runs.supervise RUN_DIR -- COMMAND...`: wait on the engine and make sure the
run always ends with a last word in its event log.

An engine that is killed (the kernel's OOM killer, SIGKILL) or that crashes outside Python, or a
torchrun group where one rank died, leaves no terminal event of its own. The supervisor, in the
same detached session, waits for the command, and if the log has no terminal event it appends a
`failed` event naming the cause: the rank and its error, or the exit status or signal.
Light: no torch, so it costs nothing while the engine trains.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import how_it_ended
from . import rundir
from .events import EVENTS_FILE, TERMINAL, EventFollower, EventWriter, read_events

RANK_ERROR = "rank-{rank}.error"


def last_word(run_dir: Path, offset: int = 0) -> bool:
    """Whether the engine ended its log itself since `offset` (a resumed run's log already ends
    with the previous stop)."""
    follower = EventFollower(run_dir / EVENTS_FILE, offset)
    while batch := follower.read_new():
        if any(e.get("type") in TERMINAL for e in batch):
            return True
    return False


def last_step(run_dir: Path) -> int | None:
    """The last step the engine logged: where a killed run got to."""
    step = None
    for e in read_events(run_dir / EVENTS_FILE):
        if e.get("type") == "log":
            step = e.get("step", step)
    return step


def cause(run_dir: Path, code: int, log_offset: int = 0) -> str:
    """The root cause: torchrun's "first observed failure" (the rank that died first) with that
    rank's own error where it wrote one; else the exit status or signal. Only this run's part of
    train.log counts: a resumed run's log also holds the previous run's torchrun report."""
    path = run_dir / rundir.LOG_FILE
    log = ""
    if path.exists():
        with path.open("rb") as f:
            f.seek(log_offset)
            log = f.read().decode(errors="replace")
    root = log[log.rfind("Root Cause") :] if "Root Cause" in log else ""
    m = re.search(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", root, re.S)
    if m:
        rank, exitcode = int(m.group(1)), int(m.group(2))
        error = run_dir / RANK_ERROR.format(rank=rank)
        if error.exists():
            return f"rank {rank} failed: {error.read_text(errors='replace').strip()[:300]}"
        return f"rank {rank} died ({how_it_ended(exitcode)})"
    errors = sorted(run_dir.glob("rank-*.error"))
    if errors:
        failed_rank = errors[0].name.split("-")[1].split(".")[0]
        return f"rank {failed_rank} failed: {errors[0].read_text(errors='replace').strip()[:300]}"
    if code < 0:
        return f"the engine was killed by {how_it_ended(code)}"
    return f"the engine ended with {how_it_ended(code)} without a last word"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_dir, command = Path(argv[0]), argv[argv.index("--") + 1 :]
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # stops go to rank 0; a hang-up changes nothing
    log = run_dir / EVENTS_FILE
    offset = log.stat().st_size if log.exists() else 0
    train_log = run_dir / rundir.LOG_FILE
    log_offset = train_log.stat().st_size if train_log.exists() else 0
    for stale in run_dir.glob("rank-*.error"):  # a previous run's: its failure is in its events
        stale.unlink(missing_ok=True)
    proc = subprocess.Popen(command, restore_signals=True)
    code = proc.wait()
    if (run_dir / rundir.RUN_FILE).exists() and not last_word(run_dir, offset):  # node 0 only keeps the record
        writer = EventWriter(run_dir / EVENTS_FILE)
        writer.emit(
            "failed", kind="crash", message=cause(run_dir, code, log_offset), exit_code=code, step=last_step(run_dir)
        )
        writer.close()
        rundir.mark_state(run_dir, "failed")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
