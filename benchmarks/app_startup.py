"""Time from starting `mgtui` to an interactive form, in a real pseudo-terminal at 80x24.

"Interactive" is measured, not assumed: after launch we type into the focused field and stop the
clock when that keystroke shows on screen, i.e. the form is drawn and answering keys.

Run: uv run python benchmarks/app_startup.py [--runs 10]   (target: median under 0.5 s)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time

# Typed into the first field; its echo marks the form as live. One character that appears nowhere
# else on screen: Textual repaints only changed cells, so a longer mark can arrive split across frames.
MARK = "§"


def one_run() -> float:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, TERM="xterm-256color", XDG_CONFIG_HOME=home, XDG_STATE_HOME=home)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    one_run()  # warm the OS file cache, as a second launch would be
    samples = [one_run() for _ in range(a.runs)]
    result = {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
              "runs": a.runs, "terminal": "pty 80x24"}
    print(json.dumps(result, indent=2))
    print("PASS" if result["median_s"] < 0.5 else "FAIL", "(target: median < 0.5 s to an interactive form)")


if __name__ == "__main__":
    main()
