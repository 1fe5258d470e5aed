"""The CUDA path, checked on the CPU: what a first run on an NVIDIA box would hit, with the GPU
faked where it must be (compute capabilities, device counts, NVML readings, a torch that can't
reach its cards)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from engine_helpers import events, settings, write_dataset

from mgtui import backend_choice
from mgtui.cuda_check import CudaFacts, bf16_capable, c_compiler, problems
from mgtui.demo_model import BUILTIN_MODEL
from mgtui.estimate import lookup
from mgtui.estimate.memory import Inputs, estimate
from mgtui.nvml import FixedSource, GpuReading, GpuSample, process_gpu_bytes
from mgtui.runs import rundir
from mgtui.runs.launch import LaunchError, engine_env, start
from mgtui.runs.view import RunView
from mgtui.settings import resolve
from mgtui.train import boot, pipeline, worker
from mgtui.train.backends import RuntimePlan, adopt_model_dtype, plan_for, sft_kwargs, unsloth_kwargs

GIB = 1024**3
ROOT = Path(__file__).resolve().parent.parent


def card(index: int = 0, name: str = "Tesla T4", cap: tuple[int, int] = (7, 5), procs: dict[int, int] | None = None):
    return GpuSample(index, name, 16 * GIB, 1 * GIB, capability=cap, process_memory=procs or {})


def box(*cards: GpuSample, driver: str = "580.65.06", cuda: str = "13.0") -> GpuReading:
    return GpuReading(cards, None, driver, cuda)


def res_(**kw):
    return resolve([{"base_model": "unsloth/llama-3.1-8b", "dataset": "d.jsonl", **kw}])


# --- 1. bf16 only where every card has it in hardware; Unsloth's own dtype on its backend ----
@pytest.mark.parametrize(
    "caps, bf16",
    [
        ([(7, 5)], False),
        ([(7, 0)], False),
        ([(8, 0)], True),
        ([(9, 0), (8, 6)], True),
        ([(8, 0), (7, 5)], False),
        ([], False),
    ],
)
def test_mixed_precision_follows_every_cards_capability(caps, bf16):
    assert bf16_capable(caps) is bf16
    plan = plan_for(res_(), cuda=True, capabilities=caps)
    kw = sft_kwargs(res_(), plan, "out", False)
    assert (kw["bf16"], kw["fp16"]) == (bf16, not bf16)


def test_unsloth_backend_trains_in_the_dtype_unsloth_loaded():
    import torch

    plan = plan_for(res_(), cuda=True, capabilities=[(9, 0)])
    assert plan.bf16
    fp16_model = SimpleNamespace(config=SimpleNamespace(dtype=torch.float16))  # what Unsloth loads on a T4
    adopt_model_dtype(plan, fp16_model)
    kw = sft_kwargs(res_(), plan, "out", False)
    assert kw["fp16"] and not kw["bf16"]
    embeddings_only = SimpleNamespace(
        config=SimpleNamespace(),
        get_input_embeddings=lambda: SimpleNamespace(weight=torch.zeros(1, dtype=torch.bfloat16)),
    )
    adopt_model_dtype(plan, embeddings_only)
    assert plan.bf16


# --- 2. a GPU box never trains on the CPU without saying so ----------------------------------
def test_an_old_driver_refuses_the_run_naming_driver_and_cuda():
    facts = CudaFacts(box(card(), driver="535.104.05", cuda="12.2"), "13.0", "2.14.0+cu130")
    [msg] = problems(facts)
    assert "535.104.05" in msg and "CUDA 13.0" in msg and "12.2" in msg and "install torch" in msg


def test_a_cpu_only_torch_on_a_gpu_box_is_refused():
    [msg] = problems(CudaFacts(box(card()), None, "2.14.0+cpu"))
    assert "CPU-only build" in msg and "580.65.06" in msg


def test_torch_without_cuda_at_run_time_is_refused():
    [msg] = problems(CudaFacts(box(card()), "13.0", "2.14.0", cuda_available=False))
    assert "cannot use" in msg and "580.65.06" in msg


def test_gpu_indices_are_checked_against_the_detected_gpus():
    two = box(card(0), card(1))
    assert problems(CudaFacts(two, "13.0"), "1") == []
    [msg] = problems(CudaFacts(two, "13.0"), "1,7")
    assert msg.startswith("--gpus 1,7: no GPU 7 here") and "detected: 0, 1" in msg
    [msg] = problems(CudaFacts(GpuReading(error="no NVIDIA driver on this machine"), "13.0"), "0")
    assert "no NVIDIA GPU here" in msg


def test_a_card_whose_architecture_torch_lacks_is_refused_by_name():
    arch = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100a", "sm_120")
    kepler = CudaFacts(box(card(0, "Tesla K80", (3, 7))), "13.0", "2.14.0", True, arch)
    [msg] = problems(kepler)
    assert "Tesla K80" in msg and "3.7" in msg and "sm_75" in msg
    assert problems(replace(kepler, reading=box(card(0, "NVIDIA A10", (8, 6))))) == []  # same major as sm_80
    assert problems(replace(kepler, reading=box(card(0, "B200", (10, 0))))) == []


def test_no_nvidia_gpu_at_all_still_trains_on_the_cpu():
    assert problems(CudaFacts(GpuReading(error="no NVIDIA GPU found"), "13.0")) == []


def test_start_refuses_before_making_the_run_directory(tmp_path):
    res = settings(Path("m"), tmp_path / "d.jsonl", tmp_path / "run")
    with pytest.raises(LaunchError, match="535.104.05"):
        start(res, source=FixedSource(box(card(), driver="535.104.05", cuda="12.2")))
    assert not (tmp_path / "run").exists()


def test_train_with_a_gpu_that_isnt_here_exits_2_in_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgtui",
            "train",
            "--preset",
            "demo",
            "--gpus",
            "7",
            "--output-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--gpus 7: no NVIDIA GPU here" in out.stderr
    assert "Traceback" not in out.stderr


# --- 3. --use-gradient-checkpointing reaches the trainer on both backends ----------------------
@pytest.mark.parametrize("backend", ["unsloth", "transformers"])
@pytest.mark.parametrize("mode, on", [("unsloth", True), ("true", True), ("false", False)])
def test_effective_trainer_checkpointing(backend, mode, on):
    from trl import SFTConfig

    gc = {"unsloth": "unsloth", "true": True, "false": False}[mode]
    if backend == "transformers" and gc == "unsloth":
        gc = True
    plan = RuntimePlan(backend, "cpu", 32, gc, "adamw_torch")  # the device doesn't enter this choice
    kw = sft_kwargs(res_(use_gradient_checkpointing=mode), plan, "out", False)
    args = SFTConfig(**{k: v for k, v in kw.items() if v is not None})
    assert args.gradient_checkpointing is on


@pytest.mark.parametrize("precision, reentrant", [(4, False), (8, True), (16, False)])
def test_eight_bit_on_transformers_checkpoints_reentrantly(precision, reentrant):
    """On the H200, 8-bit Llama-3.1-8B on Transformers + PEFT peaked at 34 GiB (4-bit: 11): bitsandbytes'
    8-bit matmul keeps its input where non-reentrant checkpointing can't free it."""
    from trl import SFTConfig

    plan = RuntimePlan("transformers", "cuda", precision, True, "adamw_torch")
    kw = sft_kwargs(res_(), plan, "out", False)
    args = SFTConfig(**{k: v for k, v in kw.items() if v is not None})
    assert args.gradient_checkpointing_kwargs == {"use_reentrant": reentrant}


