"""Where this user's runs are listed: one small pointer file per run in
$XDG_STATE_HOME/mgtui/runs/ (~/.local/state/mgtui/runs by default). Only runs started by this
user are there. list_runs gives those queued, running or finished since last seen; the whole
history is runs/history.py's."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .rundir import engine_alive, read_json, run_info, run_pids, run_state, write_json_atomic


def registry_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mgtui" / "runs"


def _pointer(run_dir: Path) -> Path:
    key = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
    return registry_dir() / f"{key}.json"


def register(run_dir: Path, keep: bool = False) -> None:
    """A new run (unseen), or with `keep` an existing entry left as it is (a run found in a
    folder gets one when it is archived)."""
    p = _pointer(run_dir)
    if keep and p.exists():
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(p, {"output_dir": str(Path(run_dir).resolve()), "registered": time.time(), "seen": keep})


def set_flag(run_dir: Path, key: str, value: bool) -> None:
    p = _pointer(run_dir)
    data = read_json(p)
    if data:
        data[key] = value
        write_json_atomic(p, data)


def mark_seen(run_dir: Path) -> None:
    set_flag(run_dir, "seen", True)


def forget(run_dir: Path) -> None:
    _pointer(run_dir).unlink(missing_ok=True)


def pointers() -> list[dict[str, Any]]:
    """Every entry: output_dir, registered, seen, and archived where set. A pointer file that is
    torn or of another shape comes as {"pointer": its path} alone (no output_dir): listed as damaged."""
    d = registry_dir()
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        data = read_json(p)
        out.append(data if isinstance(data.get("output_dir"), str) else {"pointer": str(p)})
    return out


@dataclass(frozen=True)
class ListedRun:
    output_dir: str
    state: str
    pid: int | None
    started: str
    problem: str = ""  # why a damaged or unreadable run can't be read


def list_runs() -> list[ListedRun]:
    out = []
    for data in pointers():
        if data.get("archived"):
            continue
        if "pointer" in data:
            out.append(ListedRun(data["pointer"], "damaged", None, "?", "a registry pointer that can't be read"))
            continue
        run_dir = Path(data["output_dir"])
        info, problem = run_info(run_dir)
        if not problem and (not info or info.get("uid", os.getuid()) != os.getuid()):
            continue
        st = run_state(run_dir)
        if st.problem:
            out.append(ListedRun(str(run_dir), st.state, None, "?", st.problem))
        elif st.state in ("running", "queued") or (st.finished and not data.get("seen")):
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.started)) if st.started else "?"
            out.append(ListedRun(str(run_dir), st.state, st.pid, started))
    return out


def runs_by_pid(candidates: Iterable[int]) -> dict[int, str]:
    """Which of `candidates` (PIDs on a GPU) belong to this user's running mgtui runs: PID to the
    run directory's name. Every rank of a run counts (rundir.run_pids)."""
    candidates = list(candidates)
    out: dict[int, str] = {}
    if not candidates:
        return out
    for data in pointers():  # run.json only, not the event logs: this is asked every second
        if "pointer" in data:
            continue
        run_dir = Path(data["output_dir"])
        info, _ = run_info(run_dir)
        if info.get("state") != "running" or not engine_alive(info):
            continue
        for pid in run_pids(info, candidates):
            if pid in candidates:
                out[pid] = run_dir.name
    return out
