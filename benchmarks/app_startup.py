"""Time from starting `mgtui` to an interactive form, in a real pseudo-terminal at 80x24, against a
bare Textual app started the same way in the same run.

"Interactive" is measured, not assumed: after launch we type into the focused field and stop the
clock when that keystroke shows on screen, i.e. the form is drawn and answering keys.

The bare app is the floor Textual itself sets on this machine: one Label, one Input and a Footer,
written to a temporary file and run by the same interpreter `mgtui`'s console script runs, in the
same pty, with the same environment, and timed to the same echo. Launches alternate (bare, mgtui,
mgtui, bare, ...) so drift in the machine's load falls on both alike. The figure that matters is
the ratio of the medians, mgtui / bare: it holds across machines where absolute times do not.

Python's bytecode cache decides much of a start-up time, so each condition is set, not inherited:
- "later launches": every launch after the first. Python caches bytecode on the first import; here
  the cache lives in a private PYTHONPYCACHEPREFIX that one untimed launch of each app fills.
- "first launch": the first launch after `uv sync`, which installs without bytecode, so Python compiles
  Textual and mgtui from source. Measured only when the environment holds no bytecode for Textual
  (else it could not be the first launch), with PYTHONDONTWRITEBYTECODE so it stays that way.

Run: uv run python benchmarks/app_startup.py [--runs 10]
Target: later launches, median mgtui <= 1.5 x median bare app (same run).
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
TARGET_RATIO = 1.5

# The floor: what any Textual app with an input costs here. Its label doubles as the "drawn" sign.
BARE_APP = """\
from textual.app import App
from textual.widgets import Footer, Input, Label


class Bare(App):
    def compose(self):
        yield Label("Bare app ready")
        yield Input()
        yield Footer()


if __name__ == "__main__":
    Bare().run()
"""


def one_run(argv: list[str], drawn: bytes, env: dict[str, str]) -> float:
    """Seconds from launching `argv` in a fresh 80x24 pty until `drawn` is on screen and a key typed
    then has been echoed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with tempfile.TemporaryDirectory() as home:
        env = dict(env, TERM="xterm-256color", XDG_CONFIG_HOME=home, XDG_STATE_HOME=home)
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        seen = b""
        typed_at = None
        try:
            while True:
                assert time.perf_counter() - t0 < 8, f"{argv[-1]} did not start"
                seen += os.read(master, 65536)
                if typed_at is None and drawn in seen:
                    os.write(master, ("\x05" + MARK).encode())  # ctrl+e (end of field), then the mark
                    typed_at = len(seen)
                if typed_at is not None and MARK.encode() in seen[typed_at:]:
                    return time.perf_counter() - t0
        finally:
            proc.kill()
            proc.wait()
            os.close(master)


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "runs": len(samples),
    }


def textual_has_bytecode() -> bool:
    spec = importlib.util.find_spec("textual")
    assert spec and spec.origin
    return any(Path(spec.origin).parent.glob("__pycache__/*.pyc"))


def compare(apps: dict[str, tuple[list[str], bytes]], env: dict[str, str], runs: int) -> dict[str, object]:
    """`runs` timed launches of each app, interleaved in ABBA order; medians and mgtui / bare."""
    samples: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            argv, drawn = apps[name]
            samples[name].append(one_run(argv, drawn, env))
    out: dict[str, object] = {name: summary(s) for name, s in samples.items()}
    out["ratio"] = round(statistics.median(samples["mgtui"]) / statistics.median(samples["bare"]), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    result: dict[str, object] = {"terminal": "pty 80x24"}

    with tempfile.TemporaryDirectory() as tmp:
        bare_py = os.path.join(tmp, "bare_app.py")
        Path(bare_py).write_text(BARE_APP, encoding="utf-8")
        apps = {
            # the console script, as a user starts it (its shebang names this interpreter)
            "mgtui": ([os.path.join(os.path.dirname(sys.executable), "mgtui")], b"Model and data"),
            "bare": ([sys.executable, bare_py], b"Bare app ready"),
        }

        if textual_has_bytecode():
            result["first_launch"] = "not measured: this environment already holds Textual's bytecode"
        else:
            cold = dict(base, PYTHONDONTWRITEBYTECODE="1")
            for argv, drawn in apps.values():
                one_run(argv, drawn, cold)  # the OS file cache is warm for both conditions
            result["first_launch"] = compare(apps, cold, a.runs)

        with tempfile.TemporaryDirectory() as cache:
            warm = dict(base, PYTHONPYCACHEPREFIX=cache)
            for argv, drawn in apps.values():
                one_run(argv, drawn, warm)  # the first launch, which writes the bytecode
            later = compare(apps, warm, a.runs)

    result["later_launches"] = later
    print(json.dumps(result, indent=2))
    ratio = later["ratio"]
    assert isinstance(ratio, float)
    print(
        "PASS" if ratio <= TARGET_RATIO else "FAIL",
        f"(target: later launches, median mgtui <= {TARGET_RATIO}x the bare app's, same run: {ratio}x)",
    )


if __name__ == "__main__":
    main()
