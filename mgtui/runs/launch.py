"""Start, stop and locate runs. The engine runs as its own process in its own session, so a
closed terminal, a dropped SSH connection (SIGHUP) or a killed app leaves it training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from .. import presets
from ..cuda_check import problems_here
from ..nvml import FixedSource, GpuReading, GpuSource, NvmlSource, visible_gpu_count
from ..settings import Resolved
from . import rundir
from .registry import register


class LaunchError(Exception):
    """The run can't start: one line for the user."""


def model_dir_problem(base_model: str) -> str | None:
    """A local model directory that from_pretrained would fail on after minutes of start-up."""
    path = Path(base_model).expanduser()
    looks_local = base_model.startswith(("/", "./", "../", "~"))
    if path.is_dir():
        if not (path / "config.json").exists():
            return f"--base-model {path}: no config.json in this directory (not a Hugging Face model folder)"
    elif looks_local:
        return f"--base-model {path}: no such directory"
    from ..estimate.archs import local_config, untrainable

    cfg = local_config(base_model)
    return untrainable(cfg, base_model) if cfg else None


def prepare(res: Resolved, force: bool = False, claim: rundir.Claim | None = None) -> tuple[Path, str | None]:
    """Make the run directory ready; returns it and what to tell the user (what was moved aside,
    the changes a resume honours), or None. The caller holds the directory's claim, so no other
    start can pass these checks at the same time."""
    out = Path(res["output_dir"]).expanduser()
    notice = None
    problem = rundir.not_a_directory(out)
    if problem:
        raise LaunchError(f"--output-dir: {problem}; choose another --output-dir")
    launcher = rundir.launcher_alive(out)
    if (res["resume"] or force) and launcher and rundir.run_state(out).state != "running":
        # Its last rank has ended but torchrun and the supervisor still hold its port and files.
        raise LaunchError(f"{out}: the previous run is still shutting down (pid {launcher}); try again in a moment")
    if res["resume"]:
        from .resume import check

        try:
            honoured = check(out, res)
        except ValueError as e:
            raise LaunchError(str(e)) from None
        info: dict[str, Any] = {"state": "resuming"}
        if honoured:
            info["changed"] = honoured  # said by the launcher and kept for the record
        rundir.write_json_atomic(out / rundir.RUN_FILE, info)
        notice = "; ".join(f"resume: {c} (honoured)" for c in honoured) or None
    else:
        reason = rundir.occupied(out)
        if reason:
            if not force or rundir.run_state(out).state == "running":
                from .resume import resumable

                if rundir.run_state(out).state == "running":
                    what = f"attach to it (mgtui attach {out})"
                else:
                    what = ("use --resume to continue it, " if resumable(out) else "use ") + "--force to move it aside"
                raise LaunchError(f"{reason}; {what}, or choose another --output-dir")
            notice = f"moved the previous contents aside to {rundir.move_aside(out)}"
            if claim is not None:
                claim.moved()
    out.mkdir(parents=True, exist_ok=True)
    (out / rundir.SETTINGS_FILE).write_text(presets.dumps(res, include_paths=True), encoding="utf-8")
    return out, notice


def claimed(res: Resolved) -> rundir.Claim:
    """The run directory's lock, or LaunchError naming who holds it."""
    out = Path(res["output_dir"]).expanduser()
    problem = rundir.not_a_directory(out)
    if problem:
        raise LaunchError(f"--output-dir: {problem}; choose another --output-dir")
    if res["resume"] and not out.is_dir():
        raise LaunchError(f"--resume: {out} does not exist")
    try:
        return rundir.Claim(out).take()
    except rundir.Busy as e:
        raise LaunchError(str(e)) from None
    except OSError as e:
        raise LaunchError(f"--output-dir {out}: {e.strerror or e}") from None


