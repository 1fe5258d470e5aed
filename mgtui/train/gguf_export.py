"""A merged model to a GGUF file with llama.cpp's own tools: its converter (a packaged one, a
clone's, else the pinned llama-cpp-python sdist's, fetched once: llama_cpp_source.py) and its
quantizer (llama-quantize, else llama-cpp-python's llama_model_quantize: gguf_quantize.py). The
file's name and metadata are the run's, never a scratch folder's."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from ..runs.export_job import CONVERTER_TYPES
from . import llama_cpp_source

Emit = Callable[..., None]
QUANTIZE_MODULE = "mgtui.train.gguf_quantize"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ToolError(Exception):
    """One line from a llama.cpp tool that failed."""


def find_converter() -> list[str] | None:
    """llama.cpp's converter as a command: `llama-convert-hf-to-gguf` where a llama.cpp package
    installed it, else convert_hf_to_gguf.py from a clone ($LLAMA_CPP_DIR, ~/llama.cpp, or PATH),
    else the one unpacked from the pinned sdist (llama_cpp_source.fetch)."""
    packaged = shutil.which("llama-convert-hf-to-gguf")
    if packaged:
        return [packaged]
    for place in filter(None, [os.environ.get("LLAMA_CPP_DIR", ""), str(Path.home() / "llama.cpp")]):
        script = Path(place).expanduser() / "convert_hf_to_gguf.py"
        if script.exists():
            return [sys.executable, str(script)]
    found = shutil.which("convert_hf_to_gguf.py")
    if found:
        return [sys.executable, found]
    unpacked = llama_cpp_source.cached()
    return [sys.executable, str(unpacked / "convert_hf_to_gguf.py")] if unpacked else None


def find_quantize(converter: list[str]) -> list[str] | None:
    """llama-quantize beside the converter's clone (its cmake build) or on PATH, else
    llama-cpp-python's binding of the same llama_model_quantize, when it is installed."""
    home = Path(converter[-1]).parent
    for candidate in (home / "build" / "bin" / "llama-quantize", home / "llama-quantize"):
        if candidate.exists():
            return [str(candidate)]
    found = shutil.which("llama-quantize")
    if found:
        return [found]
    return [sys.executable, "-m", QUANTIZE_MODULE] if importlib.util.find_spec("llama_cpp") else None


def metadata(run_name: str, base: str) -> dict[str, Any]:
    """The converter's --metadata override (gguf-py/gguf/metadata.py, Metadata.load): the run's name
    and its base model, and no version (the heuristics would take one from a folder's name)."""
    local = Path(base).expanduser().exists()
    base_name = Path(base).name if local or not HUB_ID.match(base) else base.split("/")[1]
    entry: dict[str, str] = {"name": base_name}
    if not local and HUB_ID.match(base):
        entry |= {"organization": base.split("/")[0], "repo_url": f"https://huggingface.co/{base}"}
    return {
        "general.name": run_name,
        "general.basename": base_name,
        "general.finetune": run_name,
        "general.version": None,
        "general.base_models": [entry],
    }


def to_gguf(merged_dir: Path, tmp: Path, kind: str, meta: dict[str, Any], emit: Emit) -> None:
    """Write the GGUF to tmp (the caller renames it into place)."""
    converter = find_converter()
    assert converter is not None  # export.plan_targets checked
    outtype = kind if kind in CONVERTER_TYPES else "f16"
    override = tmp.with_name(tmp.name + ".metadata.json")
    override.write_text(json.dumps(meta))
    emit("phase", phase="converting", detail=f"llama.cpp convert_hf_to_gguf ({outtype})", progress=0.8)
    try:
        run_tool(
            "convert_hf_to_gguf",
            [*converter, str(merged_dir), "--outfile", str(tmp), "--outtype", outtype, "--metadata", str(override)],
        )
        if kind not in CONVERTER_TYPES:
            quantize = find_quantize(converter)
            assert quantize is not None
            emit("phase", phase="quantizing", detail=f"llama.cpp quantize {kind}", progress=0.9)
            quantized = tmp.with_name(tmp.name + ".q")
            try:
                run_tool("llama-quantize", [*quantize, str(tmp), str(quantized), kind.upper()])
                os.replace(quantized, tmp)
            finally:
                quantized.unlink(missing_ok=True)
    finally:
        override.unlink(missing_ok=True)


def run_tool(name: str, cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ToolError(f"{name} failed: {last[0]}")
