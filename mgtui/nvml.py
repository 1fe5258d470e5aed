"""GPU telemetry through NVML (the nvidia-ml-py package's `pynvml` module).

Like nvitop's split of its NVML API from its UI: this module returns plain snapshots and never
raises. A missing library, no driver, no GPU or no permission give a reading with `error` set,
and single fields that a GPU doesn't support are None (shown as N/A).
"""

from __future__ import annotations

import os
import pwd
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .units import GIB


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    memory_total: int  # bytes
    memory_used: int
    utilization: int | None = None  # percent
    temperature: int | None = None  # °C
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    process_memory: dict[int, int] = field(default_factory=dict)  # pid -> bytes
    memory_reserved: int = 0  # bytes the driver keeps for itself: no process can have them
    capability: tuple[int, int] | None = None  # CUDA compute capability, (8, 0) for an A100

    def used_by(self, pids: set[int]) -> int:
        return sum(v for pid, v in self.process_memory.items() if pid in pids)

    def available_gib(self, own_pids: Collection[int] = frozenset()) -> float:
        """Total minus what other processes hold: what a new run can plan on."""
        return (self.memory_total - self.memory_reserved - (self.memory_used - self.used_by(set(own_pids)))) / GIB


@dataclass(frozen=True)
class GpuReading:
    gpus: tuple[GpuSample, ...] = ()
    error: str | None = None  # why there is nothing to show
    driver_version: str | None = None  # "580.65.06"
    driver_cuda: str | None = None  # the newest CUDA the driver runs, "13.0"

    @property
    def pids(self) -> set[int]:
        """Every process holding memory on any of the cards."""
        return {pid for g in self.gpus for pid in g.process_memory}


class GpuSource(Protocol):
    """What the UI reads GPUs through; tests feed recorded readings (and process tables)."""

    def read(self) -> GpuReading: ...

    def describe(self, pid: int) -> tuple[str, str]: ...


class NvmlSource:
    """Reads every visible GPU. Initialises NVML once, lazily, off the UI thread's first frame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml = None
        self._init_error: str | None = None

    def _init(self):
        if self._nvml is None and self._init_error is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except ImportError:
                self._init_error = "NVML is not installed (the nvidia-ml-py package)"
            except Exception as e:  # NVMLError: no driver, no permission
                self._init_error = f"NVML unavailable: {_nvml_reason(e)}"
        return self._nvml

    @staticmethod
    def describe(pid: int) -> tuple[str, str]:
        return describe_pid(pid)

    def read(self) -> GpuReading:
        with self._lock:
            nv = self._init()
            if nv is None:
                return GpuReading(error=self._init_error)
            try:
                count = nv.nvmlDeviceGetCount()
            except Exception as e:
                return GpuReading(error=f"NVML: {_nvml_reason(e)}")
            if count == 0:
                return GpuReading(error="no NVIDIA GPU found")
            return GpuReading(tuple(self._sample(nv, i) for i in range(count)), None, *self._driver(nv))

    @staticmethod
    def _driver(nv) -> tuple[str | None, str | None]:
        try:
            version = nv.nvmlSystemGetDriverVersion()
            version = version.decode() if isinstance(version, bytes) else str(version)
        except Exception:
            version = None
        try:
            cuda = nv.nvmlSystemGetCudaDriverVersion()  # 13000 for CUDA 13.0
            cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except Exception:
            cuda_text = None
        return version, cuda_text

    @staticmethod
    def _sample(nv, i: int) -> GpuSample:
        h = nv.nvmlDeviceGetHandleByIndex(i)

        def get(fn, *args, scale: float = 1):
            try:
                value = fn(h, *args)
                return value if scale == 1 else value / scale
            except Exception:
                return None

        name = get(nv.nvmlDeviceGetName) or f"GPU {i}"
        # v2 splits the driver's reservation out of "used", as nvidia-smi does (on an H200, 0.6 GiB
        # that v1 counts as used); drivers before 510 only answer v1.
        v2 = getattr(nv, "nvmlMemory_v2", None)
        mem = (get(nv.nvmlDeviceGetMemoryInfo, v2) if v2 else None) or get(nv.nvmlDeviceGetMemoryInfo)
        util = get(nv.nvmlDeviceGetUtilizationRates)
        procs: dict[int, int] = {}
        for p in get(nv.nvmlDeviceGetComputeRunningProcesses) or []:
            if getattr(p, "usedGpuMemory", None):
                procs[p.pid] = procs.get(p.pid, 0) + p.usedGpuMemory
        return GpuSample(
            index=i,
            name=name.decode() if isinstance(name, bytes) else str(name),
            memory_total=mem.total if mem else 0,
            memory_used=mem.used if mem else 0,
            memory_reserved=getattr(mem, "reserved", 0) if mem else 0,
            utilization=util.gpu if util else None,
            temperature=get(nv.nvmlDeviceGetTemperature, 0),  # NVML_TEMPERATURE_GPU
            power_w=get(nv.nvmlDeviceGetPowerUsage, scale=1000),
            power_limit_w=get(nv.nvmlDeviceGetEnforcedPowerLimit, scale=1000),
            sm_clock_mhz=get(nv.nvmlDeviceGetClockInfo, 1),  # NVML_CLOCK_SM
            process_memory=procs,
            capability=get(nv.nvmlDeviceGetCudaComputeCapability),
        )


def _nvml_reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "Insufficient Permissions" in text or "NoPermission" in type(e).__name__:
        return "permission denied (is this user in the video group?)"
    if "Driver Not Loaded" in text or "LibraryNotFound" in type(e).__name__ or "not found" in text.lower():
        return "no NVIDIA driver on this machine"
    return text


def process_gpu_bytes(reading: GpuReading, pids: set[int]) -> int | None:
    """GPU memory these processes hold on every card, as nvidia-smi shows it (CUDA context
    included); None where NVML lists none of them (no GPU, or PIDs hidden inside a container)."""
    held = [g.used_by(pids) for g in reading.gpus if pids & g.process_memory.keys()]
    return sum(held) if held else None


def visible_gpu_count(source: GpuSource | None = None) -> int:
    """GPUs a new process may use: CUDA_VISIBLE_DEVICES when set (NVML ignores it), else NVML's count."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len((source or NvmlSource()).read().gpus)


