"""The light end of an export: the command's flags (model-garden export parses them here, without
loading the export's libraries), and the export process (train/export.py) started with --json
from the app, its progress lines read in a thread into a queue that a screen drains. No torch here."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .json_process import JsonLinesProcess

# llama.cpp's converter writes these itself; the others are made from its f16 output by llama-quantize
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZE_TYPES = ("q2_k", "q3_k_m", "q4_0", "q4_k_m", "q4_k_s", "q5_0", "q5_k_m", "q5_k_s", "q6_k")
GGUF_TYPES = CONVERTER_TYPES + QUANTIZE_TYPES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("output_dir", metavar="OUTPUT_DIR")
    p.add_argument(
        "--to",
        metavar="DIR",
        help="the folder to write: the merged model's files go in DIR itself, a GGUF file beside them "
        "(default: OUTPUT_DIR/export)",
    )
    p.add_argument("--merged", action="store_true", help="the adapter merged into its base, 16-bit safetensors")
    p.add_argument("--gguf", metavar="TYPE", help=f"a GGUF file for llama.cpp and Ollama ({', '.join(GGUF_TYPES)})")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the merged model (with --merged) or the adapter")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: a public repo (private by default)")
    p.add_argument("--force", action="store_true", help="replace an existing export")


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
