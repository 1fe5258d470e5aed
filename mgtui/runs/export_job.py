"""The app's end of an export: the export process (train/export.py) started with --json, its
progress lines read in a thread into a queue that a screen drains. No torch here."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

# llama.cpp's converter writes these itself; the others are made from its f16 output by llama-quantize
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZE_TYPES = ("q2_k", "q3_k_m", "q4_0", "q4_k_m", "q4_k_s", "q5_0", "q5_k_m", "q5_k_s", "q6_k")
GGUF_TYPES = CONVERTER_TYPES + QUANTIZE_TYPES


def export_command(
    run_dir: Path, merged: bool, gguf: str = "", repo: str = "", public: bool = False, force: bool = False
) -> list[str]:
    cmd = [sys.executable, "-m", "mgtui.train.export", str(run_dir), "--json"]
    cmd += ["--merged"] if merged else []
    cmd += ["--gguf", gguf] if gguf else []
    cmd += ["--push-to-hub", repo] if repo else []
    cmd += ["--public"] if public else []
    cmd += ["--force"] if force else []
    return cmd


class ExportProcess:
    def __init__(self, cmd: list[str], log: Path) -> None:
        self.cmd, self.log = cmd, log
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
            )
        threading.Thread(target=self._read, name="export-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue
        self.events.put({"type": "exit", "code": self.proc.wait()})

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cancel(self) -> None:
        """Nothing is half-written: each target is written beside itself and renamed once whole."""
        if self.running and self.proc is not None:
            self.proc.terminate()
