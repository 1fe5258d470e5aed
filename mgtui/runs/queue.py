"""Runs that wait their turn for the GPUs: this user's queue, in their state directory.

A queued run's directory is prepared when it is queued (settings.toml, run.json state
"queued"), so it is listed, attached to and started exactly like a run started by hand. A small
waiter process (runs/waiter.py), in a session of its own so that it outlives SSH, starts the
first waiting run once the cards it needs have room for its estimate plus a margin; the runs
behind it wait for it. The queue file is changed only under a lock: two app instances, the CLI
and a cron job may add to it at once. What to start, and why a run waits, are decided by pure
functions here (`decide`), tested with fake readings.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..nvml import GpuReading, GpuSample
from ..units import GIB, comma_list
from .registry import registry_dir
from .rundir import (
    RUN_FILE,
    SETTINGS_FILE,
    engine_alive,
    mark_state,
    pid_alive,
    read_json,
    run_info,
    run_pids,
    set_damaged_aside,
    write_json_atomic,
)

QUEUE_FILE = "queue.json"
MARGIN_GB = 1.0  # beyond the estimate: the estimate's error and the allocator's growth
WAITER_MODULE = "mgtui.runs.waiter"


@dataclass
class Entry:
    output_dir: str
    need_gb: float | None  # per card: the estimate plus the margin; None when unknown (no wait on memory)
    nproc: int = 1  # cards it needs at once
    gpus: str = ""  # the cards chosen on the form or by --gpus; "" = any
    queued: float = field(default_factory=time.time)
    state: str = "waiting"  # waiting | started | failed | cancelled
    reason: str = ""  # why it waits (the waiter's latest look), or why it failed
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started: float | None = None
    cards: list[int] = field(default_factory=list)  # where it started
    estimate_gb: float | None = None  # the estimator's peak per card, without the margin

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Queue:
    entries: list[Entry] = field(default_factory=list)
    waiter_pid: int | None = None

    @property
    def waiting(self) -> list[Entry]:
        return [e for e in self.entries if e.state == "waiting"]

    def find(self, run_dir: Path) -> Entry | None:
        key = entry_key(run_dir)
        return next((e for e in self.waiting if e.output_dir == key), None)


def entry_key(run_dir: Path) -> str:
    """How an entry names its run directory: absolute, resolved."""
    return str(Path(run_dir).expanduser().resolve())


def queue_path() -> Path:
    return registry_dir().parent / QUEUE_FILE


_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "output_dir": (str,),
    "need_gb": (int, float, type(None)),
    "nproc": (int,),
    "gpus": (str,),
    "queued": (int, float),
    "state": (str,),
    "reason": (str,),
    "id": (str,),
    "started": (int, float, type(None)),
    "cards": (list,),
    "estimate_gb": (int, float, type(None)),
}


def parse_queue(text: str) -> Queue:
    """queue.json's text as a Queue; ValueError (one line) when it is torn or of another shape."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("not valid JSON (torn?)") from None
    if not isinstance(data, dict):
        raise ValueError(f"holds {type(data).__name__}, not an object")
    waiter = data.get("waiter_pid")
    if waiter is not None and (not isinstance(waiter, int) or isinstance(waiter, bool)):
        raise ValueError(f"waiter_pid is {waiter!r}, not a pid")
    entries = data.get("entries", [])
    if not isinstance(entries, list):
        raise ValueError("entries is not a list")
    out = []
    for i, e in enumerate(entries, 1):
        if not isinstance(e, dict) or "output_dir" not in e:
            raise ValueError(f"entry {i} is not a queued run")
        for key, types in _ENTRY_TYPES.items():
            if key in e and (not isinstance(e[key], types) or isinstance(e[key], bool)):
                raise ValueError(f"entry {i}: {key} is {e[key]!r}")
        out.append(Entry.from_dict(e))
    return Queue(out, waiter)


def read_queue() -> Queue:
    """A snapshot (the file is replaced whole, so a reader needs no lock). A damaged file reads as
    the queue its run directories record (`rebuilt`), until the next change under the lock sets
    it aside and writes that queue back."""
    try:
        return parse_queue(queue_path().read_text())
    except FileNotFoundError:
        return Queue()
    except (OSError, ValueError):
        return rebuilt()


def rebuilt() -> Queue:
    """The waiting runs as their own directories record them (run.json "queued", with the entry
    that add() wrote there), oldest first: what a damaged queue.json held."""
    from .registry import pointers

    entries = []
    for data in pointers():
        if "pointer" in data:
            continue
        info, _ = run_info(Path(data["output_dir"]))
        saved = info.get("queue_entry")
        if info.get("state") == "queued" and isinstance(saved, dict):
            try:
                entries.append(parse_queue(json.dumps({"entries": [saved]})).entries[0])
            except ValueError:
                continue
    return Queue(sorted(entries, key=lambda e: e.queued))


