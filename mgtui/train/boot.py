"""Before a model loads, in the training process: the GPU checks, one card for a single-process
run, Unsloth imported before the libraries it patches, the memory cap, and the name to download."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from ..backend_choice import choose_backend
from ..cuda_check import CudaFacts, DeviceError, problems, requested_indices, torch_build
from ..nvml import GpuSource, NvmlSource
from ..settings import Resolved
from ..units import GIB, gib


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
    if choose_backend(True, world, res["base_model"], res.sharded)[0] != "unsloth":
        return None
    try:
        import unsloth  # noqa: F401  (patches transformers, trl and peft: before them)
    except Exception as e:  # its import checks the GPU and the libraries; train without it
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return None


def cap_memory(cuda: Any, cap_gb: float, device: int, emit: Any) -> float:
    """--max-gpu-memory: a hard per-process limit in the caching allocator, so that going past it
    raises torch's OutOfMemoryError (reported with advice for the cap) instead of taking the whole
    card from its other users. Returns the GiB the run may use."""
    total = cuda.mem_get_info(device)[1]
    fraction = min(1.0, cap_gb * GIB / total)
    cuda.set_per_process_memory_fraction(fraction, device)
    emit("message", message=f"GPU memory capped at {cap_gb:g} GB ({fraction:.0%} of the card)")
    return min(cap_gb, gib(total))


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
