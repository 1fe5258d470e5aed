"""Take a finished run somewhere else: a merged 16-bit model (plain from_pretrained), a GGUF file
through llama.cpp's converter, and an upload to the Hub. Nothing is half-written: each target is
written beside itself and renamed into place, and an existing one is replaced only with force.

Run by `model-garden export` in its own process, and by the app as
`python -m mgtui.train.export RUN_DIR ... --json` (progress as JSON lines on stdout:
{"type": "phase", "phase", "detail", "progress"}, {"type": "done", "written": [...]},
{"type": "error", "message"}).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ..runs import rundir
from ..runs.export_job import GGUF_TYPES, QUANTIZE_TYPES, add_arguments
from . import gguf_export, llama_cpp_source

Emit = Callable[..., None]
EXPORT_MARK = "mgtui-export.json"  # in a merged folder: --force may replace it
ADAPTER_UPLOAD = ("adapter_config.json", "adapter_model.safetensors", "README.md", "chat_template.jinja")
GET_LLAMA_CPP = (
    "connect to PyPI once (the pinned llama-cpp-python sdist holds it), install a llama.cpp package that "
    "provides llama-convert-hf-to-gguf, or git clone "
    "https://github.com/ggml-org/llama.cpp, pip install -r llama.cpp/requirements/requirements-convert_hf_to_gguf.txt "
    "and set LLAMA_CPP_DIR to that folder"
)


class ExportError(Exception):
    """One line for the user; `code` is the exit status (2: bad input, 1: the export failed)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def plan_targets(
    run_dir: Path, to: Path | None, merged: bool, gguf: str | None, force: bool, emit: Emit
) -> dict[str, Path]:
    """Where each output goes: the merged model is the folder itself (DIR, as Unsloth's
    save_pretrained_merged and LLaMA-Factory's export_dir), a GGUF file goes in it. Refused before
    any work when a target exists (without force), or when force would replace what no export wrote."""
    problem = rundir.weights_problem(run_dir)
    if problem:
        raise ExportError(problem)
    folder = Path(to).expanduser().absolute() if to else run_dir / "export"
    targets: dict[str, Path] = {}
    if merged:
        targets["merged"] = folder
        if [p for p in _held(folder) if not p.name.endswith(".gguf")]:
            if not force:
                raise ExportError(f"{folder} exists: choose another --to, or --force to replace it")
            if not (folder / EXPORT_MARK).exists():
                raise ExportError(f"{folder} holds files that no export wrote: choose another --to")
    if gguf:
        if gguf not in GGUF_TYPES:
            raise ExportError(f"--gguf {gguf}: not a type llama.cpp writes ({', '.join(GGUF_TYPES)})")
        targets["gguf"] = folder / f"{run_dir.name}-{gguf}.gguf"
        if targets["gguf"].exists() and not force:
            raise ExportError(f"{targets['gguf']} exists: choose another --to, or --force to replace it")
        converter = gguf_export.find_converter()
        if converter is None:
            emit("phase", phase="fetching", detail=f"llama.cpp's converter ({llama_cpp_source.SDIST_URL})", progress=0)
            try:
                converter = [sys.executable, str(llama_cpp_source.fetch() / "convert_hf_to_gguf.py")]
            except (llama_cpp_source.SourceError, OSError) as e:
                raise ExportError(f"--gguf needs llama.cpp's converter: {e}; {GET_LLAMA_CPP}") from None
        if gguf in QUANTIZE_TYPES and not gguf_export.find_quantize(converter):
            raise ExportError(
                f"--gguf {gguf} needs llama.cpp's quantizer: build llama.cpp (cmake) for llama-quantize, "
                "pip install llama-cpp-python, or use f16 or q8_0"
            )
    return targets


