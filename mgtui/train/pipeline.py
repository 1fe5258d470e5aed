"""A run's phases, in the order the training process goes through them: check the data, load the
model, tokenize, train, then save and sum up. Each phase says where it is through the event log;
worker.py runs them and turns what goes wrong into the run's end."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.prompts import read_prompts
from ..data.scan import DatasetError, resolve_source, scan
from ..demo_model import BUILTIN_MODEL
from ..errors import EXIT_OK, EXIT_STOPPED
from ..nvml import NvmlSource, process_gpu_bytes
from ..runs import rundir
from ..settings import Resolved
from ..units import gib
from .boot import boot, cap_memory, download_name

if TYPE_CHECKING:  # loaded by the phases, after boot has imported Unsloth first
    from .backends import RuntimePlan
    from .callback import EventCallback

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "unsloth", "datasets")


@dataclass
class Run:
    """One run as its phases see it."""

    res: Resolved
    run_dir: Path
    resume: bool
    ev: Any  # the event log's writer (on ranks other than 0, one that writes nothing)
    stop: threading.Event  # set by a signal: stop after the current step
    state: dict[str, Any]  # what an error report needs: the step reached, the backend, the GiB
    rank: int
    local_rank: int
    world: int
    t0: float


@dataclass
class Loaded:
    plan: RuntimePlan
    model: Any
    tokenizer: Any
    cuda: bool
    estimate: float | None  # the estimator's peak GiB for what was chosen


@dataclass
class Data:
    train: Any
    eval: Any | None
    report: dict[str, Any]  # the "dataset" event: rows, tokens, format, truncation


@dataclass
class Trained:
    trainer: Any
    callback: EventCallback
    metrics: dict[str, Any]


def train(run: Run) -> int:
    prompts = check_data(run)
    loaded = load(run)
    data = tokenize(run, loaded)
    trained = fit(run, loaded, data)
    return finish(run, loaded, data, trained, prompts)


def check_data(run: Run) -> list[Any]:
    """Bad data fails here, before the model loads. Returns the prompts for the quick look."""
    res = run.res
    run.ev.emit("phase", phase="preparing_data", progress=0.0, detail="checking rows")
    scan(res["dataset"], res["dataset_format"], columns=res["columns"], method=res["method"])
    from ..runs.adapter_from import adapter_from_problem

    problem = adapter_from_problem(res)
    if problem:
        raise DatasetError(problem)
    if res["method"] == "grpo":  # the reward file imported and its functions found, before the model loads
        from .rewards import load_rewards

        try:
            load_rewards(res["reward_funcs"], res.values, None)
        except ValueError as e:
            raise DatasetError(f"--reward-funcs: {e}") from None
    return read_prompts(res["eval_prompts"]) if res["eval_prompts"] else []


def load(run: Run) -> Loaded:
    """The GPU checks, the backend's plan, the download, then the weights."""
    res, ev, state = run.res, run.ev, run.state
    ev.emit("phase", phase="loading_model", detail=res["base_model"])
    found = boot(res, run.world)
    import torch

    from .backends import load_model, plan_for

    cuda = found.cuda
    plan = plan_for(res, cuda, run.world, found.capabilities, found.unsloth_broken)
    if res["base_model"] == BUILTIN_MODEL:
        from .tiny import build_tiny_llama

        res.values["base_model"] = str(build_tiny_llama())
    from .download import WeightsProgress, fetch_model

    fetch_model(download_name(res, plan), res["trust_remote_code"], ev.emit, run.stop)
    state["backend"] = plan.backend
    if cuda:
        torch.cuda.set_device(run.local_rank)
        state["total_gib"] = gib(torch.cuda.mem_get_info()[1])
        if res["max_gpu_memory"]:
            state["total_gib"] = cap_memory(torch.cuda, res["max_gpu_memory"], run.local_rank, ev.emit)
    estimate = estimate_gb(res, plan.backend, state["total_gib"], run.world)
    ev.emit(
        "start",
        pid=os.getpid(),
        backend=plan.backend,
        device=plan.device,
        world_size=run.world,
        precision=plan.precision,
        estimate_gb=estimate,
        settings=res.values,
        resume=run.resume,
    )
    for sub in plan.substitutions:
        ev.emit("warning", message=f"replaced {sub}")
    for w in res.warnings:
        ev.emit("warning", message=w)

    quantizing = f"; quantizing to {plan.precision}-bit" if plan.precision in (4, 8) else ""
    ev.emit("phase", phase="loading_model", detail=f"loading weights{quantizing}", progress=0.0)
    with WeightsProgress(ev.emit, f"loading weights{quantizing}"):
        model, tokenizer = load_model(res, plan, run.local_rank)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(plan, model, tokenizer, cuda, estimate)


