"""`model-garden estimate`: the breakdown as a table, or one JSON object."""

from __future__ import annotations

import json
import sys

from ..errors import UsageError
from ..nvml import GpuSource
from ..settings import Resolved
from . import plan
from .archs import lookup
from .gpu_catalog import COMMON_GPUS, find_gpu

LABELS = {
    "cuda_context": "CUDA context",
    "base_weights": "Base weights",
    "lora_weights": "LoRA weights",
    "gradients": "Gradients",
    "optimizer_states": "Optimizer states",
    "activations": "Activations",
    "logits_and_loss": "Logits and loss",
    "evaluation": "Evaluation batch",
    "allocator_overhead": "Allocator overhead",
}


class EstimateInputError(ValueError):
    pass


def gpu_target(
    gpu_memory: float | None, gpu_name: str | None, source: GpuSource | None = None
) -> tuple[float | None, str]:
    """The GPU memory to plan for: --gpu-memory, then --gpu-name, then NVML's first GPU."""
    if gpu_memory is not None:
        if not 0 < gpu_memory <= 4096:
            raise EstimateInputError(f"--gpu-memory: {gpu_memory:g} is not a number of GB above 0 and up to 4096")
        return gpu_memory, f"--gpu-memory {gpu_memory:g}"
    if gpu_name:
        hit = find_gpu(gpu_name)
        if hit is None:
            raise EstimateInputError(f"--gpu-name: unknown GPU {gpu_name!r} (known: {', '.join(COMMON_GPUS)})")
        return hit[1], hit[0]
    from ..nvml import NvmlSource

    reading = (source or NvmlSource()).read()
    if reading.gpus:
        g = reading.gpus[0]
        return g.available_gib(), f"GPU {g.index}: {g.name}"
    return None, reading.error or "no GPU"


def run_estimate(res: Resolved, gpu_memory: float | None, gpu_name: str | None, as_json: bool) -> int:
    from ..backend_choice import planned_backend
    from ..nvml import NvmlSource, visible_gpu_count

    nvml = NvmlSource()  # NVML starts once for the target and the count
    try:
        gpu_gib, label = gpu_target(gpu_memory, gpu_name, nvml)
    except EstimateInputError as e:
        raise UsageError(str(e)) from None
    gpus = visible_gpu_count(nvml)
    backend = planned_backend(res["base_model"], res.world_size(gpus), gpus, res.sharded)[0]
    p = plan(res, lookup(res["base_model"]), gpu_gib, label, backend, gpu_count=gpus)
    est = p.estimate
    if as_json:
        doc = {
            "base_model": res["base_model"],
            "architecture": p.lookup.source,
            "peak_gb": round(est.peak_gib, 3) if est else None,
            "breakdown": {k: round(v, 3) for k, v in est.breakdown.items()} if est else None,
            "gpu_memory_gb": gpu_gib,
            "gpu": label,
            "fits": est.fits if est else None,
            "state": est.state if est else "unknown architecture",
            "unreliable": est.unreliable if est else None,
            "max_batch_size": p.max_batch_size,
            "max_seq_length": p.max_seq_length,
            "cpu_ram_gb": round(est.cpu_ram_gib, 3) if est else None,
            "checkpointing": est.checkpointing if est else None,
            "peak_at": est.peak_at if est else None,
            "loss_chunks": est.loss_chunks if est else None,
            "loss_chunk_tokens": est.loss_chunk_tokens if est else None,
            "backend": backend,
            "world_size": p.world_size,
            "trainable_params": est.trainable_params if est else None,
            "advice": [s.as_dict() for s in p.steps],
            "notes": list(est.notes) if est else [p.lookup.source],
        }
        print(json.dumps(doc, indent=2))
        return 0
    out = sys.stdout.write
    out(f"{res['base_model']}  ({p.lookup.source})\n")
    if est is None:
        out(f"{p.lookup.source}\n")
        return 0
    out(
        f"{res.precision}-bit, r{res['lora_r']}, batch {res['batch_size']} × {res['max_seq_length']} tokens, "
        f"checkpointing {est.checkpointing}, {res['optim']}\n\n"
    )
    for key, value in est.breakdown.items():
        out(f"  {LABELS[key]:<20} {value:8.2f} GB\n")
    out(f"  {'-' * 20} {'-' * 8}\n  {'Peak':<20} {est.peak_gib:8.2f} GB\n")
    if est.cpu_ram_gib:
        out(f"  {'Host RAM (offload)':<20} {est.cpu_ram_gib:8.2f} GB\n")
    if est.loss_chunks:
        where = "at the loss" if est.peak_at == "loss" else "while backward recomputes the layers"
        out(
            f"\nUnsloth's fused loss: {est.loss_chunks} chunk{'s' * (est.loss_chunks > 1)} of "
            f"{est.loss_chunk_tokens} tokens (target {est.loss_target_gib:.2f} GB); the peak comes {where}\n"
        )
    if est.unreliable:
        out(f"\nUNRELIABLE: {est.unreliable}. Fits: unknown.\n")
    elif gpu_gib is None:
        out(f"\nGPU: {label}; fits: unknown (give --gpu-memory GB or --gpu-name to plan)\n")
    else:
        verdict = {"fits": "fits", "tight": "fits, tight (≥ 90%)", "over": "DOES NOT FIT"}[est.state]
        out(f"\nGPU: {label}, {gpu_gib:.1f} GB available: {verdict} ({est.peak_gib / gpu_gib:.0%})\n")
        out(
            f"Largest batch size that fits: {p.max_batch_size or 'none'}; "
            f"longest max_seq_length: {p.max_seq_length or 'none'}\n"
        )
    for note in est.notes:
        out(f"note: {note}\n")
    if p.steps:
        out("\nOut of memory: try in order (the guide's steps)\n")
        for s in p.steps:
            mark = "fits" if s.fits else "still over"
            out(f"  {s.number or '*'}. {s.title:<58} {s.estimate.peak_gib:6.2f} GB  {mark}\n")
    return 0
