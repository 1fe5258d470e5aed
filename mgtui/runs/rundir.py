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

import contextlib
import fcntl
import json
import math
import os
import shutil
import socket
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .events import EVENTS_FILE, TERMINAL, read_events

RUN_FILE = "run.json"
SETTINGS_FILE = "settings.toml"
SUMMARY_FILE = "summary.json"
LOG_FILE = "train.log"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def pid_alive(pid: object) -> bool:
    """A live process with this pid. Never a pid <= 0: os.kill(-1, 0) speaks for every process of
    the user, os.kill(0, 0) for the caller's group."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return proc_state(pid) != "Z"  # a zombie (exited, not yet reaped) is not running


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (which may hold spaces), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_state(pid: int) -> str | None:
    """R, S, D, T (stopped: SIGSTOP or ctrl+z), Z ...; None without /proc."""
    fields = _proc_stat(pid)
    return fields[0] if fields else None


def proc_start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (proc(5), field 22): a pid that was
    recycled for another process has another start time."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


ENGINE_MODULES = (b"mgtui.train.worker", b"mgtui.runs.supervise")


def engine_alive(info: dict[str, Any]) -> bool:
    """Whether run.json's pid is alive and is still this run's engine (rank 0, or its supervisor
    before rank 0 has started): the start time recorded with the pid matches, and so does the
    command. A pid recycled for an unrelated process is not taken for the run."""
    pid = info.get("pid")
    if not pid_alive(pid):
        return False
    assert isinstance(pid, int)
    if not Path("/proc/self/stat").exists():
        return True  # no /proc: the pid is all there is to go on
    recorded = info.get("pid_start")
    if recorded is not None and proc_start_ticks(pid) != recorded:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(m in cmdline for m in ENGINE_MODULES)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when it is missing, unreadable, or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# run.json's keys and the types they must have: a file of another shape is damaged, never trusted.
_RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "pid": (int,),
    "launcher_pid": (int,),
    "pid_start": (int,),
    "started": (int, float),
    "queued": (int, float),
    "ended": (int, float),
    "state": (str,),
    "uid": (int,),
}


def run_info(path: Path) -> tuple[dict[str, Any], str | None]:
    """run.json, and why it is damaged (torn, not an object, a key of the wrong type), or None.
    A damaged file gives {}: its pid is never signalled, its times never shown."""
    file = Path(path) / RUN_FILE
    try:
        text = file.read_text()
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        return {}, f"{RUN_FILE} can't be read ({e.strerror or type(e).__name__})"
    try:
        data = json.loads(text)
    except ValueError:
        return {}, f"{RUN_FILE} is not valid JSON (torn?)"
    if not isinstance(data, dict):
        return {}, f"{RUN_FILE} holds {type(data).__name__}, not an object"
    for key, types in _RUN_FIELDS.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            return {}, f"{RUN_FILE}: {key} is {value!r}, not a {types[0].__name__}"
    return data, None


def set_damaged_aside(file: Path) -> Path:
    """A damaged record is kept beside itself under a dated name, never rewritten in place."""
    target = file.with_name(f"{file.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(file, target)
    return target


@dataclass(frozen=True)
class RunState:
    path: Path
    # running | done | stopped | failed | dead (engine gone without a last word) | new
    # | queued (waiting its turn: runs/queue.py) | cancelled (taken out of the queue)
    # | damaged (run.json is not a run's record) | unreadable (the directory can't be read)
    state: str
    pid: int | None
    started: float | None
    last_event: dict[str, Any] | None
    problem: str | None = None  # why damaged or unreadable

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "failed", "dead", "cancelled")


def run_state(path: Path) -> RunState:
    path = Path(path)
    info, problem = run_info(path)
    pid = info.get("pid")
    last = None
    try:
        for event in read_events(path / EVENTS_FILE):
            last = event
    except OSError as e:
        return RunState(path, "unreadable", None, None, None, f"{EVENTS_FILE}: {e.strerror or type(e).__name__}")
    if problem:
        return RunState(path, "damaged", None, None, last, problem)
    if info.get("state") == "running" and engine_alive(info):
        state = "running"  # checked first: a resumed run's log still ends with its last stop
    elif info.get("state") in ("queued", "cancelled") and not last:
        state = info["state"]
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
    """Whether `path` holds a run (running or not) that the app can follow. A directory that can't
    be looked into is taken for one, so that it is listed as unreadable rather than skipped."""
    try:
        return (Path(path) / EVENTS_FILE).exists() or (Path(path) / RUN_FILE).exists()
    except PermissionError:
        return True


LOCK_FILE = ".mgtui.lock"
# What mgtui itself leaves in a run directory besides a run's files (see the module's docstring).
OWN_FILES = (LOCK_FILE, ".run.lock")


def occupied(path: Path) -> str | None:
    """Why a new run can't start in `path`, or None when it can."""
    path = Path(path)
    problem = not_a_directory(path)
    if problem:
        return problem
    if not path.exists():
        return None
    st = run_state(path)
    if st.state == "running":
        return f"{path} holds a running run (pid {st.pid})"
    if st.state == "queued":
        return f"{path} holds a queued run (model-garden runs --cancel {path} takes it out of the queue)"
    if st.state in ("damaged", "unreadable"):
        return f"{path} holds a run whose record is {st.state}: {st.problem}"
    if st.state != "new":
        return f"{path} holds a {st.state} run"
    if any((path / f).exists() for f in ADAPTER_FILES) or any(path.glob("checkpoint-*")):
        return f"{path} holds an adapter or checkpoints"
    try:
        others = sorted(p.name for p in path.iterdir() if p.name not in OWN_FILES)
    except OSError as e:
        return f"{path} can't be read ({e.strerror or type(e).__name__})"
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        return f"{path} holds files that are not an mgtui run ({shown})"
    return None


