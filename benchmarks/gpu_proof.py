"""GPU proof: train the guide's configurations through mgtui's own engine on an NVIDIA GPU, then
measure peak memory and speed over a calibration grid, one JSON line per measurement.

On a GPU box with the project installed:

    uv run python benchmarks/gpu_proof.py --budget-s 3000

On the lent offline GPU machine (bare image, no uv; ../shared/gpu/README.md). Here, once:
`benchmarks/gpu_kit.sh`; then, with `carry: [".gpu-kit"]`, from the project root there:

    export PYTHONPATH=$PWD/.gpu-kit/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1; \
    python3 benchmarks/gpu_proof.py --budget-s 480 --out "$OUT"

What it does, in order, until `--budget-s` is spent (it stops cleanly before the deadline):
1. builds the architectures (Llama-3.2-1B, Llama-3.1-8B, Qwen2.5-7B, Mistral-7B) with random
   weights from their real configs, and a tokenizer built locally; each is saved once. Memory
   and speed don't depend on the weights' values;
2. smoke runs through `python -m mgtui train` (the real engine, its events and summary): the
   guide's default (4-bit, "unsloth" checkpointing, adamw_8bit); 8-bit r32 RSLoRA adamw_torch;
   quality mode r64; the Transformers fallback in 4-bit; and the demo preset;
3. a loss probe: the guide's default (4-bit) at 1 x 2048, 2 x 2048 and 2 x 4096 tokens with
   UNSLOTH_ENABLE_LOGGING=1, recording the chunk count Unsloth's fused loss chose (its
   "Fused CE Loss [...][n_chunks=N]" line) and torch's memory snapshot at the step that set the
   peak (OUT/loss-probe/*.pickle, for pytorch.org/memory_viz): what the estimator's loss term
   can't read from the source (the bytes a chunk really holds, and which moment is the peak);
4. a calibration grid (architecture x precision x checkpointing x optimizer x batch x
   sequence length x rank): one process per architecture and precision loads the model once
   and measures every configuration in turn, full-length sequences, the peak reset between
   them and read after the optimizer states exist.

Rows go to OUT/<gpu>.jsonl as they are measured (a run cut off keeps what it measured): the
settings, backend, steps/s, tokens/s, torch's peak reserved and allocated, the process's
memory as NVML reports it, the estimator's figure and breakdown, the GPU, driver and versions.

Without CUDA the same flow runs on the tiny demo model (tests/test_gpu_proof.py runs it so).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARCHS = {
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "mistral-7b": "mistralai/Mistral-7B-v0.3",
}
SMOKE = [  # (label, flags) on the smoke architecture; the fallback second, so Unsloth and it meet in one call
    ("default", []),
    ("transformers-4bit", ["--env", "MGTUI_BACKEND=transformers"]),
    ("quality-r64", ["--quality-mode", "--lora-r", "64"]),
    ("8bit-r32-rslora", ["--load-in-8bit", "--lora-r", "32", "--use-rslora", "--optim", "adamw_torch"]),
]


# A sharded run (FSDP2) of the smoke architecture in 4-bit over two cards: on a machine with two
# GPUs or more only (today's lent machines have one: the proof says so in a row).
SHARDED_SMOKE = ("sharded-4bit-2gpu", ["--shard", "full", "--nproc-per-node", "2", "--gpus", "0,1"])

# The methods beyond SFT on the smoke architecture in 4-bit (issue 35, part 4): DPO on pairs, GRPO on
# prompts with the built-in length penalty (no reward file needed). Their data: write_method_data.
METHOD_SMOKE = [
    ("dpo-4bit", ["--method", "dpo", "--max-prompt-length", "128"]),
    ("grpo-4bit", ["--method", "grpo", "--reward-funcs", "length_penalty", "--num-generations", "2",
                   "--max-completion-length", "32", "--temperature", "1.0"]),
]  # fmt: skip

# The loss probe's (batch, max_seq_length): one chunk of 2048 tokens, then 4 chunks of 1024 and of 2048
# on any card over ~12 GB (unsloth_zoo fused_losses/cross_entropy_loss.py:266-268). CPU: the same flow, small.
LOSS_PROBE = [(1, 2048), (2, 2048), (2, 4096)]
LOSS_PROBE_CPU = [(1, 32), (2, 32), (2, 64)]
CHUNK_LINE = re.compile(r"Fused CE Loss \[bsz=(\d+)\]\[qlen=(\d+)\]\[vocab_size=(\d+)\]\[n_chunks=(\d+)\]")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def gpu_info() -> dict[str, Any]:
    from mgtui.nvml import NvmlSource

    reading = NvmlSource().read()
    if not cuda_available() or not reading.gpus:
        return {"name": "cpu", "total_gb": None, "driver": reading.driver_version, "cuda": None}
    import torch

    g = reading.gpus[0]  # from NVML: this process starts no CUDA context of its own
    return {
        "name": g.name,
        "count": len(reading.gpus),
        "total_gb": round(g.memory_total / 2**30, 3),
        "capability": list(g.capability) if g.capability else None,
        "driver": reading.driver_version,
        "driver_cuda": reading.driver_cuda,
        "torch_cuda": torch.version.cuda,
    }


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Rows:
    """Appends one JSON line per measurement, flushed at once."""

    def __init__(self, path: Path, common: dict[str, Any]) -> None:
        self.path, self.common = path, common
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({**row, **self.common, "t": round(time.time(), 1)}) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k not in ("breakdown", "summary")}), flush=True)


# --- models and data -----------------------------------------------------------------------
def build_model(key: str, dest: Path, tokenizer_dir: Path) -> Path:
    """A real architecture with random weights, saved once, with the locally built tokenizer."""
    if (dest / "config.json").exists():
        return dest
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from mgtui.demo_model import TINY_LLAMA_CONFIG
    from mgtui.estimate.archs import CATALOG

    cfg = dict(TINY_LLAMA_CONFIG) if key == "tiny" else dict(next(c for k, _, c in CATALOG if k == key))
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(
        model_type,
        **cfg,
        bos_token_id=tok.bos_token_id or tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cuda = cuda_available()
    with torch.device("cuda" if cuda else "cpu"):  # random init on the GPU: seconds, not minutes
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    tmp = dest.with_name(dest.name + ".partial")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    os.replace(tmp, dest)
    return dest


def check_adapters(arch: str, runs: list[Path]) -> dict[str, Any]:
    """Each smoke run's adapter loads onto its architecture: PEFT takes every tensor (none missing,
    none unexpected), and the trained lora_B matrices (zero at init) are not zero after loading."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    cuda = cuda_available()
    config = AutoConfig.from_pretrained(arch)
    with torch.device("cuda" if cuda else "cpu"):
        base = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    result: dict[str, Any] = {}
    for run in runs:
        if not (run / "adapter_config.json").exists():
            result[run.name] = {"loads": False, "why": "no adapter_config.json"}
            continue
        try:
            model = PeftModel.from_pretrained(base, str(run))
            b = [p for n, p in model.named_parameters() if "lora_B" in n]
            trained = sum(1 for p in b if bool(p.detach().abs().sum() > 0))
            result[run.name] = {"loads": bool(b) and trained == len(b), "lora_B": len(b), "lora_B_trained": trained}
            base = model.unload()
        except Exception as e:  # reported, not raised: one bad adapter must not hide the others
            result[run.name] = {"loads": False, "why": f"{type(e).__name__}: {str(e)[:300]}"}
    return result


