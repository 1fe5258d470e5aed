"""The GPU proof's measured runs against the estimator as it is now, as a Markdown table.

    uv run python benchmarks/proof_table.py [calibration/nvidia-h200.jsonl ...]

For each stored smoke run (the row, and its record under calibration/runs/) it rebuilds the run's
settings from its settings.toml, asks the estimator with the backend the run used and the card's
memory, and prints the measured peak (NVML, the process as nvidia-smi shows it), the estimate, the
error, and the sustained speed from the run's own events (after the first step's warm-up).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mgtui.estimate.advisor import estimate_settings  # noqa: E402
from mgtui.settings import resolve  # noqa: E402


def records(rows_path: Path) -> list[dict[str, Any]]:
    """Smoke rows with their run's folder: calibration/runs/<anything>/<label> whose summary matches."""
    runs = {
        json.loads((d / "events.jsonl").read_text().splitlines()[-1])["t"]: d
        for d in rows_path.parent.glob("runs/*/*")
        if (d / "events.jsonl").exists()
    }
    out = []
    for line in rows_path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") != "smoke" or not row.get("summary"):
            continue
        # the run's last event comes just before the row is written
        near = [t for t in runs if 0 <= row["t"] - t < 30]
        out.append({**row, "record": runs[max(near)] if near else None})
    return out


def started(events_path: Path) -> dict[str, Any] | None:
    for line in events_path.read_text().splitlines():
        if '"type": "start"' in line:
            return json.loads(line)
    return None


def steady(events_path: Path) -> tuple[float, float] | None:
    logs = [json.loads(x) for x in events_path.read_text().splitlines() if '"type": "log"' in x]
    if len(logs) < 3:
        return None
    first, last = logs[0], logs[-1]
    dt = last["t"] - first["t"]
    tokens = sum(e["tokens_per_s"] * (b["t"] - a["t"]) for a, b, e in zip(logs, logs[1:], logs[1:]))
    return (last["step"] - first["step"]) / dt, tokens / dt


def table(paths: list[Path]) -> str:
    from mgtui.estimate import lookup

    lines = [
        "| Run | Backend | Precision | Steps/s | Tokens/s | Peak (NVML) | Estimate | Error |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in paths:
        for r in records(p):
            s = r["summary"]
            start = started(r["record"] / "events.jsonl") if r["record"] else None
            est, precision = None, ""
            if start:  # the settings the engine ran with, from its own start event
                res = resolve([{k: v for k, v in start["settings"].items() if k != "resume"}])
                arch = lookup("meta-llama/Llama-3.1-8B", online=False).arch
                est = estimate_settings(res, arch, r["gpu"]["total_gb"], s["backend"]).peak_gib
                precision = f"{start['precision']}-bit"
            sp = steady(r["record"] / "events.jsonl") if r["record"] else None
            measured = s["peak_nvml_gb"]
            err = f"{(est - measured) / measured:+.0%}" if est and measured else "—"
            lines.append(
                f"| {r['label']} | {s['backend']} | {precision} | "
                f"{sp[0]:.2f} | {sp[1]:,.0f} | {measured:.2f} GB | "
                f"{est:.2f} GB | {err} |"
                if sp and est
                else f"| {r['label']} | {s['backend']} | | | | {measured} | {s['estimate_gb']} | |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]] or sorted((ROOT / "calibration").glob("*.jsonl"))
    print(table([a for a in args if "nvml_vs_smi" not in a.name]))
