"""Time from starting `mgtui` to an interactive form, in a real pseudo-terminal at 80x24.

"Interactive" is measured, not assumed: after launch we type into the focused field and stop the
clock when that keystroke shows on screen, i.e. the form is drawn and answering keys.

Python's bytecode cache decides much of a start-up time, so each condition is set, not inherited:
- "later launches": every launch after the first. Python caches bytecode on the first import; here
  the cache lives in a private PYTHONPYCACHEPREFIX that one untimed launch fills.
- "first launch": the first launch after `uv sync`, which installs without bytecode, so Python compiles
  Textual and mgtui from source. Measured only when the environment holds no bytecode for Textual
  (else it could not be the first launch), with PYTHONDONTWRITEBYTECODE so it stays that way.

Run: uv run python benchmarks/app_startup.py [--runs 10]
Target: later launches under 0.5 s (median).
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

# Typed into the first field; its echo marks the form as live. One character that appears nowhere
# else on screen: Textual repaints only changed cells, so a longer mark can arrive split across frames.
MARK = "§"


def one_run(env: dict[str, str]) -> float:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with tempfile.TemporaryDirectory() as home:
        env = dict(env, TERM="xterm-256color", XDG_CONFIG_HOME=home, XDG_STATE_HOME=home)
        exe = os.path.join(os.path.dirname(sys.executable), "mgtui")
        t0 = time.perf_counter()
        proc = subprocess.Popen([exe], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        seen = b""
        typed_at = None
        try:
            while True:
                assert time.perf_counter() - t0 < 8, "the app did not start"
                seen += os.read(master, 65536)
                if typed_at is None and b"Model and data" in seen:
                    os.write(master, ("\x05" + MARK).encode())  # ctrl+e (end of field), then the mark
                    typed_at = len(seen)
                if typed_at is not None and MARK.encode() in seen[typed_at:]:
                    return time.perf_counter() - t0
        finally:
            proc.kill()
            proc.wait()
            os.close(master)


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(samples), 3), "min_s": round(min(samples), 3),
            "max_s": round(max(samples), 3), "runs": len(samples)}


def textual_has_bytecode() -> bool:
    spec = importlib.util.find_spec("textual")
    assert spec and spec.origin
    return any(Path(spec.origin).parent.glob("__pycache__/*.pyc"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    result: dict[str, object] = {"terminal": "pty 80x24"}

    if textual_has_bytecode():
        result["first_launch"] = "not measured: this environment already holds Textual's bytecode"
    else:
        cold = dict(base, PYTHONDONTWRITEBYTECODE="1")
        one_run(cold)  # the OS file cache is warm for both conditions
        result["first_launch"] = summary([one_run(cold) for _ in range(a.runs)])

    with tempfile.TemporaryDirectory() as cache:
        warm = dict(base, PYTHONPYCACHEPREFIX=cache)
        one_run(warm)  # the first launch, which writes the bytecode
        later = summary([one_run(warm) for _ in range(a.runs)])
    result["later_launches"] = later
    print(json.dumps(result, indent=2))
    print("PASS" if later["median_s"] < 0.5 else "FAIL", "(target: later launches, median < 0.5 s to an interactive form)")


if __name__ == "__main__":
    main()