def write_text_data(path: Path, rows: int, tokens: int, seed: int = 0) -> Path:
    """Rows longer than `tokens` of the demo tokenizer, so every sequence is full length."""
    rnd = random.Random(seed)
    words = [
        "model",
        "garden",
        "train",
        "adapter",
        "memory",
        "the",
        "of",
        "loss",
        "token",
        "answer",
        "question",
        "gradient",
        "layer",
        "batch",
        "sequence",
        "learning",
        "rate",
        "quantized",
        "weights",
        "and",
    ]
    with path.open("w", encoding="utf-8") as f:
        for _ in range(rows):
            f.write(json.dumps({"text": " ".join(rnd.choice(words) for _ in range(tokens))}) + "\n")
    return path


def write_method_data(work: Path, method: str, rows: int = 64) -> Path:
    """Pairs for DPO (the chosen reply repeats the prompt's word), prompts for GRPO."""
    words = ("apple", "river", "stone", "cloud", "green", "music", "light", "table")
    path = work / f"{method}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            w = words[i % len(words)]
            user = [{"role": "user", "content": f"Say {w}"}]
            if method == "dpo":
                row: dict[str, Any] = {"prompt": user, "chosen": [{"role": "assistant", "content": f"{w} {w}"}],
                                       "rejected": [{"role": "assistant", "content": "no thanks"}]}  # fmt: skip
            else:
                row = {"prompt": user, "topic": w}
            f.write(json.dumps(row) + "\n")
    return path


