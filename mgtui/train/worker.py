"""The training process: `python -m mgtui.train.worker RUN_DIR [--resume]`.

It reads the resolved settings from RUN_DIR/settings.toml, runs the phases in pipeline.py, and
says everything it has to say through the event log; how the run ended (a stop, bad input, out of
memory with advice, a full disk) is told here. Under torchrun every rank runs this; rank 0 alone
writes the run directory. Exit codes: 0 done, 1 failed, 2 bad input (dataset), 130 stopped.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from .. import presets
from ..cuda_check import DeviceError
from ..data.scan import DatasetError
from ..errors import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, EXIT_USAGE
from ..runs import rundir
from ..runs.events import EVENTS_FILE, EventWriter
from ..runs.stall import start_heartbeat
from ..settings import Resolved, resolve
from ..units import gib, gib3
from . import pipeline
from .download import DownloadStopped
from .pipeline import Run, per_node


def load_settings(run_dir: Path) -> Resolved:
    pre = presets.load_path(run_dir / rundir.SETTINGS_FILE)
    return resolve([pre.values], pre.explicit_keys())


class _Quiet:
    """What ranks other than 0 emit to: nothing."""

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        return {"type": event_type, **fields}

    def close(self, timeout: float = 0) -> None:
        pass


def oom_advice(res: Resolved, backend: str, total_gib: float, world: int) -> list[dict[str, Any]]:
    from ..estimate import lookup
    from ..estimate.advisor import advise

    found = lookup(res["base_model"], online=False)
    if found.arch is None:
        return []
    return [s.as_dict() for s in advise(res, found.arch, total_gib, backend, gpu_count=per_node(res, world))]


def is_oom(e: BaseException) -> bool:
    """torch's OutOfMemoryError, a CUDA/bnb "out of memory", or Unsloth's planner finding no
    placement (unsloth_zoo's DeviceMapInfeasible: the model doesn't fit the GPU)."""
    names = {t.__name__ for t in type(e).__mro__}
    return bool(names & {"OutOfMemoryError", "DeviceMapInfeasible"}) or "out of memory" in str(e).lower()


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC, as an OSError or inside a library's message (safetensors: "No space left on device")."""
    return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "no space left on device" in str(e).lower()


def disk_full_report(run_dir: Path, e: BaseException) -> dict[str, Any]:
    """Where the disk filled, what is free, what a checkpoint takes, and what to do."""
    import shutil

    free = shutil.disk_usage(run_dir).free
    sizes = [sum(f.stat().st_size for f in c.rglob("*") if f.is_file()) for c in rundir.checkpoints(run_dir)]
    need = max(sizes, default=0)
    return {
        "message": f"no space left on device in {run_dir}: {gib(free):.2f} GB free"
        + (f", a checkpoint takes {gib(need):.2f} GB" if need else ""),
        "path": str(run_dir),
        "free_gb": gib3(free),
        "checkpoint_gb": gib3(need) or None,
        "advice_text": [
            "free space on that disk",
            "save checkpoints less often (--save-steps) or delete old ones",
            "choose an --output-dir on a larger disk",
        ],
        "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
    }


def run(run_dir: Path, resume: bool = False) -> int:
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    res = load_settings(run_dir)
    ev = EventWriter(run_dir / EVENTS_FILE) if rank == 0 else _Quiet()
    if isinstance(ev, EventWriter) and ev.torn:
        ev.emit("warning", message=f"the event log's last line was cut by a killed writer: kept as {ev.torn.name}")
    stop = threading.Event()

    def on_signal(signum, frame):
        if signum == signal.SIGTERM and world > 1:
            # Under torchrun a SIGTERM is the agent tearing the group down after another rank
            # failed: a collective with a dead peer would hang, so leave now. Stops use SIGINT.
            os._exit(143)
        if not stop.is_set():
            stop.set()
            ev.emit("message", message=f"{signal.Signals(signum).name}: stopping after the current step")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped terminal never stops a run
    if rank == 0:
        rundir.write_run_file(run_dir, os.getpid(), world_size=world, worker_started=True)
        start_heartbeat(run_dir)  # a long step is not a stall (runs/stall.py)
    t0 = time.time()
    state: dict[str, Any] = {"step": 0, "backend": "transformers", "total_gib": None}
    try:
        code = pipeline.train(Run(res, run_dir, resume, ev, stop, state, rank, local_rank, world, t0))
    except DownloadStopped as e:
        ev.emit("stopped", steps=0, adapter=None, download=True, message=str(e), done_bytes=e.done, total_bytes=e.total)
        code = EXIT_STOPPED
    except (DatasetError, DeviceError) as e:
        ev.emit("failed", kind="input" if isinstance(e, DatasetError) else "device", message=str(e), step=state["step"])
        _rank_error(run_dir, rank, world, str(e))
        code = EXIT_USAGE
    except Exception as e:
        import torch

        traceback.print_exc()  # the full story goes to train.log; the event carries one line
        if is_oom(e):
            total = state["total_gib"] or 0
            cuda = torch.cuda.is_available()
            ev.emit(
                "failed",
                kind="oom",
                message=str(e).splitlines()[0][:300],
                step=state["step"],
                reserved_gb=gib3(torch.cuda.max_memory_reserved()) if cuda else None,
                allocated_gb=gib3(torch.cuda.max_memory_allocated()) if cuda else None,
                total_gb=total,
                advice=oom_advice(res, state["backend"], total, world) if total else [],
            )
        elif is_disk_full(e) and rank == 0:
            ev.emit("failed", kind="disk_full", step=state["step"], **disk_full_report(run_dir, e))
        elif world == 1:
            ev.emit(
                "failed",
                kind="error",
                message=f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
                step=state["step"],
            )
        # Under torchrun an error here is often the echo of another rank's death (a broken
        # collective): the supervisor names the first failure, with this rank's error if it was it.
        _rank_error(run_dir, rank, world, f"{type(e).__name__}: {e}")
        code = EXIT_FAILED
    finally:
        ev.close()
    if rank == 0:
        rundir.mark_state(run_dir, {EXIT_OK: "done", EXIT_STOPPED: "stopped"}.get(code, "failed"))
    return code


def _rank_error(run_dir: Path, rank: int, world: int, message: str) -> None:
    """Under torchrun a rank's error goes to a file the supervisor reads (ranks other than 0 have
    no event log, and rank 0's own error may only echo another rank's death)."""
    if world > 1:
        from ..runs.supervise import RANK_ERROR

        (run_dir / RANK_ERROR.format(rank=rank)).write_text(message.splitlines()[0] if message else "error")


def quiet_libraries() -> None:
    # bitsandbytes logs a line on every 8-bit matmul ("inputs will be cast from ..."), not once
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA numbers the cards as NVML does
    quiet_libraries()
    return run(Path(argv[0]), resume="--resume" in argv)


if __name__ == "__main__":
    code = main()
    if any(t.name == "download" for t in threading.enumerate()):
        os._exit(code)  # a stopped download's threads would hold the exit while they retry
    sys.exit(code)
