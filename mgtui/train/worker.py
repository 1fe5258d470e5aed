"""The training process: `python -m mgtui.train.worker RUN_DIR [--resume]`.

It reads the resolved settings from RUN_DIR/settings.toml, trains, and says everything it has
to say through the event log. Under torchrun every rank runs this; rank 0 alone writes the run
directory. Exit codes: 0 done, 1 failed, 2 bad input (dataset), 130 stopped.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import presets
from ..backend_choice import choose_backend
from ..cuda_check import CudaFacts, DeviceError, problems, requested_indices, torch_build
from ..data.prompts import read_prompts
from ..data.scan import DatasetError, resolve_source, scan
from ..demo_model import BUILTIN_MODEL
from ..errors import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, EXIT_USAGE
from ..nvml import GpuSource, NvmlSource, process_gpu_bytes
from ..runs import rundir
from ..runs.events import EVENTS_FILE, EventWriter
from ..settings import Resolved, resolve
from ..units import GIB, gib, gib3
from .download import DownloadStopped

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "unsloth", "datasets")


def load_settings(run_dir: Path) -> Resolved:
    pre = presets.load_path(run_dir / rundir.SETTINGS_FILE)
    return resolve([pre.values], pre.explicit_keys())


class _Quiet:
    """What ranks other than 0 emit to: nothing."""

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        return {"type": event_type, **fields}

    def close(self, timeout: float = 0) -> None:
        pass


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def estimate_gb(res: Resolved, backend: str, gpu_gib: float | None, world: int) -> float | None:
    from ..estimate import lookup, plan

    p = plan(res, lookup(res["base_model"], online=False), gpu_gib, backend=backend, gpu_count=per_node(res, world))
    return round(p.estimate.peak_gib, 3) if p.estimate else None


def cap_memory(cuda: Any, cap_gb: float, device: int, emit: Any) -> float:
    """--max-gpu-memory: a hard per-process limit in the caching allocator, so that going past it
    raises torch's OutOfMemoryError (reported with advice for the cap) instead of taking the whole
    card from its other users. Returns the GiB the run may use."""
    total = cuda.mem_get_info(device)[1]
    fraction = min(1.0, cap_gb * GIB / total)
    cuda.set_per_process_memory_fraction(fraction, device)
    emit("message", message=f"GPU memory capped at {cap_gb:g} GB ({fraction:.0%} of the card)")
    return min(cap_gb, gib(total))


def per_node(res: Resolved, world: int) -> int:
    """The GPU count that gives this run's world size (the estimate is per process)."""
    return max(1, world // res["nnodes"])


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


def single_gpu_visible(visible: str | None, gpu_count: int) -> str | None:
    """CUDA_VISIBLE_DEVICES for a single-process run: its first GPU alone, or None to leave it.
    With several cards visible, transformers' Trainer counts them all (n_gpu), multiplies the
    batch and wraps an unquantized model in DataParallel; the estimate is for one card."""
    if visible is None:
        return "0" if gpu_count > 1 else None
    cards = requested_indices(visible)
    return cards[0] if len(cards) > 1 else None


@dataclass
class Boot:
    """What the training process learned before any model loaded."""

    cuda: bool
    capabilities: list[tuple[int, int]]  # of every GPU this process can see
    unsloth_broken: str | None  # why `import unsloth` failed, if it did


def boot(res: Resolved, world: int, source: GpuSource | None = None) -> Boot:
    """Everything before a model loads, in the order the libraries need:
    1. what NVML and torch's build can tell without starting CUDA (an old driver, a CPU-only
       torch, a --gpus index that isn't here): a GPU box never falls back to the CPU;
    2. one GPU visible to a single process;
    3. unsloth imported before transformers, trl, peft and CUDA: it sets PYTORCH_ALLOC_CONF
       (expandable segments), which torch reads once, when CUDA starts;
    4. torch's own view: CUDA reachable, each card's architecture built into this torch."""
    reading = (source or NvmlSource()).read()
    version, built = torch_build()
    facts = CudaFacts(reading, built, version)
    for problem in problems(facts, res["gpus"]):
        raise DeviceError(problem)
    if reading.gpus and world == 1:
        pinned = single_gpu_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), len(reading.gpus))
        if pinned is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = pinned
    broken = _import_unsloth(res, world) if reading.gpus else None
    import torch

    cuda = torch.cuda.is_available()
    if reading.gpus:
        facts = replace(facts, cuda_available=cuda, arch_list=tuple(torch.cuda.get_arch_list()) if cuda else None)
        for problem in problems(facts, res["gpus"]):
            raise DeviceError(problem)
    elif cuda:  # CUDA that NVML can't see (no NVML library in a container)
        broken = _import_unsloth(res, world)
    caps = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())] if cuda else []
    return Boot(cuda, caps, broken)


def _import_unsloth(res: Resolved, world: int) -> str | None:
    if choose_backend(True, world, res["base_model"])[0] != "unsloth":
        return None
    try:
        import unsloth  # noqa: F401  (patches transformers, trl and peft: before them)
    except Exception as e:  # its import checks the GPU and the libraries; train without it
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return None