def _held(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if folder.is_dir() else ([folder] if folder.exists() else [])


def _replace(tmp: Path, target: Path) -> None:
    """Into place at once; an old target (force) goes only once the new one is whole. GGUF files
    in an old merged folder are kept: they were exported beside it, and are not what is replaced."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if tmp.is_dir() and target.is_dir():
        for kept in target.glob("*.gguf"):
            os.replace(kept, tmp / kept.name)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()


def merge(run_dir: Path, target: Path, emit: Emit) -> list[str]:
    """The adapter merged into its base, saved in 16-bit with the tokenizer and the exact chat
    template the run trained with. Returns notes for the user."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    from .generate import base_model_of, template_of, tokenizer_of

    notes: list[str] = []
    base = base_model_of(run_dir)
    config = AutoConfig.from_pretrained(base)
    declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    dtype = declared if declared in (torch.float16, torch.bfloat16) else torch.bfloat16
    quantized = getattr(config, "quantization_config", None)
    emit("phase", phase="loading", detail=f"loading {base}", progress=0.0)
    cuda = torch.cuda.is_available()
    kw: dict[str, Any] = {"dtype": dtype}
    if quantized is not None and cuda:  # bitsandbytes dequantizes on the GPU
        kw["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(base, **kw)
    if quantized is not None:  # a pre-quantized (bitsandbytes) base: its 16-bit weights are rebuilt
        model = model.dequantize()
        notes.append(f"{base} is quantized: it was dequantized to 16-bit for the merge")
    elif rundir.read_json(run_dir / "adapter_config.json") and _trained_4bit(run_dir):
        notes.append("the adapter was trained on a 4-bit copy of the base; it is merged into the 16-bit weights")
    emit("phase", phase="merging", detail="applying and merging the adapter", progress=0.4)
    merged = PeftModel.from_pretrained(model, str(run_dir)).merge_and_unload()
    tokenizer = tokenizer_of(run_dir, base)
    tokenizer.chat_template = template_of(run_dir, tokenizer)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    emit("phase", phase="saving", detail=f"writing {target} ({str(dtype).removeprefix('torch.')})", progress=0.7)
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / EXPORT_MARK).write_text(
            json.dumps(
                {"run": str(run_dir), "base_model": base, "dtype": str(dtype), "exported": time.time()}, indent=2
            )
        )
        _replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return notes


def _trained_4bit(run_dir: Path) -> bool:
    """What the engine actually ran (its start event): a CPU run of 4-bit settings trained in 32-bit."""
    from ..runs.events import EVENTS_FILE, read_events

    starts = [e for e in read_events(run_dir / EVENTS_FILE) if e.get("type") == "start"]
    return bool(starts) and starts[-1].get("precision") == 4


def write_gguf(run_dir: Path, merged_dir: Path, target: Path, kind: str, emit: Emit) -> None:
    """The GGUF beside its target, renamed into place once whole; named by the run."""
    from .generate import base_model_of

    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        gguf_export.to_gguf(merged_dir, tmp, kind, gguf_export.metadata(run_dir.name, base_model_of(run_dir)), emit)
        _replace(tmp, target)
    except gguf_export.ToolError as e:
        raise ExportError(str(e), EXIT_FAILED) from None
    finally:
        tmp.unlink(missing_ok=True)


def push(what: Path, repo: str, public: bool, emit: Emit, adapter_only: bool) -> str:
    """Upload with huggingface_hub: private unless asked; the token is the library's own (HF_TOKEN or
    `hf auth login`), passed to no file or log here. Local files are only read."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if not get_token():
        raise ExportError("--push-to-hub: no Hugging Face token: set HF_TOKEN, or run `hf auth login`")
    api = HfApi()
    emit("phase", phase="uploading", detail=f"{what} to {repo} ({'public' if public else 'private'})", progress=0.95)
    patterns = (
        list(ADAPTER_UPLOAD) + ["tokenizer*", "special_tokens_map.json", "vocab*", "merges.txt"]
        if adapter_only
        else None
    )
    try:
        url = api.create_repo(repo, private=not public, exist_ok=True)
        api.upload_folder(
            folder_path=str(what), repo_id=repo, allow_patterns=patterns, commit_message="Upload from mgtui"
        )
    except HfHubHTTPError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ExportError(
            f"--push-to-hub {repo}: the upload failed ({first}); the local files are unchanged", EXIT_FAILED
        ) from None
    except OSError as e:
        raise ExportError(
            f"--push-to-hub {repo}: the upload failed ({e}); the local files are unchanged", EXIT_FAILED
        ) from None
    return str(url)


def export(
    run_dir: Path,
    to: Path | None = None,
    merged: bool = False,
    gguf: str | None = None,
    repo: str | None = None,
    public: bool = False,
    force: bool = False,
    emit: Emit = lambda *a, **k: None,
) -> list[str]:
    """What was written or uploaded. Raises ExportError (one line)."""
    run_dir = Path(run_dir).expanduser()
    targets = plan_targets(run_dir, to, merged, gguf, force, emit)
    written: list[str] = []
    merged_dir = targets.get("merged")
    scratch: Path | None = None
    try:
        if merged_dir or gguf:
            if merged_dir is None:  # GGUF alone: the merged model is an intermediate, named as the run
                targets["gguf"].parent.mkdir(parents=True, exist_ok=True)
                scratch = Path(tempfile.mkdtemp(prefix=".mgtui-merge-", dir=targets["gguf"].parent))
                merged_dir = scratch / run_dir.name
            for note in merge(run_dir, merged_dir, emit):
                emit("message", message=note)
            if scratch is None:
                written.append(str(merged_dir))
        if gguf:
            assert merged_dir is not None
            write_gguf(run_dir, merged_dir, targets["gguf"], gguf, emit)
            written.append(str(targets["gguf"]))
        if repo:
            what = targets.get("merged") or run_dir
            written.append(push(what, repo, public, emit, adapter_only=what == run_dir))
    finally:
        if scratch is not None and scratch.exists():
            shutil.rmtree(scratch)
    return written


def main(argv: list[str] | None = None) -> int:
    import signal

    # Cancelled from the app: unwind, so that the partial files beside the targets are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(prog="model-garden export")
    add_arguments(p)
    p.add_argument("--json", action="store_true", help="progress as JSON lines (for the app)")
    args = p.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """The command: progress lines (or JSON with args.json), one-line errors, documented exit codes."""
    as_json = getattr(args, "json", False)

    def emit(kind: str, **fields: Any) -> None:
        if as_json:
            print(json.dumps({"type": kind, **fields}), flush=True)
        elif kind == "phase":
            print(f"{fields['phase']}: {fields.get('detail', '')}", file=sys.stderr, flush=True)
        else:
            print(f"note: {fields.get('message', '')}", file=sys.stderr, flush=True)

    merged = args.merged or not (args.gguf or args.push_to_hub)  # nothing asked: the merged model
    try:
        written = export(
            Path(args.output_dir), args.to, merged, args.gguf, args.push_to_hub, args.public, args.force, emit
        )
    except ExportError as e:
        if as_json:
            print(json.dumps({"type": "error", "message": str(e)}), flush=True)
        else:
            print(f"model-garden export: error: {e}", file=sys.stderr)
        return e.code
    if as_json:
        print(json.dumps({"type": "done", "written": written}), flush=True)
    else:
        for w in written:
            print(w)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