def tokenize(run: Run, loaded: Loaded) -> Data:
    """The rows, fetched from the Hub if they are not local, tokenized with the model's tokenizer."""
    res, ev = run.res, run.ev
    hub_data = resolve_source(res["dataset"]) is None
    named = f"dataset {res['dataset']} ({res['dataset_split']})"
    if hub_data:  # datasets fetches it; tokenizing's progress follows
        ev.emit("phase", phase="downloading", detail=named)
    else:
        ev.emit("phase", phase="preparing_data", progress=0.0, detail="tokenizing")
    from .datasets import build_datasets
    from .download import HubBytes
    from .grpo import build_grpo_datasets
    from .preference import build_preference_datasets

    build = {"sft": build_datasets, "grpo": build_grpo_datasets}.get(res["method"], build_preference_datasets)

    fetching = HubBytes(ev.emit, run.stop, named)
    with fetching if hub_data else contextlib.nullcontext():
        train_ds, eval_ds, report, warnings = build(
            res,
            loaded.tokenizer,
            lambda p: ev.emit("phase", phase="preparing_data", progress=round(p, 3), detail="tokenizing"),
        )
    ev.emit("dataset", **report)
    for w in warnings:
        ev.emit("warning", message=w)
    return Data(train_ds, eval_ds, report)


def fit(run: Run, loaded: Loaded, data: Data) -> Trained:
    """TRL's trainer for the method (SFTTrainer, or preference.py's), with the callback that turns
    its steps into events; then the evaluation."""
    res = run.res
    if run.world > 1 and not loaded.cuda:
        _restore_cpu_n_storages()
    from trl import SFTConfig, SFTTrainer

    from .backends import allow_fsdp_on_cpu, sft_kwargs
    from .callback import EventCallback

    if loaded.plan.sharded and not loaded.cuda:
        allow_fsdp_on_cpu()

    sync = _ddp_stop_sync() if run.world > 1 else (lambda s: s)
    nvml = NvmlSource()
    cb = EventCallback(
        run.ev.emit,
        run.stop,
        tokens_per_sample=data.report["tokens"]["mean"],
        samples_per_step=res["batch_size"] * res["gradient_accumulation_steps"] * run.world,
        cuda=loaded.cuda,
        sync_stop=sync,
        gpu_bytes=lambda: process_gpu_bytes(nvml.read(), {os.getpid()}) if loaded.cuda else None,
        on_step=lambda step: run.state.__setitem__("step", step),
    )
    if res["method"] == "sft":
        kwargs = sft_kwargs(res, loaded.plan, str(run.run_dir), data.eval is not None)
        trainer = SFTTrainer(
            model=loaded.model,
            args=SFTConfig(**{k: v for k, v in kwargs.items() if v is not None}),
            train_dataset=data.train,
            eval_dataset=data.eval,
            processing_class=loaded.tokenizer,
            callbacks=[cb],
        )
    elif res["method"] == "grpo":
        from .grpo import generation_path, grpo_kwargs
        from .grpo import make_trainer as make_grpo_trainer

        kwargs = grpo_kwargs(res, loaded.plan, str(run.run_dir), data.eval is not None)
        args = {k: v for k, v in kwargs.items() if v is not None}
        run.ev.emit("message", message=generation_path(loaded.plan))
        trainer = make_grpo_trainer(res, loaded.model, loaded.tokenizer, args, data.train, data.eval, [cb], run.ev.emit)
    else:
        from .preference import make_trainer, method_kwargs

        kwargs = method_kwargs(res, loaded.plan, str(run.run_dir), data.eval is not None)
        args = {k: v for k, v in kwargs.items() if v is not None}
        trainer = make_trainer(res, loaded.model, loaded.tokenizer, args, data.train, data.eval, [cb])
    checkpoint = _resume_from(run.run_dir, run.rank, run.ev) if run.resume else None
    metrics = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).metrics
    run.state["step"] = trainer.state.global_step
    if data.eval is not None and not run.stop.is_set():
        trainer.evaluate()
    return Trained(trainer, cb, metrics)


