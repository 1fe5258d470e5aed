"""Estimator speed: estimates per second, and the time to fill the advisor (plan: estimate,
advice, fit search) for a 70B model that does not fit.

Run: uv run python benchmarks/estimator.py   (target: under 1 ms per estimate)
"""

from __future__ import annotations

import json
import time

from mgtui.estimate import lookup, plan
from mgtui.estimate.advisor import inputs_for
from mgtui.estimate.memory import estimate
from mgtui.settings import resolve


def per_call(fn, seconds: float = 1.0) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def main() -> None:
    res = resolve([{"base_model": "unsloth/llama-3.1-8b-bnb-4bit"}])
    arch = lookup(res["base_model"]).arch
    inp = inputs_for(res)
    one = per_call(lambda: estimate(arch, inp, 24.0))
    big = resolve([{"base_model": "meta-llama/Llama-3.1-70B", "quality_mode": True, "lora_r": 64, "batch_size": 8}])
    found = lookup(big["base_model"])
    full = per_call(lambda: plan(big, found, 80.0))
    p = plan(big, found, 80.0)
    result = {
        "estimate_ms": one * 1e3,
        "estimates_per_second": round(1 / one),
        "plan_70b_ms": full * 1e3,
        "plan_70b_advisor_steps": len(p.steps),
        "plan_70b_peak_gb": round(p.estimate.peak_gib, 1),
    }
    print(json.dumps(result, indent=2))
    print("PASS" if one < 1e-3 else "FAIL", "(target: < 1 ms per estimate)")


if __name__ == "__main__":
    main()