# --- 4. the whole model on the run's own GPU; no DataParallel; no placement is an OOM ----------
def test_unsloth_places_the_whole_model_on_the_runs_device():
    plan = plan_for(res_(), cuda=True, capabilities=[(9, 0)])
    assert unsloth_kwargs(res_(), plan)["device_map"] == {"": 0}
    assert unsloth_kwargs(res_(), plan, local_rank=3)["device_map"] == {"": 3}


def test_a_single_process_sees_one_gpu():
    assert boot.single_gpu_visible(None, 4) == "0"
    assert boot.single_gpu_visible(None, 1) is None
    assert boot.single_gpu_visible("2,3", 4) == "2"
    assert boot.single_gpu_visible("3", 4) is None


def test_no_placement_is_reported_as_out_of_memory():
    class DeviceMapInfeasible(RuntimeError):  # unsloth_zoo.device_map_planner's, by name
        pass

    class OutOfMemoryError(RuntimeError):
        pass

    assert worker.is_oom(DeviceMapInfeasible("weights + head headroom exceed the GPUs"))
    assert worker.is_oom(OutOfMemoryError("CUDA out of memory"))
    assert worker.is_oom(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED ... out of memory"))
    assert not worker.is_oom(ValueError("bad shape"))


# --- 5. unsloth before transformers, trl, peft and CUDA ---------------------------------------
STUB = """
import json, os, sys
torch = sys.modules.get("torch")
with open(os.environ["STUB_RECORD"], "w") as f:
    json.dump({"before": sorted(m for m in ("transformers", "trl", "peft", "datasets") if m in sys.modules),
               "cuda_initialized": bool(torch and torch.cuda.is_initialized())}, f)
os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")
"""


def test_unsloth_is_imported_first_in_a_fresh_training_process(tmp_path, tiny_model):
    stub = tmp_path / "stub" / "unsloth"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(STUB)
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=8)
    res = settings(tiny_model, data, tmp_path / "run")
    rundir_ = tmp_path / "run"
    rundir_.mkdir()
    from mgtui import presets

    (rundir_ / rundir.SETTINGS_FILE).write_text(presets.dumps(res, include_paths=True))
    script = textwrap.dedent(f"""
        import sys
        from mgtui.nvml import FixedSource, GpuReading, GpuSample
        from mgtui.train import boot, worker
        t4 = GpuSample(0, "Tesla T4", 16 * 2**30, 0, capability=(7, 5))
        boot.NvmlSource = lambda: FixedSource(GpuReading((t4,), None, "580.65.06", "13.0"))
        sys.exit(worker.run(worker.Path({str(rundir_)!r})))
    """)
    env = {**os.environ, "PYTHONPATH": f"{stub.parent}{os.pathsep}{ROOT}", "STUB_RECORD": str(tmp_path / "rec.json")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    record = json.loads((tmp_path / "rec.json").read_text())
    assert record == {"before": [], "cuda_initialized": False}
    # On this CPU the faked T4 can't be reached by torch: refused, exit 2, never the CPU.
    assert out.returncode == 2, out.stderr
    last = events(rundir_)[-1]
    assert last["type"] == "failed" and last["kind"] == "device" and "cannot use" in last["message"]


# --- 6. what the estimate and the measurement compare ----------------------------------------
LLAMA8B = lookup("unsloth/llama-3.1-8b").arch


def test_transformers_kbit_counts_the_float32_upcast_and_trls_chunked_loss():
    un = estimate(LLAMA8B, Inputs(backend="unsloth"))
    hf = estimate(LLAMA8B, Inputs(backend="transformers"))
    upcast = 2 * (LLAMA8B.embed_params + LLAMA8B.small_params) / GIB  # 16-bit -> 32-bit
    assert hf.breakdown["base_weights"] - un.breakdown["base_weights"] == pytest.approx(upcast)
    assert upcast > 1.9  # about 2 GiB for Llama-3.1-8B, as prepare_model_for_kbit_training does
    # TRL's chunked loss: 256 tokens x vocab x 16 bytes, plus the lm_head cast, whatever the batch.
    chunk = (256 * LLAMA8B.vocab * 16 + 2 * LLAMA8B.vocab * LLAMA8B.hidden) / GIB
    assert hf.breakdown["logits_and_loss"] == pytest.approx(chunk)
    big = estimate(LLAMA8B, Inputs(backend="transformers", batch_size=8))
    assert big.breakdown["logits_and_loss"] == pytest.approx(chunk)
    sixteen = estimate(LLAMA8B, Inputs(backend="transformers", precision=16))
    assert sixteen.breakdown["logits_and_loss"] == pytest.approx(256 * LLAMA8B.vocab * 16 / GIB)


def test_a_ddp_run_without_gpus_is_estimated_per_process():
    res = res_()  # no --gpus, no --nproc-per-node: one process per GPU
    one = pipeline.estimate_gb(res, "unsloth", 80.0, world=1)
    four = pipeline.estimate_gb(res, "unsloth", 80.0, world=4)
    assert four > one  # DDP's gradient buckets


def test_nvml_process_memory_is_what_the_peak_is_compared_with():
    reading = box(card(0, procs={4242: 9 * GIB, 77: 3 * GIB}), card(1, procs={4243: 2 * GIB}))
    assert process_gpu_bytes(reading, {4242}) == 9 * GIB
    assert process_gpu_bytes(reading, {4242, 4243}) == 11 * GIB
    assert process_gpu_bytes(reading, {999}) is None  # PIDs hidden (a container): unknown, not 0
    view = RunView()
    view.apply([{"type": "memory", "peak_reserved_gb": 8.1, "peak_allocated_gb": 7.0, "peak_nvml_gb": 8.7}])
    assert view.measured_gb == 8.7 and view.peak_gb == 8.1


# --- 7. the smaller ones ------------------------------------------------------------------------
def test_bitsandbytes_per_matmul_warning_is_silenced():
    import logging

    worker.quiet_libraries()
    assert logging.getLogger("bitsandbytes.autograd._functions").getEffectiveLevel() >= logging.ERROR


def test_the_engine_numbers_cards_as_nvml_does():
    env = engine_env(res_(gpus="1"), {"PATH": "/bin"})
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["CUDA_VISIBLE_DEVICES"] == "1"


def test_every_rank_of_a_run_counts_as_this_run(tmp_path):
    # A launcher in a session of its own with a child, as torchrun and its ranks are.
    code = (
        "import subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); "
        "print(p.pid, flush=True); time.sleep(60)"
    )
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        rank = int(launcher.stdout.readline())
        own = rundir.run_pids({"pid": launcher.pid, "launcher_pid": launcher.pid}, {rank, os.getpid()})
        assert own == {launcher.pid, rank}
    finally:
        os.killpg(launcher.pid, 9)
        launcher.wait()


def test_no_c_compiler_means_the_transformers_backend(monkeypatch):
    assert c_compiler({}, lambda name: None) is None
    assert c_compiler({"CC": "/opt/cc"}, lambda name: None) == "/opt/cc"
    assert c_compiler({}, lambda name: "/usr/bin/clang" if name == "clang" else None) == "/usr/bin/clang"
    monkeypatch.setattr(backend_choice, "unsloth_available", lambda: True)
    monkeypatch.setattr(backend_choice, "c_compiler", lambda: None)
    backend, why = backend_choice.choose_backend(True, 1, "unsloth/llama-3.1-8b")
    assert backend == "transformers" and "C compiler" in why
    plan = plan_for(res_(), cuda=True, capabilities=[(9, 0)])
    assert any("C compiler" in s for s in plan.substitutions) and plan.checkpointing is True


def test_the_demo_on_cuda_trains_16_bit_on_transformers():
    demo = res_(base_model=BUILTIN_MODEL)
    plan = plan_for(demo, cuda=True, capabilities=[(9, 0)])
    assert (plan.backend, plan.precision, plan.bf16) == ("transformers", 16, True)
    assert any("demo" in s for s in plan.substitutions)
    assert plan_for(demo, cuda=False).precision == 32  # unchanged on the CPU


class _FakeNvml:
    """pynvml's calls as an H200's driver answers them (figures from the lent H200, driver 580)."""

    nvmlMemory_v2 = 0x02000028

    def __init__(self, v2: bool = True) -> None:
        self.v2 = v2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, h: int, version: int | None = None) -> Any:
        mib = 2**20
        if version:
            if not self.v2:
                raise RuntimeError("Function Not Found")  # drivers before 510
            return SimpleNamespace(
                total=143771 * mib, reserved=615 * mib, used=7000 * mib, free=(143771 - 615 - 7000) * mib
            )
        return SimpleNamespace(total=143771 * mib, used=7615 * mib, free=(143771 - 7615) * mib)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=97)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return []

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 41

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 512_000

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        return 1980

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return (9, 0)


def test_memory_used_is_nvidia_smis_figure_and_the_reservation_is_never_available():
    """On the H200 NVML's v1 "used" ran 0.6 GiB above nvidia-smi's memory.used: the driver's
    reservation. v2 separates it; neither figure may offer it to a run."""
    from mgtui.nvml import NvmlSource

    g = NvmlSource._sample(_FakeNvml(), 0)
    assert g.memory_used == 7000 * 2**20 and g.memory_reserved == 615 * 2**20
    assert g.utilization == 97 and g.power_w == 512 and g.capability == (9, 0)
    old = NvmlSource._sample(_FakeNvml(v2=False), 0)  # an old driver: v1, reservation inside "used"
    assert old.memory_used == 7615 * 2**20 and old.memory_reserved == 0
    assert g.available_gib() == pytest.approx(old.available_gib()) == pytest.approx((143771 - 7615) / 1024)