def run(run_dir: Path, resume: bool = False) -> int:
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    res = load_settings(run_dir)
    ev = EventWriter(run_dir / EVENTS_FILE) if rank == 0 else _Quiet()
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
    t0 = time.time()
    state: dict[str, Any] = {"step": 0, "backend": "transformers", "total_gib": None}
    try:
        code = _train(res, run_dir, resume, ev, stop, state, rank, local_rank, world, t0)
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


def download_name(res: Resolved, plan: Any) -> str:
    """The repository loading will read: Unsloth swaps a 16-bit name for its pre-quantized upload
    when loading in 4-bit, so that is the one to download."""
    if plan.backend != "unsloth":
        return res["base_model"]
    try:
        from unsloth.models.loader_utils import get_model_name

        return get_model_name(res["base_model"], load_in_4bit=plan.precision == 4) or res["base_model"]
    except Exception:  # a mapping Unsloth can't make: it loads the name as given
        return res["base_model"]


def _rank_error(run_dir: Path, rank: int, world: int, message: str) -> None:
    """Under torchrun a rank's error goes to a file the supervisor reads (ranks other than 0 have
    no event log, and rank 0's own error may only echo another rank's death)."""
    if world > 1:
        from ..runs.supervise import RANK_ERROR

        (run_dir / RANK_ERROR.format(rank=rank)).write_text(message.splitlines()[0] if message else "error")


def _train(
    res: Resolved,
    run_dir: Path,
    resume: bool,
    ev,
    stop: threading.Event,
    state: dict[str, Any],
    rank: int,
    local_rank: int,
    world: int,
    t0: float,
) -> int:
    ev.emit("phase", phase="preparing_data", progress=0.0, detail="checking rows")
    scan(res["dataset"], res["dataset_format"], columns=res["columns"])  # bad data fails here, before the model loads
    prompts = read_prompts(res["eval_prompts"]) if res["eval_prompts"] else []

    ev.emit("phase", phase="loading_model", detail=res["base_model"])
    found = boot(res, world)
    import torch

    from .backends import plan_for

    cuda = found.cuda
    plan = plan_for(res, cuda, world, found.capabilities, found.unsloth_broken)
    if res["base_model"] == BUILTIN_MODEL:
        from .tiny import build_tiny_llama

        res.values["base_model"] = str(build_tiny_llama())
    from .download import WeightsProgress, fetch_model

    fetch_model(download_name(res, plan), res["trust_remote_code"], ev.emit, stop)
    state["backend"] = plan.backend
    if cuda:
        torch.cuda.set_device(local_rank)
        state["total_gib"] = gib(torch.cuda.mem_get_info()[1])
        if res["max_gpu_memory"]:
            state["total_gib"] = cap_memory(torch.cuda, res["max_gpu_memory"], local_rank, ev.emit)
    estimate = estimate_gb(res, plan.backend, state["total_gib"], world)
    ev.emit(
        "start",
        pid=os.getpid(),
        backend=plan.backend,
        device=plan.device,
        world_size=world,
        precision=plan.precision,
        estimate_gb=estimate,
        settings=res.values,
        resume=resume,
    )
    for sub in plan.substitutions:
        ev.emit("warning", message=f"replaced {sub}")
    for w in res.warnings:
        ev.emit("warning", message=w)

    from .backends import load_model, sft_kwargs

    quantizing = f"; quantizing to {plan.precision}-bit" if plan.precision in (4, 8) else ""
    ev.emit("phase", phase="loading_model", detail=f"loading weights{quantizing}", progress=0.0)
    with WeightsProgress(ev.emit, f"loading weights{quantizing}"):
        model, tokenizer = load_model(res, plan, local_rank)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    if resolve_source(res["dataset"]) is None:  # datasets fetches it; tokenizing's progress follows
        ev.emit("phase", phase="downloading", detail=f"dataset {res['dataset']} ({res['dataset_split']})")
    else:
        ev.emit("phase", phase="preparing_data", progress=0.0, detail="tokenizing")
    from .datasets import CHAT_FORMATS, build_datasets, chat_template
    from .download import HubBytes

    hub_data = resolve_source(res["dataset"]) is None
    fetching = HubBytes(ev.emit, stop, f"dataset {res['dataset']} ({res['dataset_split']})")
    with fetching if hub_data else contextlib.nullcontext():
        train_ds, eval_ds, report, warnings = build_datasets(
            res,
            tokenizer,
            lambda p: ev.emit("phase", phase="preparing_data", progress=round(p, 3), detail="tokenizing"),
        )
    ev.emit("dataset", **report)
    for w in warnings:
        ev.emit("warning", message=w)

    if world > 1 and not cuda:
        _restore_cpu_n_storages()
    from trl import SFTConfig, SFTTrainer

    from .callback import EventCallback

    sync = _ddp_stop_sync() if world > 1 else (lambda s: s)
    nvml = NvmlSource()
    cb = EventCallback(
        ev.emit,
        stop,
        tokens_per_sample=report["tokens"]["mean"],
        samples_per_step=res["batch_size"] * res["gradient_accumulation_steps"] * world,
        cuda=cuda,
        sync_stop=sync,
        gpu_bytes=lambda: process_gpu_bytes(nvml.read(), {os.getpid()}) if cuda else None,
        on_step=lambda step: state.__setitem__("step", step),
    )
    args = SFTConfig(
        **{k: v for k, v in sft_kwargs(res, plan, str(run_dir), eval_ds is not None).items() if v is not None}
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer, callbacks=[cb]
    )
    checkpoint = _resume_from(run_dir, rank, ev) if resume else None
    metrics = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).metrics
    state["step"] = trainer.state.global_step
    if eval_ds is not None and not stop.is_set():
        trainer.evaluate()

    ev.emit("phase", phase="saving", detail=str(run_dir))
    trainer.save_model(str(run_dir))  # the adapter, in PEFT format; written by the main process only
    if rank == 0:
        if report["format"] in CHAT_FORMATS:  # the exact template trained with, for the chat and exports
            tokenizer.chat_template = chat_template(res, tokenizer)
        tokenizer.save_pretrained(str(run_dir))
        if prompts and not stop.is_set():
            from .generate import answer_prompts

            if plan.backend == "unsloth":
                from unsloth import FastLanguageModel

                FastLanguageModel.for_inference(trainer.model)
            template = tokenizer.chat_template if report["format"] in CHAT_FORMATS else None
            answer_prompts(trainer.model, tokenizer, template, prompts, run_dir, ev.emit)
    peak: dict[str, float | None] = {"peak_reserved_gb": None, "peak_allocated_gb": None, "peak_nvml_gb": None}
    if cuda:
        peak = cb.memory_now()
        ev.emit("memory", **peak, total_gb=state["total_gib"], estimate_gb=estimate)
    stopped = cb.stopped_at is not None
    summary = _summary(trainer, metrics, cb, peak, estimate, plan, world, report, run_dir, t0, stopped)
    if rank == 0:
        rundir.write_json_atomic(run_dir / rundir.SUMMARY_FILE, summary)
    end = {k: summary[k] for k in ("final_loss", "steps", "runtime_s", "adapter")}
    if stopped:
        last = rundir.latest_checkpoint(run_dir)
        ev.emit("stopped", **end, checkpoint=str(last) if last else None)
        return EXIT_STOPPED
    ev.emit("done", **end)
    return EXIT_OK