def not_a_directory(path: Path) -> str | None:
    """An output directory that is a file, or lies under one."""
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a directory"
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else f"{path}: {parent} is a file, not a directory"
    return None


class Busy(Exception):
    """Another process holds the run directory's lock: one line, naming it."""


class Claim:
    """The run directory's lock: one writer at a time. flock on a file in the directory, taken
    before run.json is written; the engine's supervisor inherits it (launch.spawn passes the
    descriptor) and holds it for the run's life, so it is let go however the run ends, even by
    SIGKILL. A second `model-garden train` into the same directory gets Busy."""

    def __init__(self, path: Path, who: str = "model-garden train") -> None:
        self.path = Path(path)
        self.who = who
        self.fd = -1
        self.made_dir = self.made_lock = False

    def take(self) -> Claim:
        self.made_dir = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_FILE
        for _ in range(10):
            self.made_lock = not lock.exists()
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise Busy(
                    f"{self.path} is in use by {holder}: wait for it, attach to it (mgtui attach {self.path}), "
                    "or choose another --output-dir"
                ) from None
            try:  # a refused start removes the lock file it made: locked after that, it is not the one
                if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        else:
            raise Busy(f"{self.path}: its lock file keeps changing; try again")
        self.fd = fd
        self.name_holder(os.getpid(), self.who)
        return self

    def name_holder(self, pid: int, who: str) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"pid": pid, "who": who, "since": time.time()}).encode(), 0)

    def moved(self) -> None:
        """The directory was moved aside (--force) with its lock: take the new directory's."""
        old, self.fd = self.fd, -1
        try:
            self.take()
        finally:
            os.close(old)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def abandon(self) -> None:
        """The start was refused: leave the directory as it was found (no lock file, no new folder)."""
        if self.fd >= 0 and self.made_lock:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
        self.release()
        if self.made_dir:
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.abandon() if kind is not None else self.release()


def _lock_holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{data.get('who') or 'another process'} (pid {int(data['pid'])})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "another process"


def checkpoints(path: Path) -> list[Path]:
    """checkpoint-N directories, newest first."""
    found = [p for p in Path(path).glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True)


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why a checkpoint can't be resumed from (an engine killed while writing it), or None.
    The Trainer writes the adapter, then optimizer, scheduler and RNG state, and
    trainer_state.json last; each must be whole."""
    state = ckpt / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError):
        return "trainer_state.json is unreadable"
    if (ckpt / FSDP_MODEL).is_dir():  # a sharded run's: each rank's part, by torch's DCP
        # DCP writes .metadata once every rank's files are whole (torch.distributed.checkpoint,
        # FileSystemWriter.finish): a checkpoint cut short has none
        for part in (FSDP_MODEL, FSDP_OPTIMIZER):
            if not (ckpt / part / ".metadata").exists():
                return f"{part} is incomplete (no .metadata)"
        return None if (ckpt / "scheduler.pt").exists() else "scheduler.pt is missing"
    weights = ckpt / "adapter_model.safetensors"
    if not weights.exists() and not (ckpt / "adapter_model.bin").exists():
        return "the adapter weights are missing"
    if weights.exists() and not _safetensors_whole(weights):
        return "adapter_model.safetensors is truncated"
    for name in ("optimizer.pt", "scheduler.pt"):
        if not (ckpt / name).exists():
            return f"{name} is missing"
        if not zipfile.is_zipfile(ckpt / name):  # torch.save writes a zip; a cut one has no directory
            return f"{name} is truncated"
    return None


# Where the Trainer puts a sharded (FSDP, SHARDED_STATE_DICT) checkpoint's model and optimizer
# (accelerate/utils/fsdp_utils.py, save_fsdp_model: f"{FSDP_MODEL_NAME}_{model_index}", and
# save_fsdp_optimizer: f"{OPTIMIZER_NAME}_{optimizer_index}", from Trainer._save_checkpoint).
FSDP_MODEL = "pytorch_model_fsdp_0"
FSDP_OPTIMIZER = "optimizer_0"


def _safetensors_whole(path: Path) -> bool:
    """The header's offsets all lie inside the file."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size >= 8 + size + end
    except (OSError, ValueError, KeyError, TypeError):
        return False