# --- smoke runs: the whole engine, as a user starts it --------------------------------------
def smoke(
    label: str,
    flags: list[str],
    model: Path | None,
    data: Path,
    work: Path,
    rows: Rows,
    steps: int,
    seq: int,
    timeout: float,
) -> None:
    env = dict(os.environ)
    while "--env" in flags:
        i = flags.index("--env")
        k, v = flags[i + 1].split("=", 1)
        env[k] = v
        flags = flags[:i] + flags[i + 2 :]
    out = work / "runs" / label
    base = (
        ["--preset", "demo"]
        if model is None
        else [
            "--base-model",
            str(model),
            "--dataset",
            str(data),
            "--max-seq-length",
            str(seq),
            "--batch-size",
            "2",
            "--gradient-accumulation-steps",
            "1",
        ]
    )
    cmd = [
        sys.executable,
        "-m",
        "mgtui",
        "train",
        *base,
        "--output-dir",
        str(out),
        "--max-steps",
        str(steps),
        "--save-steps",
        "1000",
        "--logging-steps",
        "1",
        "--force",
        *flags,
    ]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        code, tail = proc.returncode, (proc.stdout + proc.stderr)[-800:]
    except subprocess.TimeoutExpired:
        code, tail = None, "timed out"
        from mgtui.runs import rundir

        st = rundir.run_state(out)  # the engine runs in a session of its own: end it too
        if st.pid:
            try:
                os.killpg(os.getsid(st.pid), 9)
            except OSError:
                pass
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    failed = None
    if (out / "events.jsonl").exists():
        from mgtui.runs.events import read_events

        last = list(read_events(out / "events.jsonl"))[-1:]
        failed = last[0] if last and last[0]["type"] == "failed" else None
    keep = (
        "state",
        "final_loss",
        "steps",
        "train_steps_per_s",
        "steady_steps_per_s",
        "steady_tokens_per_s",
        "peak_reserved_gb",
        "peak_allocated_gb",
        "peak_nvml_gb",
        "estimate_gb",
        "backend",
        "device",
        "substitutions",
    )
    keep_dir = rows.path.parent / "runs" / label  # the run's own record, without its weights
    keep_dir.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*"):
        if f.name in ("summary.json", "events.jsonl", "train.log", "settings.toml", "adapter_config.json"):
            shutil.copy2(f, keep_dir / f.name)
    rows.add(
        {
            "kind": "smoke",
            "label": label,
            "exit": code,
            "seconds": round(time.time() - t0, 1),
            "summary": {k: summary.get(k) for k in keep} if summary else None,
            "failed": failed,
            "log_tail": tail if code != 0 else None,
        }
    )


# --- calibration: one process per architecture and precision --------------------------------
def grid(cpu: bool) -> list[dict[str, Any]]:
    """Configurations for one loaded model, ordered so that the first ones are the most telling;
    LoRA (rank, checkpointing) changes least often."""
    if cpu:
        shape = dict(lora_r=[4, 8], gc=["true", "false"], optim=["adamw_torch"], batch=[1, 2], seq=[64])
    else:
        shape = dict(lora_r=[16, 64], gc=["unsloth", "false"], optim=["adamw_8bit"], batch=[1, 4], seq=[512, 2048])
    return [
        dict(lora_r=r, use_gradient_checkpointing=g, optim=o, batch_size=b, max_seq_length=s)
        for r, g, o, b, s in product(shape["lora_r"], shape["gc"], shape["optim"], shape["batch"], shape["seq"])
    ]


