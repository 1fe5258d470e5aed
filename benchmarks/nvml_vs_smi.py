"""NVML (the run screen's gauges) against nvidia-smi, read at the same moments while a run trains.

    python3 benchmarks/nvml_vs_smi.py --out OUT/nvml_vs_smi.jsonl --seconds 300 --interval 2

One JSON line per moment: mgtui's NvmlSource reading of GPU 0 and nvidia-smi's
`--query-gpu=utilization.gpu,memory.used,temperature.gpu,power.draw,clocks.sm` taken right after it.
Stops after --seconds, or when the file named by --stop-file appears. `--summary` reads a file back
and prints the largest differences.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUERY = "utilization.gpu,memory.used,temperature.gpu,power.draw,clocks.sm"


def smi() -> dict[str, float | None] | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None

    def num(s: str) -> float | None:
        try:
            return float(s)
        except ValueError:
            return None

    util, mem, temp, power, clock = (num(p.strip()) for p in out.splitlines()[0].split(","))
    return {"utilization": util, "memory_used_mib": mem, "temperature": temp, "power_w": power, "sm_clock_mhz": clock}


def nvml(source: Any) -> dict[str, float | None] | None:
    reading = source.read()
    if not reading.gpus:
        return None
    g = reading.gpus[0]
    return {
        "utilization": g.utilization,
        "memory_used_mib": round(g.memory_used / 2**20, 1),
        "temperature": g.temperature,
        "power_w": g.power_w,
        "sm_clock_mhz": g.sm_clock_mhz,
    }


def summary(path: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    both = [r for r in rows if r["nvml"] and r["smi"]]
    worst: dict[str, float] = {}
    for r in both:
        for k, v in r["nvml"].items():
            s = r["smi"].get(k)
            if v is not None and s is not None:
                worst[k] = max(worst.get(k, 0.0), abs(v - s))
    return {
        "moments": len(rows),
        "with_both": len(both),
        "largest_difference": worst,
        "busy_moments": sum(1 for r in both if (r["smi"]["utilization"] or 0) > 0),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--stop-file", type=Path, default=None)
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    if args.summary:
        print(json.dumps(summary(args.out)))
        return 0
    from mgtui.nvml import NvmlSource

    source = NvmlSource()
    end = time.time() + args.seconds
    args.out.parent.mkdir(parents=True, exist_ok=True)
    while time.time() < end and not (args.stop_file and args.stop_file.exists()):
        t = time.time()
        a = nvml(source)
        b = smi()  # utilisation is averaged over the driver's last sample period: both read the same one
        with args.out.open("a", encoding="utf-8") as f:
            f.write(
                json.dumps({"t": round(t, 2), "smi_after_s": round(time.time() - t, 3), "nvml": a, "smi": b}) + "\n"
            )
        time.sleep(max(args.interval - (time.time() - t), 0.1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
