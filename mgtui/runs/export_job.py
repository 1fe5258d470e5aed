"""The app's end of an export: the export process (train/export.py) started with --json, its
progress lines read in a thread into a queue that a screen drains. No torch here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .json_process import JsonLinesProcess

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


class ExportProcess(JsonLinesProcess):
    def __init__(self, cmd: list[str], log: Path) -> None:
        super().__init__()
        self.cmd, self.log = cmd, log

    def start(self) -> None:
        self.spawn(self.cmd, self.log, subprocess.DEVNULL)

    def cancel(self) -> None:
        """Nothing is half-written: each target is written beside itself and renamed once whole."""
        if self.running and self.proc is not None:
            self.proc.terminate()