def calibrate_child(
    model: Path,
    arch: str,
    precision: int,
    data: Path,
    configs: list[dict[str, Any]],
    rows: Rows,
    deadline: float,
    steps: int,
    kind: str = "calibration",
    snapshots: Path | None = None,
) -> None:
    """Load the model once at this precision; measure each configuration (with `snapshots`, torch's
    memory snapshot at each configuration's peak step goes there)."""
    from mgtui.settings import resolve
    from mgtui.train import boot, worker

    def settings(cfg: dict[str, Any]):
        flags = {"load_in_8bit": precision == 8, "load_in_16bit": precision == 16}
        return resolve(
            [
                {
                    "base_model": str(model),
                    "dataset": str(data),
                    "output_dir": "unused",
                    "max_steps": steps,
                    "logging_steps": 1,
                    "save_steps": 10_000,
                    "lora_alpha": 2 * cfg["lora_r"],
                    "gradient_accumulation_steps": 1,
                    **flags,
                    **cfg,
                }
            ]
        )

    # Unsloth fixes max_seq_length at load and caps every trainer at it: load at the longest.
    first = settings({**configs[0], "max_seq_length": max(c["max_seq_length"] for c in configs)})
    booted = boot.boot(first, 1)  # device checks, one GPU, unsloth first: as the engine does
    import torch

    from mgtui.estimate import lookup
    from mgtui.estimate.advisor import estimate_settings
    from mgtui.nvml import NvmlSource, process_gpu_bytes
    from mgtui.train.backends import load_model, plan_for

    plan = plan_for(first, booted.cuda, 1, booted.capabilities, booted.unsloth_broken)
    arch_found = lookup(str(model), online=False).arch
    total = torch.cuda.mem_get_info()[1] / 2**30 if booted.cuda else None
    t_load = time.time()
    model_obj, tok = load_model(first, plan, 0)
    load_s = round(time.time() - t_load, 1)
    lora_key = (configs[0]["lora_r"], configs[0]["use_gradient_checkpointing"])
    nvml = NvmlSource()
    for cfg in configs:
        if time.time() > deadline:
            rows.add({"kind": "note", "arch": arch, "precision": precision, "message": "deadline: grid cut short"})
            return
        res = settings(cfg)
        plan = plan_for(res, booted.cuda, 1, booted.capabilities, booted.unsloth_broken)
        row: dict[str, Any] = {
            "kind": kind,
            "arch": arch,
            "precision": precision,
            "backend": plan.backend,
            "device": plan.device,
            "effective_precision": plan.precision,
            "checkpointing_effective": str(plan.checkpointing),
            "load_s": load_s,
            **cfg,
        }
        est = estimate_settings(res, arch_found, total, plan.backend) if arch_found else None
        if est:
            row.update(estimate_gb=round(est.peak_gib, 3), breakdown={k: round(v, 3) for k, v in est.breakdown.items()})
        try:
            if (cfg["lora_r"], cfg["use_gradient_checkpointing"]) != lora_key:
                row["stage"] = "reattach"
                model_obj = reattach(model_obj, res, plan)
                lora_key = (cfg["lora_r"], cfg["use_gradient_checkpointing"])
            row["stage"] = "train"
            shot = snapshots / f"b{cfg['batch_size']}x{cfg['max_seq_length']}.pickle" if snapshots else None
            row.update(measure(model_obj, tok, res, plan, nvml, process_gpu_bytes, shot))
        except Exception as e:  # one configuration failing (OOM included) must not end the grid
            row.update(
                error=f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}", oom=worker.is_oom(e)
            )
            broken = "reattach" in row.get("stage", "") or (
                not row["oom"] and ("CUDA error" in str(e) or type(e).__name__ == "AcceleratorError")
            )
            if broken:  # the model or the CUDA context can't be trusted for the next points
                rows.add(row)
                return
        finally:
            for p in model_obj.parameters():  # an OOM mid-step leaves gradients behind
                p.grad = None
            gc.collect()
            if booted.cuda:
                torch.cuda.empty_cache()
        rows.add(row)


def reattach(model: Any, res: Any, plan: Any) -> Any:
    """New LoRA adapters (rank, checkpointing) on the loaded base model."""
    base = model.unload()  # PEFT: the base model without its LoRA layers
    if plan.backend == "unsloth":
        from unsloth import FastLanguageModel

        from mgtui.train.backends import lora_kwargs

        return FastLanguageModel.get_peft_model(
            base, **lora_kwargs(res), use_gradient_checkpointing=plan.checkpointing, random_state=res["seed"]
        )
    from peft import LoraConfig, get_peft_model

    from mgtui.train.backends import lora_kwargs

    if not plan.checkpointing and getattr(base, "is_gradient_checkpointing", False):
        base.gradient_checkpointing_disable()
    return get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **lora_kwargs(res)))