def _resume_from(run_dir: Path, rank: int, ev: Any) -> Path:
    """The newest whole checkpoint; torn ones (an engine killed while saving) are set aside, kept."""
    checkpoint, skipped = rundir.resumable_checkpoint(run_dir)
    for torn, why in skipped:
        kept = rundir.set_aside(torn) if rank == 0 else torn
        ev.emit("warning", message=f"skipped {torn.name}: {why} (kept as {kept.name})")
    if checkpoint is None:
        raise DatasetError(f"--resume: {run_dir} has no complete checkpoint to resume from")
    ev.emit("message", message=f"resuming from {checkpoint.name}")
    return checkpoint


def _summary(
    trainer: Any,
    metrics: dict[str, Any],
    cb: Any,
    peak: dict[str, float | None],
    estimate: float | None,
    plan: Any,
    world: int,
    report: dict[str, Any],
    run_dir: Path,
    t0: float,
    stopped: bool,
) -> dict[str, Any]:
    """summary.json: how the run ended, its speed and memory against the estimate, and what ran it."""
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "state": "stopped" if stopped else "done",
        "final_loss": losses[-1] if losses else None,
        "steps": trainer.state.global_step,
        "total_steps": trainer.state.max_steps,
        "runtime_s": round(time.time() - t0, 2),
        "train_runtime_s": metrics.get("train_runtime"),
        "train_steps_per_s": metrics.get("train_steps_per_second"),
        **cb.steady(),  # without the first step's warm-up: what the run sustains
        **peak,  # torch's reserved and allocated peaks, and the process as nvidia-smi shows it
        "estimate_gb": estimate,
        "backend": plan.backend,
        "device": plan.device,
        "world_size": world,
        "substitutions": plan.substitutions,
        "dataset": report,
        "adapter": str(run_dir),
        "versions": versions(),
    }


def _restore_cpu_n_storages() -> None:
    """Checkpoints written by gloo CPU ranks tag their storages "cpu:0", a location torch.load
    cannot restore ("don't know how to restore data location"), so resume would fail. Tell
    torch's serialization that "cpu:N" is the CPU."""
    import torch.serialization as ser

    ser.register_package(
        9,
        lambda obj: None,
        lambda obj, location: obj.cpu() if isinstance(location, str) and location.startswith("cpu:") else None,
    )


def _ddp_stop_sync():
    import torch
    import torch.distributed as dist

    def sync(local: bool) -> bool:
        if not dist.is_initialized():
            return local
        flag = torch.tensor([1.0 if local else 0.0], device="cuda" if torch.cuda.is_available() else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    return sync


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