def finish(run: Run, loaded: Loaded, data: Data, trained: Trained, prompts: list[Any]) -> int:
    """The adapter and tokenizer saved, the quick look's answers, summary.json, and the end event."""
    ev, run_dir, trainer, tokenizer = run.ev, run.run_dir, trained.trainer, loaded.tokenizer
    from .datasets import CHAT_FORMATS, chat_template

    ev.emit("phase", phase="saving", detail=str(run_dir))
    if loaded.plan.sharded:
        save_whole(trainer, run_dir, run.rank)
    else:
        trainer.save_model(str(run_dir))  # the adapter, in PEFT format; written by the main process only
    chat = data.report.get("chat", data.report["format"] in CHAT_FORMATS)
    if run.rank == 0:
        if chat:  # the exact template trained with, for the chat and exports
            tokenizer.chat_template = chat_template(run.res, tokenizer)
        tokenizer.save_pretrained(str(run_dir))
        if prompts and not run.stop.is_set():
            from .generate import answer_prompts

            if loaded.plan.backend == "unsloth":
                from unsloth import FastLanguageModel

                FastLanguageModel.for_inference(trainer.model)
            template = tokenizer.chat_template if chat else None
            answer_prompts(trainer.model, tokenizer, template, prompts, run_dir, ev.emit)
    peak: dict[str, float | None] = {"peak_reserved_gb": None, "peak_allocated_gb": None, "peak_nvml_gb": None}
    if loaded.cuda:
        peak = trained.callback.memory_now()
        ev.emit("memory", **peak, total_gb=run.state["total_gib"], estimate_gb=loaded.estimate)
    stopped = trained.callback.stopped_at is not None
    summary = _summary(run, loaded, data, trained, peak, stopped)
    if run.rank == 0:
        rundir.write_json_atomic(run_dir / rundir.SUMMARY_FILE, summary)
    end = {k: summary[k] for k in ("final_loss", "steps", "runtime_s", "adapter")}
    if stopped:
        last = rundir.latest_checkpoint(run_dir)
        ev.emit("stopped", **end, checkpoint=str(last) if last else None)
        return EXIT_STOPPED
    ev.emit("done", **end)
    return EXIT_OK


def save_whole(trainer: Any, run_dir: Path, rank: int) -> None:
    """A sharded run's adapter, gathered whole and written by rank 0 alone in PEFT's format, as a
    single-process run writes it. Trainer.save_model writes nothing whole under SHARDED_STATE_DICT
    (trainer.py, save_model: only FULL_STATE_DICT is gathered), and accelerate's get_state_dict
    left DTensors in place on gloo. What trains (the adapter; every weight in full fine-tuning) is
    gathered tensor by tensor with DTensor.full_tensor, a collective every rank runs in the same
    order; the frozen base stays sharded."""
    from torch.distributed.tensor import DTensor

    model = trainer.accelerator.unwrap_model(trainer.model)
    state = {
        name: p.full_tensor() if isinstance(p, DTensor) else p.detach()
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    if rank == 0:
        model.save_pretrained(str(run_dir), state_dict=state)  # PEFT keeps the adapter's keys only


def _summary(
    run: Run, loaded: Loaded, data: Data, trained: Trained, peak: dict[str, float | None], stopped: bool
) -> dict[str, Any]:
    """summary.json: how the run ended, its speed and memory against the estimate, and what ran it."""
    trainer, metrics, plan = trained.trainer, trained.metrics, loaded.plan
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    def last(key: str) -> float | None:  # a training log's, not an evaluation's (eval_rewards/...)
        found = [h[key] for h in trainer.state.log_history if key in h]
        return found[-1] if found else None

    return {
        "state": "stopped" if stopped else "done",
        "method": run.res["method"],
        "final_loss": losses[-1] if losses else None,
        "reward_accuracy": last("rewards/accuracies"),
        "reward_margin": last("rewards/margins"),
        "reward": last("reward"),  # GRPO's mean reward
        "steps": trainer.state.global_step,
        "total_steps": trainer.state.max_steps,
        "runtime_s": round(time.time() - run.t0, 2),
        "train_runtime_s": metrics.get("train_runtime"),
        "train_steps_per_s": metrics.get("train_steps_per_second"),
        **trained.callback.steady(),  # without the first step's warm-up: what the run sustains
        **peak,  # torch's reserved and allocated peaks, and the process as nvidia-smi shows it
        "estimate_gb": loaded.estimate,
        "backend": plan.backend,
        "device": plan.device,
        "world_size": run.world,
        "substitutions": plan.substitutions,
        "dataset": data.report,
        "adapter": str(run.run_dir),
        "versions": versions(),
    }


def _resume_from(run_dir: Path, rank: int, ev: Any) -> Path:
    """The newest whole checkpoint; torn ones (an engine killed while saving) are set aside, kept."""
    checkpoint, skipped = rundir.resumable_checkpoint(run_dir)
    for torn, why in skipped:
        kept = rundir.set_aside(torn) if rank == 0 else torn
        ev.emit("warning", message=f"skipped {torn.name}: {why} (kept as {kept.name})")
    if checkpoint is None:
        raise DatasetError(f"--resume: {run_dir} has no complete checkpoint to resume from")
    changed = rundir.read_json(run_dir / rundir.RUN_FILE).get("changed") or []
    ev.emit("message", message=f"resuming from {checkpoint.name}" + "".join(f"; {c} (honoured)" for c in changed))
    return checkpoint


def estimate_gb(res: Resolved, backend: str, gpu_gib: float | None, world: int) -> float | None:
    from ..estimate import lookup, plan

    p = plan(res, lookup(res["base_model"], online=False), gpu_gib, backend=backend, gpu_count=per_node(res, world))
    return round(p.estimate.peak_gib, 3) if p.estimate else None


def per_node(res: Resolved, world: int) -> int:
    """The GPU count that gives this run's world size (the estimate is per process)."""
    return max(1, world // res["nnodes"])


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


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
