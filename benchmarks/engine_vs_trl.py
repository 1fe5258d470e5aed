"""The engine's training speed against a plain TRL SFTTrainer script, and the cost of the
event callback. CPU, the tiny local Llama, same settings; runs alternate to share noise.

Run: uv run python benchmarks/engine_vs_trl.py [--rounds 3] [--steps 150]
Target: engine steps/s ÷ plain TRL steps/s ≥ 0.98, and the same with/without the callback.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

SETTINGS = dict(
    max_seq_length=128,
    batch_size=8,
    gradient_accumulation_steps=1,
    learning_rate=1e-2,
    warmup_steps=0,
    logging_steps=1,
    save_steps=100000,
    lora_r=8,
    lora_alpha=16,
    lr_scheduler_type="constant",
)

PLAIN_TRL = r"""
import json, sys
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
model_dir, data, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
args = SFTConfig(output_dir=out, per_device_train_batch_size=8, gradient_accumulation_steps=1, max_steps=steps,
                 learning_rate=1e-2, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_steps=100000,
                 max_length=128, optim="adamw_torch", gradient_checkpointing=True,
                 gradient_checkpointing_kwargs={"use_reentrant": False}, use_cpu=True, report_to=[], disable_tqdm=True,
                 seed=3407, weight_decay=0.01, include_num_input_tokens_seen="non_padding")
lora = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
trainer = SFTTrainer(model=model, args=args, train_dataset=load_dataset("json", data_files=data, split="train"),
                     processing_class=tok, peft_config=lora)
print(json.dumps(trainer.train().metrics))
"""


def run_engine(model: Path, data: Path, steps: int, work: Path) -> float:
    out = work / f"engine-{time.time_ns()}"
    cmd = [
        sys.executable,
        "-m",
        "mgtui",
        "train",
        "--base-model",
        str(model),
        "--dataset",
        str(data),
        "--output-dir",
        str(out),
        "--max-steps",
        str(steps),
    ]
    for k, v in SETTINGS.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads((out / "summary.json").read_text())["train_steps_per_s"]


def run_plain(model: Path, data: Path, steps: int, work: Path) -> float:
    out = work / f"plain-{time.time_ns()}"
    p = subprocess.run(
        [sys.executable, "-c", PLAIN_TRL, str(model), str(data), str(out), str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(p.stdout.strip().splitlines()[-1])["train_steps_per_second"]


def callback_cost(model: Path, data: Path, steps: int, work: Path, rounds: int) -> dict[str, float]:
    """The same trainer, built by the engine's own mapping, with and without the event callback."""
    import threading

    from trl import SFTConfig, SFTTrainer

    from mgtui.runs.events import EventWriter
    from mgtui.settings import resolve
    from mgtui.train.backends import load_model, plan_for, sft_kwargs
    from mgtui.train.callback import EventCallback
    from mgtui.train.datasets import build_datasets

    res = resolve([{**SETTINGS, "base_model": str(model), "dataset": str(data), "max_steps": steps}])
    plan = plan_for(res, cuda=False)
    with_cb, without = [], []
    for r in range(rounds):
        for use in (True, False):
            model_, tok = load_model(res, plan, 0)
            ds, _, report, _ = build_datasets(res, tok, lambda p: None)
            out = work / f"cb-{r}-{use}"
            callbacks = []
            writer = None
            if use:
                out.mkdir(parents=True)
                writer = EventWriter(out / "events.jsonl")
                callbacks = [EventCallback(writer.emit, threading.Event(), report["tokens"]["mean"], 8, cuda=False)]
            kw = {k: v for k, v in sft_kwargs(res, plan, str(out), False).items() if v is not None}
            trainer = SFTTrainer(
                model=model_, args=SFTConfig(**kw), train_dataset=ds, processing_class=tok, callbacks=callbacks
            )
            (with_cb if use else without).append(trainer.train().metrics["train_steps_per_second"])
            if writer:
                writer.close()
    return {
        "with_callback": statistics.median(with_cb),
        "without_callback": statistics.median(without),
        "ratio": statistics.median(with_cb) / statistics.median(without),
        "samples_with": with_cb,
        "samples_without": without,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=150)
    a = ap.parse_args()
    from engine_helpers import write_dataset

    from mgtui.train.tiny import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_llama(work / "tiny")
        data = write_dataset(work / "data.jsonl", "messages", n=240)
        engine, plain = [], []
        for _ in range(a.rounds):  # alternate, so drift in the machine's speed hits both alike
            engine.append(run_engine(model, data, a.steps, work))
            plain.append(run_plain(model, data, a.steps, work))
        cb = callback_cost(model, data, a.steps, work, a.rounds)
    result = {
        "machine": "CPU, tiny Llama (2 layers, hidden 64), batch 8, max_seq_length 128, LoRA r8",
        "steps": a.steps,
        "rounds": a.rounds,
        "engine_steps_per_s": statistics.median(engine),
        "plain_trl_steps_per_s": statistics.median(plain),
        "engine_over_plain": statistics.median(engine) / statistics.median(plain),
        "engine_samples": engine,
        "plain_samples": plain,
        "callback": cb,
    }
    print(json.dumps(result, indent=2))
    ok = result["engine_over_plain"] >= 0.98 and cb["ratio"] >= 0.98
    print("PASS" if ok else "FAIL", "(target: both ratios >= 0.98)")


if __name__ == "__main__":
    main()