class FixedSource:
    """A reading given in advance: the --gpu-memory planning case, and tests (with a recorded
    process table: PID to user and command)."""

    def __init__(self, reading: GpuReading, table: dict[int, tuple[str, str]] | None = None) -> None:
        self.reading = reading
        self.table = table

    def read(self) -> GpuReading:
        return self.reading

    def describe(self, pid: int) -> tuple[str, str]:
        return describe_pid(pid) if self.table is None else self.table.get(pid, NOT_VISIBLE)


NOT_VISIBLE = ("?", "not visible here (another container or PID namespace)")
READING_ENV = "MGTUI_GPU_READING"


class FileSource:
    """A reading recorded as JSON, read again at every look ({"gpus": [{index, name, memory_total,
    memory_used, process_memory: {pid: bytes}}], "error": ...}): the queue's waiter is driven
    with it in tests and demos (MGTUI_GPU_READING=FILE), its free memory changed over time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> GpuReading:
        import json

        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            return GpuReading(error=f"{self.path}: {e}")
        gpus = []
        for g in data.get("gpus", []):
            procs = {int(k): v for k, v in g.pop("process_memory", {}).items()}
            gpus.append(GpuSample(process_memory=procs, **g))
        return GpuReading(tuple(gpus), data.get("error"))

    @staticmethod
    def describe(pid: int) -> tuple[str, str]:
        return describe_pid(pid)


def file_source() -> FileSource | None:
    path = os.environ.get(READING_ENV)
    return FileSource(Path(path)) if path else None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe_pid(pid: int, proc: Path = Path("/proc")) -> tuple[str, str]:
    """(user, shortened command) from the process table; ("?", why) when the PID is not ours to see."""
    try:
        uid = (proc / str(pid)).stat().st_uid
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return NOT_VISIBLE
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return _user(uid), "?"
    words[0] = os.path.basename(words[0])
    if words[0].startswith("python") and len(words) > 2 and words[1] == "-m":
        words = [words[2], *words[3:]]  # "python -m mgtui.train.worker ..." reads as the module
    return _user(uid), " ".join(words)
