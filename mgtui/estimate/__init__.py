"""The VRAM estimator: pure functions of the settings, the architecture and the GPU memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import Resolved
from .advisor import Step, advise, estimate_settings, inputs_for, max_batch_size, max_seq_length
from .archs import Arch, Lookup, lookup
from .memory import DEFAULT, Coefficients, Estimate

__all__ = ["MemoryPlan", "plan", "Arch", "Lookup", "lookup", "Estimate", "Step", "Coefficients", "DEFAULT"]


@dataclass(frozen=True)
class MemoryPlan:
    """Everything the VRAM panel and `model-garden estimate` show."""

    lookup: Lookup
    gpu_gib: float | None
    gpu_label: str  # where the GPU memory figure came from
    estimate: Estimate | None
    steps: tuple[Step, ...] = ()
    max_batch_size: int | None = None
    max_seq_length: int | None = None
    world_size: int = 1  # processes; the estimate is per GPU (DDP keeps a full copy on each)
    effective_batch: int = 1  # batch × accumulation × world size
    backend: str = "unsloth"
    sharded: bool = False  # the estimate is one rank's share of a model split over world_size GPUs


def plan(
    res: Resolved,
    found: Lookup,
    gpu_gib: float | None,
    gpu_label: str = "",
    backend: str = "unsloth",
    c: Coefficients = DEFAULT,
    gpu_count: int = 1,
) -> MemoryPlan:
    cap = res["max_gpu_memory"]
    if cap and (gpu_gib is None or cap < gpu_gib):  # the run may not use more: plan for the cap
        gpu_gib, gpu_label = cap, f"{gpu_label or 'GPU'} capped at {cap:g} GB"
    world = res.world_size(gpu_count)
    common: dict[str, Any] = dict(
        world_size=world,
        effective_batch=res.effective_batch * world,
        backend=backend,
        sharded=res.sharded and world > 1,
    )
    if found.arch is None:
        return MemoryPlan(found, gpu_gib, gpu_label, None, **common)
    est = estimate_settings(res, found.arch, gpu_gib, backend, c, gpu_count)
    if gpu_gib is None:
        return MemoryPlan(found, gpu_gib, gpu_label, est, **common)
    inp = inputs_for(res, backend, gpu_count)
    steps = tuple(advise(res, found.arch, gpu_gib, backend, c, gpu_count)) if est.state == "over" else ()
    limit = found.max_positions or 131072
    return MemoryPlan(
        found,
        gpu_gib,
        gpu_label,
        est,
        steps,
        max_batch_size(found.arch, inp, gpu_gib, c),
        max_seq_length(found.arch, inp, gpu_gib, c, limit),
        **common,
    )