def _read_or_repair(path: Path) -> Queue:
    """Under the lock: a damaged queue.json is set aside, dated, and said (NOTICES), and the queue
    its runs' directories record takes its place; never read as empty."""
    try:
        return parse_queue(path.read_text())
    except FileNotFoundError:
        return Queue()
    except (OSError, ValueError) as e:
        aside = set_damaged_aside(path)
        q = rebuilt()
        n = len(q.waiting)
        NOTICES.append(
            f"the queue file {path} was damaged ({e}): kept as {aside.name}; "
            f"{n} waiting run{'s' if n != 1 else ''} recovered from their directories"
        )
        return q


NOTICES: list[str] = []  # what a repair found, for whoever shows the user (ensure_waiter returns it)


@contextlib.contextmanager
def locked() -> Iterator[Queue]:
    """The queue, changed and written back under an exclusive lock."""
    path = queue_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / "queue.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            q = _read_or_repair(path)
            yield q
            done = [e for e in q.entries if e.state != "waiting"][-50:]  # keep a little history
            q.entries = [e for e in q.entries if e.state == "waiting" or e in done]
            write_json_atomic(path, {"waiter_pid": q.waiter_pid, "entries": [asdict(e) for e in q.entries]})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def add(run_dir: Path, estimate_gb: float | None, nproc: int = 1, gpus: str = "") -> tuple[Entry, int]:
    """Queue a prepared run directory. Returns its entry and its place (1 = next)."""
    need = round(estimate_gb + MARGIN_GB, 2) if estimate_gb is not None else None
    entry = Entry(entry_key(run_dir), need, max(1, nproc), gpus, estimate_gb=estimate_gb)
    with locked() as q:
        q.entries.append(entry)
        place = len(q.waiting)
    info = read_json(Path(run_dir) / RUN_FILE)
    # the entry is kept with the run too: a damaged queue.json is rebuilt from these
    info.update(state="queued", uid=os.getuid(), queued=entry.queued, queue_entry=asdict(entry))
    write_json_atomic(Path(run_dir) / RUN_FILE, info)
    return entry, place


def cancel(run_dir: Path) -> bool:
    """Take a waiting run out of the queue; its directory stays, marked cancelled."""
    with locked() as q:
        entry = q.find(run_dir)
        if entry is not None:
            entry.state, entry.reason = "cancelled", "cancelled by the user"
    path = Path(entry.output_dir) if entry else Path(run_dir).expanduser()
    if entry is None and read_json(path / RUN_FILE).get("state") != "queued":
        return False
    if path.is_dir():
        mark_state(path, "cancelled")
    return True


def start_now(run_dir: Path) -> str | None:
    """Start a waiting run at once, whatever the cards hold (the user's call). Returns why not, or None."""
    from .launch import LaunchError, start_queued

    with locked() as q:
        entry = q.find(run_dir)
        if entry is None:
            return f"{run_dir} is not waiting in the queue"
        problem = turn_problem(entry)
        if problem:
            entry.state, entry.reason = "failed", problem
            return problem
        try:
            start_queued(Path(entry.output_dir), [], entry.nproc)
        except (LaunchError, OSError, ValueError) as e:
            return str(e)
        entry.state, entry.started, entry.reason = "started", time.time(), "started by the user"
    return None


# --- the decision: pure ----------------------------------------------------------------------


def pick_cards(
    entry: Entry, reading: GpuReading, pending: dict[int, float] | None = None
) -> tuple[list[int] | None, str]:
    """The cards to start on now, or None and why it waits ("GPU 0: needs 14.2 GB, 9.8 GB free").
    `pending`: memory per card that runs started from the queue have yet to take."""
    if entry.need_gb is None or not reading.gpus:
        return [], ""  # nothing known to wait for: the engine plans (or fails) as a run started by hand
    pending = pending or {}

    def free(g: GpuSample) -> float:
        return g.available_gib() - pending.get(g.index, 0.0)

    chosen = set(comma_list(entry.gpus))
    cards = [g for g in reading.gpus if not chosen or str(g.index) in chosen]
    need = entry.need_gb

    def short(gs: list[GpuSample]) -> str:
        return "; ".join(f"GPU {g.index}: needs {need:.1f} GB, {max(0.0, free(g)):.1f} GB free" for g in gs)

    if chosen:  # the cards it was given must all have room: it trains on every one
        full = [g for g in cards if free(g) < need]
        return (None, short(full)) if full else ([g.index for g in cards], "")
    roomy = sorted((g for g in cards if free(g) >= need), key=lambda g: -free(g))
    if len(roomy) >= entry.nproc:
        return sorted(g.index for g in roomy[: entry.nproc]), ""
    best = [g for g in sorted(cards, key=lambda g: -free(g)) if g not in roomy][: entry.nproc - len(roomy)]
    more = f" ({entry.nproc} cards needed)" if entry.nproc > 1 else ""
    return None, short(best) + more