def engine_command(run_dir: Path, res: Resolved, nproc: int) -> list[str]:
    """The engine under its supervisor; under torchrun (PyTorch's own launcher) for more than one
    process or node."""
    worker = ["-m", "mgtui.train.worker", str(run_dir)] + (["--resume"] if res["resume"] else [])
    if nproc > 1 or res["nnodes"] > 1:
        worker = [
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={nproc}",
            f"--nnodes={res['nnodes']}",
            f"--node-rank={res['node_rank']}",
            f"--master-addr={res['master_addr']}",
            f"--master-port={res['master_port']}",
            *worker,
        ]
    return [sys.executable, "-m", "mgtui.runs.supervise", str(run_dir), "--", sys.executable, *worker]


def tracker_problem(report_to: str) -> str | None:
    """A tracker whose package isn't installed fails only after the model has loaded: say it now."""
    import importlib.util

    if report_to == "tensorboard" and not (
        importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
    ):
        return "--report-to tensorboard: tensorboard is not installed (uv sync, or pip install tensorboard)"
    if report_to == "wandb" and importlib.util.find_spec("wandb") is None:
        return "--report-to wandb: wandb is not installed: uv sync --extra wandb (or pip install wandb)"
    return None


def engine_env(res: Resolved, base: Mapping[str, str], run_dir: Path | None = None) -> dict[str, str]:
    env = dict(base)
    if res["report_to"] == "wandb":
        # W&B files go in the run directory; without a key it logs offline (wandb sync uploads it later)
        # rather than failing for want of a login nobody can type into a detached engine.
        if run_dir is not None:
            env.setdefault("WANDB_DIR", str(run_dir))
        env.setdefault("WANDB_PROJECT", "mgtui")
        if not env.get("WANDB_API_KEY") and not env.get("WANDB_MODE"):
            env["WANDB_MODE"] = "offline"
    env.setdefault("PYTHONWARNINGS", "ignore")
    # NVML numbers cards by PCI bus, CUDA fastest first: the index picked on the form must be
    # the card that trains.
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    if res["gpus"]:
        env["CUDA_VISIBLE_DEVICES"] = res["gpus"]
    return env


def start(
    res: Resolved, force: bool = False, source: GpuSource | None = None
) -> tuple[Path, subprocess.Popen, str | None]:
    """Start the engine detached, once this machine's GPUs are known to be usable by its torch.
    The GPUs visible here set the default number of processes, for the app and the headless
    command alike."""
    reading = (source or NvmlSource()).read()
    checks(res, reading)
    with claimed(res) as claim:
        run_dir, notice = prepare(res, force, claim)
        gpu_count = visible_gpu_count(FixedSource(reading))
        nproc = res.world_size(gpu_count) // res["nnodes"]
        proc = spawn(run_dir, res, nproc, claim)
    return run_dir, proc, notice


def spawn(run_dir: Path, res: Resolved, nproc: int, claim: rundir.Claim) -> subprocess.Popen:
    """The engine, detached, on a prepared run directory: a run started by hand and a queued run
    whose turn has come take this same path. Its supervisor inherits the directory's claim and
    holds it until the run has ended."""
    env = engine_env(res, os.environ, run_dir)
    log = open(run_dir / rundir.LOG_FILE, "ab")
    proc = subprocess.Popen(
        engine_command(run_dir, res, nproc),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
        close_fds=True,
        pass_fds=(claim.fd,),
    )
    log.close()
    claim.name_holder(proc.pid, "a run's engine")
    if res["node_rank"] > 0:  # a helper node: the run, its log and its record live on node 0
        return proc
    rundir.write_run_file(run_dir, proc.pid, launcher=True, launcher_pid=proc.pid, gpus=res["gpus"])
    register(run_dir)
    return proc


def checks(res: Resolved, reading: GpuReading) -> None:
    """What would stop the engine at once: refused before it starts (or is queued)."""
    from .adapter_from import adapter_from_problem

    problem = model_dir_problem(res["base_model"]) or tracker_problem(res["report_to"]) or adapter_from_problem(res)
    if problem:
        raise LaunchError(problem)
    for problem in problems_here(reading, res["gpus"]):
        raise LaunchError(problem)


