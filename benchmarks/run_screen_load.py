"""The run screen under load: another process appends 1000 events/s for 30 s to a run's event log
while the app follows it; a key is pressed every 100 ms and its round trip timed.

Pass: every loss point arrives (none dropped) and every key is answered (its bound action runs)
within 100 ms of being sent. Pilot's own press() also waits for the screen to go idle; that wait
is not the key's latency and is not counted.
Run: uv run python benchmarks/run_screen_load.py [--seconds 30] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = r"""
import json, sys, time
path, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
n, t0 = 0, time.time()
with open(path, "a") as f:
    while (elapsed := time.time() - t0) < seconds:
        due = int(elapsed * rate)
        lines = []
        while n < due:
            n += 1
            lines.append(json.dumps({"v": 1, "seq": n, "t": time.time(), "type": "log", "step": n,
                                     "total_steps": int(rate * seconds), "epoch": n / 1000, "loss": 3.0 / (1 + n / 5000),
                                     "learning_rate": 2e-4, "grad_norm": 0.5, "tokens_per_s": 5000.0,
                                     "samples_per_s": 10.0, "eta_s": 10.0, "elapsed_s": elapsed}) + "\n")
        f.write("".join(lines)); f.flush()
        time.sleep(0.005)
print(n)
"""


async def run(seconds: float, rate: int) -> dict:
    from textual.binding import Binding

    from mgtui.nvml import FixedSource, GpuReading
    from mgtui.tui.app import MgApp

    tmp = Path(tempfile.mkdtemp())
    run_dir = tmp / "run"
    run_dir.mkdir()
    log = run_dir / "events.jsonl"
    log.write_text(json.dumps({"v": 1, "seq": 0, "t": time.time(), "type": "phase", "phase": "training"}) + "\n")
    (run_dir / "run.json").write_text(json.dumps({"pid": os.getpid(), "state": "running", "uid": os.getuid()}))

    class Probe(MgApp):
        BINDINGS = [*MgApp.BINDINGS, Binding("k", "probe", show=False)]
        hits = 0
        sent = 0.0
        answered: list[float] = []

        def action_probe(self) -> None:  # the key's answer: time from sending it to this action
            self.hits += 1
            self.answered.append(time.perf_counter() - self.sent)

    app = Probe({}, None, FixedSource(GpuReading(error="benchmark")), attach=run_dir, offer_runs=False)
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log), str(rate), str(seconds)], stdout=subprocess.PIPE, text=True
        )
        while writer.poll() is None:
            app.sent = time.perf_counter()
            await pilot.press("k")
            await asyncio.sleep(0.1)
        latencies = app.answered
        written = int(writer.stdout.read().strip())
        screen = app.screen
        deadline = time.time() + 10
        while len(screen.view.losses) < written and time.time() < deadline:
            await pilot.pause(0.1)
        steps = [s for s, _ in screen.view.losses]
    return {
        "events_written": written,
        "loss_points_shown": len(steps),
        "dropped": written - len(steps),
        "in_order": steps == list(range(1, written + 1)),
        "keys_pressed": len(latencies),
        "keys_answered": app.hits,
        "key_latency_ms": {
            "median": statistics.median(latencies) * 1e3,
            "p99": sorted(latencies)[int(0.99 * len(latencies))] * 1e3,
            "max": max(latencies) * 1e3,
        },
        "rate_per_s": rate,
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=int, default=1000)
    a = ap.parse_args()
    r = asyncio.run(run(a.seconds, a.rate))
    print(json.dumps(r, indent=2))
    ok = (
        r["dropped"] == 0
        and r["in_order"]
        and r["keys_answered"] == r["keys_pressed"]
        and r["key_latency_ms"]["max"] < 100
    )
    print("PASS" if ok else "FAIL", "(target: no loss point dropped, every key answered within 100 ms)")


if __name__ == "__main__":
    main()
