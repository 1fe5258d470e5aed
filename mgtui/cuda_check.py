"""Can this machine's torch train on its NVIDIA GPUs? Decided before any model loads.

Pure: the facts come from NVML (`nvml.py`), from torch's `version.py` read as text (the UI never
imports torch) and, in the training process, from torch itself. A GPU box whose torch cannot
reach its cards must fail here, with the fix, rather than train on the CPU for days.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from .nvml import GpuReading
from .units import comma_list

TORCH_INSTALL = "https://pytorch.org/get-started/locally/"


class DeviceError(Exception):
    """The run can't use this machine's GPUs: one line naming what and the fix."""


@dataclass(frozen=True)
class CudaFacts:
    reading: GpuReading  # NVML's view: every NVIDIA GPU, whatever CUDA_VISIBLE_DEVICES says
    torch_cuda: str | None  # the CUDA torch was built for ("13.0"); None for a CPU-only build
    torch_version: str | None = None
    cuda_available: bool | None = None  # torch.cuda.is_available(); None where torch isn't imported
    arch_list: tuple[str, ...] | None = None  # torch.cuda.get_arch_list(); None where unknown


@functools.cache
def torch_build() -> tuple[str | None, str | None]:
    """(torch version, CUDA it was built for), read from torch/version.py without importing torch.
    Read once: the installed torch doesn't change under a running process."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None, None
    version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.M)
    cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)", text, re.M)
    return (version.group(1) if version else None), (cuda.group(1) if cuda else None)


def requested_indices(gpus: str) -> list[str]:
    return comma_list(gpus)


def _major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def supports_capability(arch_list: tuple[str, ...], capability: tuple[int, int]) -> bool:
    """torch's own rule (torch.cuda._check_cubins): a card runs kernels built for its major
    architecture; an empty list means torch can't tell."""
    sms = [int(a.split("_", 1)[1].rstrip("af")) for a in arch_list if a.startswith("sm_")]
    return not sms or any(sm // 10 == capability[0] for sm in sms)


def problems(facts: CudaFacts, gpus: str = "") -> list[str]:
    """Why a run can't use the GPUs it would train on; empty when it can, or when there is no
    NVIDIA GPU at all and none was asked for (then it trains on the CPU, and says so)."""
    found = facts.reading.gpus
    wanted = requested_indices(gpus)
    if not found:
        if wanted:
            return [f"--gpus {gpus}: no NVIDIA GPU here ({facts.reading.error or 'NVML found none'})"]
        return []
    indices = {str(g.index) for g in found}
    bad = [w for w in wanted if w not in indices]
    if bad:
        return [f"--gpus {gpus}: no GPU {', '.join(bad)} here (detected: {', '.join(sorted(indices, key=int))})"]
    driver = facts.reading.driver_version or "unknown"
    runs = facts.reading.driver_cuda
    torch_v = facts.torch_version or "torch"
    if facts.torch_cuda is None:
        return [
            f"torch {torch_v} is a CPU-only build, but this machine has {len(found)} NVIDIA GPU(s) "
            f"(driver {driver}): install a CUDA build of torch ({TORCH_INSTALL})"
        ]
    built, newest = _major(facts.torch_cuda), _major(runs)
    if built is not None and newest is not None and newest < built:
        return [
            f"torch {torch_v} was built for CUDA {facts.torch_cuda}, but NVIDIA driver {driver} runs CUDA "
            f"{runs} at most: upgrade the driver, or install torch built for CUDA {runs} ({TORCH_INSTALL})"
        ]
    if facts.cuda_available is False:
        return [
            f"torch {torch_v} (CUDA {facts.torch_cuda}) cannot use this machine's {len(found)} NVIDIA GPU(s) "
            f"(driver {driver}, CUDA {runs or 'unknown'}): install the torch build for this driver "
            f"({TORCH_INSTALL})"
        ]
    used = [g for g in found if not wanted or str(g.index) in wanted]
    if facts.arch_list is not None:
        for g in used:
            if g.capability and not supports_capability(facts.arch_list, g.capability):
                cap = f"{g.capability[0]}.{g.capability[1]}"
                return [
                    f"GPU {g.index} {g.name} (compute capability {cap}) is not supported by torch {torch_v}, "
                    f"built for {' '.join(facts.arch_list)}: install a torch build that supports it ({TORCH_INSTALL})"
                ]
    return []


def bf16_capable(capabilities: list[tuple[int, int]]) -> bool:
    """bfloat16 in hardware: Ampere (8.0) and newer, on every card the run uses. torch's
    is_bf16_supported() also answers True for emulation, which Unsloth does not accept."""
    return bool(capabilities) and all(c >= (8, 0) for c in capabilities)


def c_compiler(env: Mapping[str, str] | None = None, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The compiler Triton builds its kernels' launchers with (triton/runtime/build.py: $CC,
    then gcc, then clang); None where there is none, and Unsloth's kernels can't run."""
    cc = (os.environ if env is None else env).get("CC")
    return cc or which("gcc") or which("clang")


def problems_here(reading: GpuReading, gpus: str = "") -> list[str]:
    """`problems` with what can be known without importing torch: the app, and a run's start."""
    version, built = torch_build()
    return problems(CudaFacts(reading, built, version), gpus)