def resumable_checkpoint(path: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint, and the newer ones skipped with why."""
    skipped: list[tuple[Path, str]] = []
    for ckpt in checkpoints(path):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt, skipped
        skipped.append((ckpt, problem))
    return None, skipped


def set_aside(ckpt: Path) -> Path:
    """A torn checkpoint is kept, under a name the Trainer and resume no longer take for one."""
    target = ckpt.with_name(f"torn-{ckpt.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    ckpt.rename(target)
    return target


def latest_checkpoint(path: Path) -> Path | None:
    """The checkpoint a resume would continue from: the newest complete one."""
    return resumable_checkpoint(path)[0]


def move_aside(path: Path) -> Path:
    """--force: the old run is kept under a new name, never deleted."""
    target = path.with_name(f"{path.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(path), str(target))
    return target


def write_run_file(path: Path, pid: int, launcher: bool = False, **extra: Any) -> None:
    """Record the process to signal. The launcher and rank 0 both write it, in either order:
    under a lock, and the launcher never takes `pid` from a worker that has started (a stop
    sent to the launcher, which ignores SIGINT, would be lost)."""
    with _locked(path / ".run.lock"):
        info = read_json(path / RUN_FILE)
        if not (launcher and info.get("worker_started")):
            info["pid"] = pid
            info["pid_start"] = proc_start_ticks(pid)  # who the pid is: engine_alive checks it
        info.update(
            uid=os.getuid(),
            user=os.environ.get("USER", ""),
            host=socket.gethostname(),
            started=info.get("started") or time.time(),
            state="running",
            **extra,
        )
        write_json_atomic(path / RUN_FILE, info)


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def mark_state(path: Path, state: str) -> None:
    info = read_json(path / RUN_FILE)
    info.update(state=state, ended=time.time())
    write_json_atomic(path / RUN_FILE, info)


def launcher_alive(path: Path) -> int | None:
    """The run's launcher (its supervisor) while it lives: it outlasts rank 0, which marks the run
    ended before torchrun and the supervisor have exited. A recycled pid is not taken for it."""
    pid = read_json(Path(path) / RUN_FILE).get("launcher_pid")
    if not pid_alive(pid):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return pid if b"mgtui.runs.supervise" in cmdline.read_bytes() else None
    except OSError:
        return pid if not cmdline.parent.parent.exists() else None  # no /proc: trust the pid


def run_pids(info: dict[str, Any], candidates: Iterable[int], getsid: Callable[[int], int] = os.getsid) -> set[int]:
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


def free_directory(base: str) -> str:
    """The first of base-2, base-3, ... that no run occupies: where a new run can go instead."""
    for n in range(2, 1000):
        candidate = f"{base.rstrip('/')}-{n}"
        if occupied(Path(candidate).expanduser()) is None:
            return candidate
    return base + "-new"


def occupied_answers(path: Path) -> list[str]:
    """What a user can do about a run already in `path`, best first: attach to it while it
    trains, resume it when a stopped one left a checkpoint, start in a new directory, or cancel."""
    from .resume import resumable  # the same rule as --resume's

    running = run_state(path).state == "running"
    first = ["attach"] if running else ["resume"] if resumable(path) else []
    return [*first, "new", "cancel"]


def planned_steps(max_steps: int, epochs: float, rows: int, eval_split: float, per_step: int) -> int:
    """Optimizer steps a run will take: max_steps, else the epochs over the training rows."""
    if max_steps > 0:
        return max_steps
    train_rows = max(1, rows - int(rows * eval_split))
    return max(1, math.ceil(epochs * math.ceil(train_rows / max(per_step, 1))))


def disk_need_bytes(trainable: int, optim: str, steps: int, save_steps: int, keep: int) -> int:
    """What the run will write: the adapter (float32 LoRA weights) once, and each checkpoint kept
    (the adapter again, the optimizer's states, a few small files)."""
    adapter = 4 * trainable
    states = (2 if "8bit" in optim else 8) * trainable
    saves = steps // max(save_steps, 1)
    kept = min(saves, keep) if keep else saves
    return adapter + kept * (adapter + states + 2**20)


def free_bytes(path: Path) -> int:
    """Free space where `path` will be (its nearest existing parent)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def disk_warning(need: int, free: int, path: Path) -> str | None:
    if free >= need:
        return None
    return (
        f"{path}: the adapter and checkpoints need about {need / 2**30:.1f} GB, {free / 2**30:.1f} GB free: "
        "free space, keep fewer checkpoints (--save-total-limit), or choose another --output-dir"
    )


def weights_problem(run_dir: Path) -> str | None:
    """Why this directory holds no trained model to chat with or export: one line, or None."""
    if not run_dir.is_dir():
        return f"{run_dir}: no such directory"
    has_adapter = (run_dir / "adapter_config.json").exists()
    if not (run_dir / SETTINGS_FILE).exists() and not has_adapter:
        return f"{run_dir}: not a run directory (no settings.toml or adapter_config.json)"
    weights = run_dir / ("adapter_model.safetensors" if has_adapter else "model.safetensors")
    if not weights.exists() and not list(run_dir.glob("model*.safetensors")):
        state = run_state(run_dir).state
        return f"{run_dir}: no trained weights yet (the run is {state}); a run saves them when it ends"
    return None