def turn_problem(entry: Entry) -> str | None:
    """Why a run can't start when its turn comes: its directory or its data went away."""
    path = Path(entry.output_dir)
    if not path.is_dir():
        return f"its run directory {path} is gone"
    if not (path / SETTINGS_FILE).exists():
        return f"{path / SETTINGS_FILE} is gone"
    import tomllib

    try:
        values = tomllib.loads((path / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{path / SETTINGS_FILE} is unreadable: {e}"
    for key in ("dataset", "base_model"):
        value = str(values.get(key, ""))
        local = value.startswith(("/", "./", "../", "~"))
        if local and not Path(value).expanduser().exists():
            return f"its {key.replace('_', ' ')} {value} is gone"
    return None


def decide(q: Queue, reading: GpuReading, pending: dict[int, float] | None = None) -> list[tuple[Entry, str, Any]]:
    """What to do now, in order: ("fail", reason), ("start", cards) or ("wait", reason) for each
    waiting run. Only the first one may start: the others wait for it, in the order queued."""
    out: list[tuple[Entry, str, Any]] = []
    waiting = q.waiting
    blocked = False
    for i, entry in enumerate(waiting):
        if blocked:
            out.append((entry, "wait", f"{i} earlier queued run{'s' if i > 1 else ''}"))
            continue
        problem = turn_problem(entry)
        if problem:
            out.append((entry, "fail", problem))
            continue
        cards, why = pick_cards(entry, reading, pending)
        if cards is None:
            out.append((entry, "wait", why))
            blocked = True
        else:
            out.append((entry, "start", cards))
            blocked = True  # the next one waits until this one has taken its memory
    return out


def pending_gb(q: Queue, reading: GpuReading) -> dict[int, float]:
    """Per card, what runs started from the queue and still running have yet to take: a run
    takes its memory over its first minutes (loading, the first steps), and the next queued run
    must not be started into room that is already promised."""
    out: dict[int, float] = {}
    candidates = reading.pids
    for e in q.entries:
        if e.state != "started" or not e.cards or e.need_gb is None:
            continue
        info = read_json(Path(e.output_dir) / RUN_FILE)
        if info.get("state") != "running" or not engine_alive(info):
            continue
        pids = run_pids(info, candidates)
        for g in reading.gpus:
            if g.index in e.cards:
                out[g.index] = out.get(g.index, 0.0) + max(0.0, e.need_gb - g.used_by(pids) / GIB)
    return out


# --- the waiter process ----------------------------------------------------------------------


def waiter_alive(pid: int | None) -> bool:
    if not pid_alive(pid):
        return False
    try:
        return WAITER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid


def ensure_waiter() -> str | None:
    """Start the waiter when runs wait and none is alive (a waiter killed with SIGKILL is noticed
    here, by whoever looks next: the app, `model-garden runs`, a new --queue). Returns what was
    noticed (a dead waiter, a damaged queue file), for the user, or None."""
    with locked() as q:
        said = "; ".join(NOTICES) or None
        NOTICES.clear()
        if not q.waiting or waiter_alive(q.waiter_pid):
            return said
        gone = q.waiter_pid
        log = open(queue_path().with_name("waiter.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", WAITER_MODULE],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the terminal, as a run does
            close_fds=True,
        )
        log.close()
        q.waiter_pid = proc.pid
    if gone:
        restarted = f"the queue's waiter (pid {gone}) had died: restarted it (pid {proc.pid}); no queued run was lost"
        return f"{said}; {restarted}" if said else restarted
    return said


def place_of(run_dir: Path, q: Queue | None = None) -> tuple[int, str, float | None] | None:
    """A waiting run's place in the queue (1 = next), what it waits for, and its estimate; or None."""
    q = q or read_queue()
    key = entry_key(run_dir)
    for i, e in enumerate(q.waiting, 1):
        if e.output_dir == key:
            return i, e.reason or "the waiter's first look", e.estimate_gb
    return None