def measure(
    model: Any, tok: Any, res: Any, plan: Any, nvml: Any, process_gpu_bytes: Any, snapshot: Path | None = None
) -> dict[str, Any]:
    """Train res["max_steps"] steps on full-length rows; speed over the steps after the first
    (the optimizer states exist from then on), peaks over the whole run. With `snapshot` (CUDA),
    torch's memory history is recorded and dumped there after each step that raises the peak."""
    import tempfile

    import torch
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from mgtui.train.backends import sft_kwargs
    from mgtui.train.datasets import build_datasets

    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    train_ds, _, report, _ = build_datasets(res, tok, lambda p: None)
    cuda = plan.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    nvml_peak = [0]
    shot = {"peak": 0, "step": None}
    if cuda and snapshot:
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        torch.cuda.memory._record_memory_history(max_entries=50_000, stacks="python")

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
                nvml_peak[0] = max(nvml_peak[0], process_gpu_bytes(nvml.read(), {os.getpid()}) or 0)
                if snapshot and torch.cuda.max_memory_allocated() > shot["peak"]:
                    shot.update(peak=torch.cuda.max_memory_allocated(), step=state.global_step)
                    torch.cuda.memory._dump_snapshot(str(snapshot))
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        kw = {k: v for k, v in sft_kwargs(res, plan, tmp, False).items() if v is not None}
        kw.update(save_strategy="no", report_to=[], logging_steps=10_000)
        trainer = SFTTrainer(
            model=model, args=SFTConfig(**kw), train_dataset=train_ds, processing_class=tok, callbacks=[Clock()]
        )
        try:
            trainer.train()
        finally:
            if cuda and snapshot:
                torch.cuda.memory._record_memory_history(enabled=None)
        del trainer
    steps = len(times) - 1
    per_s = steps / (times[-1] - times[0]) if steps > 0 else None
    mean = min(report["tokens"]["mean"], res["max_seq_length"])  # rows are cut to max_seq_length
    tokens = res["batch_size"] * mean
    return {
        "steps": len(times),
        "steps_per_s": round(per_s, 3) if per_s else None,
        "tokens_per_s": round(per_s * tokens, 1) if per_s else None,
        "mean_tokens": mean,
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 3) if cuda else None,
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
        "peak_nvml_gb": round(nvml_peak[0] / 2**30, 3) if cuda and nvml_peak[0] else None,
        **({"snapshot": snapshot.name, "snapshot_step": shot["step"]} if shot["step"] is not None and snapshot else {}),
    }


# --- the loss probe: Unsloth's fused loss, chunk count and memory snapshot ---------------------
def loss_probe(model: Path, arch: str, data: Path, rows: Rows, out: Path, cpu: bool, deadline: float) -> None:
    """The guide's default (4-bit, unsloth checkpointing, adamw_8bit, r16) at each LOSS_PROBE shape, in
    one process with UNSLOTH_ENABLE_LOGGING=1: a "loss_probe" row per shape (peaks, the snapshot's
    file), then one "loss_chunks" row with every chunk count Unsloth logged."""
    shapes = LOSS_PROBE_CPU if cpu else LOSS_PROBE
    configs = [
        dict(lora_r=16, use_gradient_checkpointing="unsloth", optim="adamw_8bit", batch_size=b, max_seq_length=s)
        for b, s in shapes
    ]
    job = {
        "model": str(model),
        "arch": arch,
        "precision": 4,
        "data": str(data),
        "configs": configs,
        "rows": str(rows.path),
        "common": rows.common,
        "deadline": deadline - 15,
        "kind": "loss_probe",
        "snapshots": str(out / "loss-probe"),
    }
    env = {**os.environ, "UNSLOTH_ENABLE_LOGGING": "1"}
    t = time.time()
    try:
        child = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(job), "--steps", "3"],
            timeout=max(deadline - time.time(), 1),
            capture_output=True,
            text=True,
            env=env,
        )
        log, code = child.stdout + child.stderr, child.returncode
    except subprocess.TimeoutExpired as e:
        raw = (e.stdout or b"") + (e.stderr or b"")
        log, code = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw), None
    seen = sorted({tuple(int(x) for x in m) for m in CHUNK_LINE.findall(log)})
    rows.add(
        {
            "kind": "loss_chunks",
            "arch": arch,
            "exit": code,
            "seconds": round(time.time() - t, 1),
            "chunks": [dict(bsz=b, qlen=q, vocab_size=v, n_chunks=n) for b, q, v, n in seen],
            "log_tail": log[-1500:] if code != 0 else None,
        }
    )


