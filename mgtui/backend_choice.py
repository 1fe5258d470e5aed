"""Which training backend a run will use, decided without importing it (the form shows this too).

Unsloth needs CUDA; under DDP it needs a release that supports torchrun. Importing unsloth needs
a GPU, so support is read from its source: releases that run under torchrun place each rank's
model on its LOCAL_RANK device in unsloth/models/loader_utils.py (is_distributed)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .cuda_check import c_compiler
from .demo_model import BUILTIN_MODEL


def unsloth_available() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def unsloth_supports_ddp() -> bool:
    spec = importlib.util.find_spec("unsloth")
    if spec is None or not spec.submodule_search_locations:
        return False
    loader = Path(list(spec.submodule_search_locations)[0]) / "models" / "loader_utils.py"
    try:
        text = loader.read_text(encoding="utf-8")
    except OSError:
        return False
    return "def is_distributed" in text and "LOCAL_RANK" in text


FORCE_ENV = "MGTUI_BACKEND"
DEMO_ON_CUDA = "the demo's tiny model trains in 16-bit on Transformers + PEFT"


SHARDED = "Unsloth does not shard a model (FSDP): a sharded run trains on Transformers + PEFT"


def choose_backend(cuda: bool, world_size: int, base_model: str = "", shard: bool = False) -> tuple[str, str | None]:
    """(backend, why it isn't Unsloth, or None)."""
    if not cuda:
        return "transformers", "no CUDA GPU: Transformers + PEFT on the CPU"
    if shard:
        return "transformers", SHARDED
    if os.environ.get(FORCE_ENV) == "transformers":  # a way round an Unsloth that fails on a card
        return "transformers", f"{FORCE_ENV}=transformers"
    if base_model == BUILTIN_MODEL:
        # A 64-wide toy gains nothing from Unsloth's kernels or 4-bit blocks: the demo shows the
        # loop on the path with the fewest moving parts.
        return "transformers", DEMO_ON_CUDA
    if not unsloth_available():
        return "transformers", "Unsloth is not installed"
    if c_compiler() is None:
        return "transformers", "no C compiler for Unsloth's Triton kernels: install gcc, or set CC"
    if world_size > 1 and not unsloth_supports_ddp():
        return "transformers", f"this Unsloth does not support {world_size}-process DDP"
    return "unsloth", None


def planned_backend(base_model: str, world_size: int, gpus_here: int, shard: bool = False) -> tuple[str, str | None]:
    """The backend to estimate for. With no GPU here the plan is for an NVIDIA box, where
    Unsloth comes installed by default."""
    if gpus_here or base_model == BUILTIN_MODEL or shard:
        return choose_backend(True, world_size, base_model, shard)
    return "unsloth", None
