"""`model-garden train --dry-run` with the guide's longest command: wall time per run.

Run: uv run python benchmarks/dry_run.py   (target: median under 0.3 s)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import time_command  # noqa: E402

LONGEST = (
    "--base-model unsloth/llama-3.1-8b --dataset ./data/train.jsonl --output-dir ./models/my-model "
    "--load-in-8bit --lora-r 32 --use-rslora --optim adamw_torch --batch-size 4 "
    "--gradient-accumulation-steps 4 --epochs 3"
).split()


def main() -> None:
    exe = shutil.which("model-garden") or str(Path(sys.executable).parent / "model-garden")
    result = time_command([exe, "train", *LONGEST, "--dry-run"])
    result["command"] = "model-garden train <guide's mid-range command> --dry-run"
    print(json.dumps(result, indent=2))
    print("PASS" if result["median_s"] < 0.3 else "FAIL", "(target: median < 0.3 s)")


if __name__ == "__main__":
    main()