def planned_estimate(res: Resolved, reading: GpuReading) -> float | None:
    """Peak GPU memory per card for these settings on this machine (None: unknown architecture)."""
    from ..backend_choice import planned_backend
    from ..estimate import lookup, plan

    gpus = len(reading.gpus)
    backend = planned_backend(res["base_model"], res.world_size(gpus), gpus, res.sharded)[0]
    p = plan(res, lookup(res["base_model"], online=False), None, backend=backend, gpu_count=max(1, gpus))
    return round(p.estimate.peak_gib, 2) if p.estimate else None


def enqueue(
    res: Resolved, estimate_gb: float | None = None, force: bool = False, source: GpuSource | None = None
) -> tuple[Path, int, str | None]:
    """Prepare the run directory and put the run in this user's queue; the waiter starts it when
    the cards have room. Returns (run directory, place in the queue, what was noticed or None)."""
    from . import queue

    if res["node_rank"] > 0 or res["nnodes"] > 1:
        raise LaunchError("--queue: multi-node runs start together on every node; start them by hand")
    if res["resume"]:
        raise LaunchError("--queue: a resumed run starts at once (--resume without --queue)")
    reading = (source or NvmlSource()).read()
    checks(res, reading)
    if estimate_gb is None:
        estimate_gb = planned_estimate(res, reading)
    with claimed(res) as claim:
        run_dir, _ = prepare(res, force, claim)
        nproc = res.world_size(visible_gpu_count(FixedSource(reading))) // res["nnodes"]
        _, place = queue.add(run_dir, estimate_gb, nproc, res["gpus"])
        register(run_dir)
    return run_dir, place, queue.ensure_waiter()


def start_queued(run_dir: Path, cards: list[int], nproc: int) -> subprocess.Popen:
    """A queued run's turn: its settings as prepared, on the cards the waiter picked."""
    from ..settings import resolve

    pre = presets.load_path(run_dir / rundir.SETTINGS_FILE)
    values, explicit = dict(pre.values), pre.explicit_keys()
    if cards and not values.get("gpus"):  # the engine sees them as CUDA_VISIBLE_DEVICES
        values["gpus"] = ",".join(map(str, cards))
        explicit.add("gpus")
    res = resolve([values], explicit)
    try:
        claim = rundir.Claim(run_dir, "the queue's waiter").take()
    except rundir.Busy as e:
        raise LaunchError(str(e)) from None
    with claim:
        info = rundir.read_json(run_dir / rundir.RUN_FILE)
        info.pop("started", None)  # the run starts now; it was queued at info["queued"]
        rundir.write_json_atomic(run_dir / rundir.RUN_FILE, info)
        return spawn(run_dir, res, nproc, claim)


def request_stop(run_dir: Path) -> bool:
    """Ask the engine to finish its step, save and stop (SIGINT to rank 0)."""
    st = rundir.run_state(run_dir)  # "running" only while the pid is this run's engine (engine_alive)
    if st.state != "running" or not st.pid or st.pid <= 0:
        return False
    try:
        os.kill(st.pid, signal.SIGINT)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def trainable_params(res: Resolved) -> int | None:
    """The parameters the run will train, from the estimator; None for an unknown architecture."""
    from ..estimate import lookup
    from ..estimate.advisor import estimate_settings

    arch = lookup(res["base_model"], online=False).arch
    return None if arch is None else estimate_settings(res, arch, None).trainable_params


def disk_warning(res: Resolved, rows: int, trainable: int, gpu_count: int = 1, free: int | None = None) -> str | None:
    """Whether the output directory's disk holds what this run will write (a warning, not a refusal:
    the estimate of the checkpoints' size is rough, and space may be freed while it trains)."""
    steps = rundir.planned_steps(
        res["max_steps"], res["epochs"], rows, res["eval_split"], res.effective_batch * res.world_size(gpu_count)
    )
    need = rundir.disk_need_bytes(trainable, res["optim"], steps, res["save_steps"], res["save_total_limit"])
    out = Path(res["output_dir"]).expanduser()
    return rundir.disk_warning(need, rundir.free_bytes(out) if free is None else free, out)
