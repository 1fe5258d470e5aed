"""Small helpers shared by the benchmarks: wall-time a command several times."""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Sequence


def time_command(cmd: Sequence[str], runs: int = 20, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        subprocess.run(cmd, capture_output=True, check=True)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        samples.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "runs": runs}
