"""The run directory: what a run leaves behind, and how anyone tells its state.

    <output_dir>/
      settings.toml        the resolved settings, in the preset format
      run.json             pid, user, host, start time, and the final state once known
      events.jsonl         the event log (schema: runs/events.py)
      train.log            the engine's own stdout/stderr
      summary.json         final loss, steps, runtime, peak memory vs estimate, library versions
      adapter_config.json, adapter_model.safetensors, tokenizer files   (PEFT format)
      checkpoint-N/        trainer checkpoints every save_steps
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .events import EVENTS_FILE, TERMINAL, read_events

RUN_FILE = "run.json"
SETTINGS_FILE = "settings.toml"
SUMMARY_FILE = "summary.json"
LOG_FILE = "train.log"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a zombie (exited, not yet reaped) is not running
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class RunState:
    path: Path
    state: str  # running | done | stopped | failed | dead (engine gone without a last word) | new
    pid: int | None
    started: float | None
    last_event: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "failed", "dead")


def run_state(path: Path) -> RunState:
    path = Path(path)
    info = read_json(path / RUN_FILE)
    pid = info.get("pid")
    last = None
    for last in read_events(path / EVENTS_FILE):
        pass
    if info.get("state") == "running" and pid_alive(pid):
        state = "running"  # checked first: a resumed run's log still ends with its last stop
    elif last and last.get("type") in TERMINAL:
        state = last["type"]
    elif info.get("state") in TERMINAL:
        state = info["state"]
    elif info or last:
        state = "dead"
    else:
        state = "new"
    return RunState(path, state, pid, info.get("started"), last)


def is_run_dir(path: Path) -> bool:
    """Whether `path` holds a run (running or not) that the app can follow."""
    return (Path(path) / EVENTS_FILE).exists() or (Path(path) / RUN_FILE).exists()


def occupied(path: Path) -> str | None:
    """Why a new run can't start in `path`, or None when it can."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} exists and is not a directory"
    st = run_state(path)
    if st.state == "running":
        return f"{path} holds a running run (pid {st.pid})"
    if st.state != "new":
        return f"{path} holds a {st.state} run"
    if any((path / f).exists() for f in ADAPTER_FILES) or any(path.glob("checkpoint-*")):
        return f"{path} holds an adapter or checkpoints"
    return None


def latest_checkpoint(path: Path) -> Path | None:
    found = [p for p in Path(path).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def move_aside(path: Path) -> Path:
    """--force: the old run is kept under a new name, never deleted."""
    target = path.with_name(f"{path.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(path), str(target))
    return target


def write_run_file(path: Path, pid: int, **extra: Any) -> None:
    info = read_json(path / RUN_FILE)
    info.update(pid=pid, uid=os.getuid(), user=os.environ.get("USER", ""), host=socket.gethostname(),
                started=info.get("started") or time.time(), state="running", **extra)
    write_json_atomic(path / RUN_FILE, info)


def mark_state(path: Path, state: str) -> None:
    info = read_json(path / RUN_FILE)
    info.update(state=state, ended=time.time())
    write_json_atomic(path / RUN_FILE, info)


def run_pids(info: dict[str, Any], candidates: Iterable[int],
             getsid: Callable[[int], int] = os.getsid) -> set[int]:
    """The run's own processes among `candidates` (the PIDs using a GPU). Every rank of a run
    lives in the session its launcher started (launch.start: start_new_session), so a DDP run
    counts all its ranks, not rank 0 alone."""
    own = {p for p in (info.get("pid"), info.get("launcher_pid")) if p}
    try:
        session = getsid(info.get("launcher_pid") or info["pid"])
    except (OSError, KeyError, TypeError):
        return own
    for pid in candidates:
        try:
            if getsid(pid) == session:
                own.add(pid)
        except OSError:
            continue
    return own
