"""Every run measured on a GPU (calibration/*.jsonl, written by benchmarks/gpu_proof.py) against the
estimator as it is now: each within -5% ... +10% of its measured peak (NVML, the process as nvidia-smi
shows it): an estimate that falls short sends a run into an out-of-memory, one far above turns a card away."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from proof_table import records, started  # noqa: E402

from mgtui.estimate import lookup  # noqa: E402
from mgtui.estimate.advisor import estimate_settings  # noqa: E402
from mgtui.settings import resolve  # noqa: E402

MEASURED = [
    (path, r)
    for path in sorted((ROOT / "calibration").glob("*.jsonl"))
    if "nvml_vs_smi" not in path.name
    for r in records(path)
    if r["record"] and r["summary"]["peak_nvml_gb"]
]


def test_the_gpu_measurements_are_in_the_repository():
    assert len(MEASURED) >= 4
    assert {r["summary"]["backend"] for _, r in MEASURED} == {"unsloth", "transformers"}


@pytest.mark.parametrize("path, row", MEASURED, ids=[f"{p.stem}-{r['label']}-{r['t']:.0f}" for p, r in MEASURED])
def test_the_estimate_is_within_minus_5_plus_10_percent_of_a_measured_peak(path, row):
    start = started(row["record"] / "events.jsonl")
    res = resolve([{k: v for k, v in start["settings"].items() if k != "resume"}])
    arch = lookup("meta-llama/Llama-3.1-8B", online=False).arch  # the proof's smoke architecture
    est = estimate_settings(res, arch, row["gpu"]["total_gb"], row["summary"]["backend"])
    measured = row["summary"]["peak_nvml_gb"]
    assert 0.95 * measured <= est.peak_gib <= 1.10 * measured, (row["label"], round(est.peak_gib, 2), measured)
    assert json.dumps(est.breakdown)  # a whole breakdown, every term a number
