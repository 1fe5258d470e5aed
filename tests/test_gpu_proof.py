"""The GPU proof script, run end to end on the CPU: its whole flow works before a GPU sees it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_proof.py"
sys.path.insert(0, str(SCRIPT.parent))

from gpu_proof import LOSS_PROBE_CPU, METHOD_SMOKE, SMOKE, grid  # noqa: E402


def proof(out: Path, budget: int) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--budget-s", str(budget), "--out", str(out), "--steps", "3"],
        capture_output=True,
        text=True,
        timeout=budget + 600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in (out / "cpu.jsonl").read_text().splitlines()]


def test_the_proof_runs_its_whole_flow_on_the_tiny_model(tmp_path):
    rows = proof(tmp_path, 900)
    smoke = {r["label"]: r for r in rows if r["kind"] == "smoke"}
    assert set(smoke) == {label for label, _ in [*SMOKE, *METHOD_SMOKE]} | {"demo"}
    for r in smoke.values():
        assert r["exit"] == 0 and r["summary"]["state"] == "done", r
    assert any("4-bit → 32-bit" in s for s in smoke["default"]["summary"]["substitutions"])
    assert any(r["kind"] == "note" and r["message"].startswith("sharded step not run: it needs two GPUs") for r in rows)
    adapters = next(r for r in rows if r["kind"] == "adapters")["result"]
    assert set(adapters) == {label for label, _ in SMOKE}
    assert all(a["loads"] and a["lora_B"] > 0 for a in adapters.values()), adapters
    kept = tmp_path / "runs" / "default"  # each run's record comes back with the rows, not its weights
    assert (kept / "summary.json").exists() and (kept / "events.jsonl").exists()
    assert not list(kept.glob("*.safetensors"))
    probe = [r for r in rows if r["kind"] == "loss_probe"]  # Unsloth's loss, at each shape
    assert [(r["batch_size"], r["max_seq_length"]) for r in probe] == LOSS_PROBE_CPU
    assert all("error" not in r and r["steps"] == 3 for r in probe), probe
    chunks = next(r for r in rows if r["kind"] == "loss_chunks")
    assert chunks["exit"] == 0 and chunks["chunks"] == []  # no Unsloth on the CPU: no chunk line
    calibration = [r for r in rows if r["kind"] == "calibration"]
    assert len(calibration) == 3 * len(grid(cpu=True))  # every point, at 4, 8 and 16 bits
    for r in calibration:
        assert "error" not in r, r
        assert r["steps"] == 3 and r["steps_per_s"] > 0 and r["tokens_per_s"] > 0
        assert r["estimate_gb"] > 0 and set(r["breakdown"]) >= {"base_weights", "activations"}
    assert {r["lora_r"] for r in calibration} == {4, 8}  # the rank changed in one loaded model
    assert all(r["versions"]["torch"] and r["gpu"]["name"] == "cpu" for r in rows)
    assert rows[-1]["kind"] == "end"


def test_the_proof_stops_cleanly_before_its_deadline(tmp_path):
    rows = proof(tmp_path, 0)  # a deadline already past: every stage must see it and skip, not fail
    assert rows[-1]["kind"] == "end"
    assert any(r["kind"] == "note" and r["message"].startswith("deadline") for r in rows)
