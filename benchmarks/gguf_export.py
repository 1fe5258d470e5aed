"""GGUF export on the tiny Llama with Qwen2's real tokenizer (tests/real_tokenizer.py): train it with
`model-garden train`, export each GGUF type with `model-garden export`, load each file in llama.cpp
(llama-cpp-python) and compare its greedy tokens with the merged model's in transformers.

Run: uv run python benchmarks/gguf_export.py [--steps 30] [--types f32,f16,q8_0,q4_k_m]
Prints one JSON line per step: seconds, file size, and whether llama.cpp's greedy tokens equal
transformers' (exact for f32/f16; quantized types are expected to drift).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--types", default="f32,f16,q8_0,q4_k_m")
    args = p.parse_args()
    from real_tokenizer import qwen2_tiny_llama
    from test_gguf_export import PROMPTS, greedy_llama_cpp, greedy_transformers

    t0 = time.perf_counter()
    model = qwen2_tiny_llama()
    print(json.dumps({"step": "test model (cached after the first build)", "s": round(time.perf_counter() - t0, 1)}))
    mg = [sys.executable, "-m", "mgtui"]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "qwen2-run"
        train = [*mg, "train", "--base-model", str(model), "--dataset", "builtin:demo-chat", "--output-dir", str(run)]
        train += ["--max-steps", str(args.steps), "--max-seq-length", "96", "--learning-rate", "1e-2"]
        print(json.dumps({"step": f"train {args.steps} steps", "s": round(timed(train), 1)}))
        merged = Path(tmp) / "merged"
        print(
            json.dumps(
                {"step": "export --merged", "s": round(timed([*mg, "export", str(run), "--to", str(merged)]), 1)}
            )
        )
        from llama_cpp import Llama

        expected = [greedy_transformers(merged, m, 24) for m in PROMPTS]
        for kind in args.types.split(","):
            out = Path(tmp) / kind
            s = timed([*mg, "export", str(run), "--gguf", kind, "--to", str(out)])
            gguf_file = out / f"qwen2-run-{kind}.gguf"
            llm = Llama(model_path=str(gguf_file), n_ctx=512, n_threads=1, verbose=False)
            equal = [greedy_llama_cpp(llm, prompt, 24) == tokens for prompt, tokens in expected]
            size = gguf_file.stat().st_size
            print(
                json.dumps(
                    {
                        "step": f"export --gguf {kind}",
                        "s": round(s, 1),
                        "mb": round(size / 1e6, 1),
                        "greedy_equal": equal,
                    }
                )
            )


if __name__ == "__main__":
    main()