# --- the whole proof -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-s", type=float, default=900)
    ap.add_argument("--out", type=Path, default=ROOT / "calibration")
    ap.add_argument("--work", type=Path, default=None, help="models, data and runs (default: OUT/work)")
    ap.add_argument("--archs", default=",".join(ARCHS), help="comma list; CPU mode uses the tiny model")
    ap.add_argument("--steps", type=int, default=6, help="steps per calibration point")
    ap.add_argument("--smoke-arch", default=None, help="architecture of the smoke runs (default: the first of --archs)")
    ap.add_argument("--smoke-steps", type=int, default=24)
    ap.add_argument("--smoke-seq", type=int, default=2048)
    ap.add_argument("--check", nargs="+", default=None, help=argparse.SUPPRESS)  # ARCH_DIR RUN_DIR...
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # JSON: one calibration process
    ap.add_argument("--build", nargs=3, default=None, help=argparse.SUPPRESS)  # KEY DEST TOKENIZER_DIR
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.build:
        build_model(args.build[0], Path(args.build[1]), Path(args.build[2]))
        return 0
    if args.check:
        print("ADAPTERS " + json.dumps(check_adapters(args.check[0], [Path(r) for r in args.check[1:]])))
        return 0
    if args.child:
        job = json.loads(args.child)
        calibrate_child(
            Path(job["model"]),
            job["arch"],
            job["precision"],
            Path(job["data"]),
            job["configs"],
            Rows(Path(job["rows"]), job["common"]),
            job["deadline"],
            args.steps,
            job.get("kind", "calibration"),
            Path(job["snapshots"]) if job.get("snapshots") else None,
        )
        return 0

    deadline = time.time() + args.budget_s - 20  # leave room to write and exit
    work = args.work or args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    from mgtui.train.pipeline import versions
    from mgtui.train.tiny import build_tiny_llama

    info = gpu_info()
    cpu = info["name"] == "cpu"
    rows = Rows(args.out / f"{slug(info['name'])}.jsonl", {"gpu": info, "versions": versions()})
    tokenizer_dir = build_tiny_llama(work / "tiny-llama")
    archs = ["tiny"] if cpu else [a.strip() for a in args.archs.split(",") if a.strip()]
    seq_smoke, steps_smoke = (64, 3) if cpu else (args.smoke_seq, args.smoke_steps)
    smoke_arch = "tiny" if cpu else (args.smoke_arch or archs[0])
    data = write_text_data(work / "full-length.jsonl", rows=64, tokens=(128 if cpu else 4096))

    def left() -> float:
        return deadline - time.time()

    def build(key: str) -> Path:
        """In a process of its own: the GPU it initialises on is released when it exits."""
        dest = work / "models" / key
        subprocess.run(
            [sys.executable, __file__, "--build", key, str(dest), str(tokenizer_dir)], check=True, timeout=900
        )  # the first model is needed whatever the budget
        return dest

    t0 = time.time()
    first = build(smoke_arch)
    rows.add({"kind": "built", "arch": smoke_arch, "seconds": round(time.time() - t0, 1)})
    cost = 0.0  # the slowest smoke run so far: what the next one may take
    for label, flags in [*SMOKE, ("demo", [])]:
        if left() < cost * 1.3 + 10:
            rows.add({"kind": "note", "message": f"deadline: smoke run {label} not started"})
            break
        t = time.time()
        smoke(
            label,
            list(flags),
            None if label == "demo" else first,
            data,
            work,
            rows,
            steps_smoke,
            seq_smoke,
            timeout=max(min(left() - 10, 240 if not cpu else 600), 1),
        )
        cost = max(cost, time.time() - t)
    if cpu or info.get("count", 1) < 2:
        rows.add(
            {
                "kind": "note",
                "message": f"sharded step not run: it needs two GPUs or more, this machine has {0 if cpu else info.get('count', 1)}",
            }
        )
    elif left() > cost * 1.5 + 10:
        label, flags = SHARDED_SMOKE
        smoke(
            label, list(flags), first, data, work, rows, steps_smoke, seq_smoke, timeout=max(min(left() - 10, 300), 1)
        )
    done = [work / "runs" / label for label, _ in SMOKE if (work / "runs" / label / "summary.json").exists()]
    if done and left() > 60:
        t = time.time()
        try:
            chk = subprocess.run(
                [sys.executable, __file__, "--check", str(first), *map(str, done)],
                capture_output=True,
                text=True,
                timeout=max(min(left() - 30, 300), 1),
            )
            found = [ln for ln in chk.stdout.splitlines() if ln.startswith("ADAPTERS ")]
            rows.add(
                {
                    "kind": "adapters",
                    "arch": smoke_arch,
                    "seconds": round(time.time() - t, 1),
                    "result": json.loads(found[-1][9:]) if found else None,
                    "log_tail": None if found else (chk.stdout + chk.stderr)[-1500:],
                }
            )
        except subprocess.TimeoutExpired:
            rows.add({"kind": "note", "message": "deadline: adapter check cut off"})
    if left() > (30 if cpu else 150):
        loss_probe(first, smoke_arch, data, rows, args.out, cpu, deadline=time.time() + min(left() - 30, 420))
    else:
        rows.add({"kind": "note", "message": "deadline: loss probe not started"})
    for label, flags in METHOD_SMOKE:  # DPO and GRPO on CUDA: the trainers, on Unsloth's model
        if left() < (30 if cpu else 240):
            rows.add({"kind": "note", "message": f"deadline: smoke run {label} not started"})
            continue
        method = flags[1]
        smoke(label, [*flags, "--dataset", str(write_method_data(work, method))], first, data, work, rows,
              min(steps_smoke, 8), 256 if not cpu else 64, timeout=max(min(left() - 10, 240 if not cpu else 600), 1))  # fmt: skip
    if smoke_arch not in archs and not cpu:
        shutil.rmtree(first, ignore_errors=True)

    jobs_left = 3 * len(archs)
    for arch in archs:
        if left() < 60 and not cpu:
            break
        t = time.time()
        try:
            model = build(arch)
        except (subprocess.SubprocessError, OSError) as e:
            rows.add({"kind": "note", "message": f"{arch} not built: {e}"})
            continue
        if arch != smoke_arch:
            rows.add({"kind": "built", "arch": arch, "seconds": round(time.time() - t, 1)})
        for precision in (4, 8, 16):
            if left() < 30:
                rows.add({"kind": "note", "message": f"deadline: {arch} {precision}-bit not measured"})
                break
            slice_end = time.time() + left() / max(jobs_left, 1)  # every precision gets its share
            jobs_left -= 1
            job = {
                "model": str(model),
                "arch": arch,
                "precision": precision,
                "data": str(data),
                "configs": grid(cpu),
                "rows": str(rows.path),
                "common": rows.common,
                "deadline": (deadline if cpu else slice_end) - 15,
            }
            try:
                child = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(job), "--steps", str(args.steps)],
                    timeout=max(left(), 1),
                    capture_output=True,
                    text=True,
                )
                if child.returncode != 0:
                    rows.add(
                        {
                            "kind": "child_failed",
                            "arch": arch,
                            "precision": precision,
                            "log_tail": (child.stdout + child.stderr)[-1500:],
                        }
                    )
            except subprocess.TimeoutExpired as e:
                out_b = (e.stdout or b"") + (e.stderr or b"")
                tail = out_b.decode(errors="replace") if isinstance(out_b, bytes) else str(out_b)
                rows.add(
                    {"kind": "note", "message": f"deadline: {arch} {precision}-bit cut off", "log_tail": tail[-1500:]}
                )
        if not cpu:  # 16 GB a model: keep the disk for the next
            shutil.rmtree(work / "models" / arch, ignore_errors=True)
    rows.add({"kind": "end", "seconds": round(time.time() - t0, 1)})
    print(f"rows: {rows.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
