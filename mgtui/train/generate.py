"""Generation for the chat and the quick look at quality: a finished run's model, loaded once, and
its answers with the adapter (tuned) and without it (base: PEFT's disable_adapter), streamed.

As a process (`python -m mgtui.train.generate RUN_DIR`) it speaks JSON lines, one object each
(runs/chat.py is the other end, in the app):

    in   {"type": "generate", "id", "messages", "system", "temperature", "top_p",
          "max_new_tokens", "which": ["tuned", "base"]}   (answered in that order)
         {"type": "stop", "id"}     ends that generation at its next token
         {"type": "quit"}
    out  {"type": "loading", "detail"}  then  {"type": "ready", "adapter", "backend", "device"}
         {"type": "token", "id", "which", "text"}   as they are produced
         {"type": "done", "id", "which", "tokens", "seconds", "stopped"}
         {"type": "error", "message"}   (then it exits when it could not load)

Only these lines go to stdout: the libraries' own output is sent to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..data.templates import pick_template, saved_template
from ..runs import rundir

Emit = Callable[..., None]


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    template: str
    adapter: bool  # base and tuned can both be answered (the adapter can be disabled)
    backend: str
    device: str


def base_model_of(run_dir: Path) -> str:
    """The base the adapter was trained on: adapter_config's, else the run's settings (the demo's
    tiny model is built locally, once)."""
    cfg = rundir.read_json(run_dir / "adapter_config.json")
    base = cfg.get("base_model_name_or_path") or ""
    if not base:
        from .worker import load_settings

        base = load_settings(run_dir)["base_model"]
    from ..demo_model import BUILTIN_MODEL

    if base == BUILTIN_MODEL:
        from .tiny import build_tiny_llama

        base = str(build_tiny_llama())
    return base


def tokenizer_of(run_dir: Path, base: str) -> Any:
    """The tokenizer the run saved (with the template it trained with), else its base's."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(run_dir if (run_dir / "tokenizer_config.json").exists() else base))


def load(run_dir: Path, emit: Emit = lambda *a, **k: None, device: str | None = None) -> Loaded:
    import torch

    cuda = torch.cuda.is_available() if device is None else device == "cuda"
    adapter = (run_dir / "adapter_config.json").exists()
    backend = rundir.read_json(run_dir / rundir.SUMMARY_FILE).get("backend", "transformers")
    if cuda and adapter and backend == "unsloth":
        from ..backend_choice import unsloth_available

        if unsloth_available():
            return _load_unsloth(run_dir, emit)
    from transformers import AutoModelForCausalLM

    base = base_model_of(run_dir)
    emit("loading", detail=f"loading {base}")
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    kw: dict[str, Any] = {"dtype": dtype}
    if cuda:
        kw["device_map"] = {"": 0}
    tokenizer = tokenizer_of(run_dir, base)
    if adapter:
        from peft import PeftModel

        plain = AutoModelForCausalLM.from_pretrained(base, **kw)
        emit("loading", detail="applying the adapter")
        model: Any = PeftModel.from_pretrained(plain, str(run_dir))
    else:  # a full fine-tune saved the whole model: no base to compare with in the same weights
        model = AutoModelForCausalLM.from_pretrained(str(run_dir), **kw)
    model.eval()
    return Loaded(model, tokenizer, template_of(run_dir, tokenizer), adapter, "transformers", "cuda" if cuda else "cpu")


def _load_unsloth(run_dir: Path, emit: Emit) -> Loaded:
    """Unsloth's fast inference path, on the run's own adapter directory."""
    from unsloth import FastLanguageModel

    from .worker import load_settings

    res = load_settings(run_dir)
    emit("loading", detail=f"loading {run_dir} with Unsloth")
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(run_dir),
        max_seq_length=res["max_seq_length"],
        load_in_4bit=res.precision == 4,
        load_in_8bit=res.precision == 8,
    )
    FastLanguageModel.for_inference(model)
    return Loaded(model, tokenizer, template_of(run_dir, tokenizer), True, "unsloth", "cuda")


def template_of(run_dir: Path, tokenizer: Any) -> str:
    """The chat template the run trained with: saved with its tokenizer, else as its settings chose."""
    found = saved_template(run_dir)
    if found:
        return found
    from .worker import load_settings

    res = load_settings(run_dir)
    return pick_template(res["chat_template"], getattr(tokenizer, "chat_template", None), res["base_model"])


def prompt_ids(m: Loaded, messages: list[dict[str, Any]], system: str = "") -> Any:
    msgs = ([{"role": "system", "content": system}] if system else []) + messages
    if m.template:
        text = m.tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True, chat_template=m.template
        )
    else:  # a run on plain text: the prompt as it is
        text = "\n".join(str(x.get("content", "")) for x in msgs)
    return m.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(m.model.device)


def answer(
    m: Loaded,
    messages: list[dict[str, Any]],
    which: str = "tuned",
    system: str = "",
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    on_text: Callable[[str], None] = lambda t: None,
    stop: threading.Event | None = None,
) -> tuple[str, int, bool]:
    """One answer, streamed to `on_text` as it is produced. Greedy at temperature 0. Returns the
    text, the tokens generated and whether it was stopped."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    halt = stop or threading.Event()

    class Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            return halt.is_set()

    inputs = prompt_ids(m, messages, system)
    streamer = TextIteratorStreamer(m.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kw: dict[str, Any] = dict(
        **inputs,
        max_new_tokens=max_new_tokens,
        streamer=streamer,
        stopping_criteria=StoppingCriteriaList([Stop()]),
        pad_token_id=m.tokenizer.pad_token_id if m.tokenizer.pad_token_id is not None else m.tokenizer.eos_token_id,
    )
    if temperature > 0:
        kw.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    out: dict[str, Any] = {}

    def run() -> None:
        disabled = m.model.disable_adapter() if which == "base" and m.adapter else contextlib.nullcontext()
        try:
            with torch.inference_mode(), disabled:
                out["ids"] = m.model.generate(**kw)
        except BaseException as e:  # reported by the caller, after the streamer ends
            out["error"] = e
            streamer.end()

    thread = threading.Thread(target=run, name="generate", daemon=True)
    thread.start()
    text = ""
    for piece in streamer:
        if piece:
            text += piece
            on_text(piece)
    thread.join()
    if "error" in out:
        raise out["error"]
    tokens = int(out["ids"].shape[-1] - inputs["input_ids"].shape[-1]) if "ids" in out else 0
    return text, tokens, halt.is_set()


def serve(run_dir: Path, lines: Any, write: Callable[[dict[str, Any]], None]) -> int:
    def emit(kind: str, **fields: Any) -> None:
        write({"type": kind, **fields})

    problem = rundir.weights_problem(run_dir)
    if problem:
        emit("error", message=problem)
        return 2
    try:
        m = load(run_dir, emit)
    except Exception as e:  # a missing base, an unreadable adapter: said, not a traceback
        emit("error", message=f"could not load {run_dir}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return 1
    emit("ready", adapter=m.adapter, backend=m.backend, device=m.device)
    requests: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    stops: dict[Any, threading.Event] = {}

    def read() -> None:  # stop requests act at once, even while a generation runs
        for line in lines:
            try:
                req = json.loads(line)
            except ValueError:
                continue
            if req.get("type") == "stop":
                stops.setdefault(req.get("id"), threading.Event()).set()
            elif req.get("type") == "quit":
                for event in list(stops.values()):  # an answer being written ends at its next token
                    event.set()
                break
            else:
                requests.put(req)
        requests.put(None)

    threading.Thread(target=read, name="requests", daemon=True).start()
    while (req := requests.get()) is not None:
        rid = req.get("id")
        stop = stops.setdefault(rid, threading.Event())
        for which in req.get("which") or ["tuned"]:
            if which == "base" and not m.adapter:
                continue
            t0 = time.time()

            def streamed(text: str, which: str = which, rid: Any = rid) -> None:
                emit("token", id=rid, which=which, text=text)

            try:
                _, tokens, stopped = answer(
                    m,
                    req.get("messages") or [],
                    which,
                    req.get("system") or "",
                    float(req.get("temperature") or 0.0),
                    float(req.get("top_p") or 1.0),
                    int(req.get("max_new_tokens") or 256),
                    streamed,
                    stop,
                )
            except Exception as e:
                emit("error", id=rid, which=which, message=str(e).splitlines()[0] if str(e) else type(e).__name__)
                continue
            emit("done", id=rid, which=which, tokens=tokens, seconds=round(time.time() - t0, 3), stopped=stopped)
            if stopped:
                break
        stops.pop(rid, None)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # print()s of the libraries go to the log, never into the protocol
    sys.stdout = sys.stderr
    lock = threading.Lock()

    def write(obj: dict[str, Any]) -> None:
        with lock:
            proto.write(json.dumps(obj) + "\n")
            proto.flush()

    return serve(Path(argv[0]), sys.stdin, write)


if __name__ == "__main__":
    sys.exit(main())


ANSWERS_FILE = "answers.jsonl"


def answer_prompts(
    model: Any, tokenizer: Any, template: str | None, prompts: list[list[dict[str, Any]]], run_dir: Path, emit: Emit
) -> Path:
    """The quick look at quality, right after training: each prompt answered greedily by the tuned
    model and by the base (the same weights, adapter disabled), into answers.jsonl."""
    adapter = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
    m = Loaded(model, tokenizer, template or "", adapter, "", str(getattr(model, "device", "")))
    rows = []
    for i, msgs in enumerate(prompts):
        emit(
            "phase", phase="answering", detail=f"prompt {i + 1} of {len(prompts)}", progress=round(i / len(prompts), 3)
        )
        tuned = answer(m, msgs, "tuned", max_new_tokens=128)[0]
        base = answer(m, msgs, "base", max_new_tokens=128)[0] if adapter else None
        rows.append({"prompt": msgs[-1].get("content", ""), "messages": msgs, "tuned": tuned, "base": base})
    path = run_dir / ANSWERS_FILE
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    sample = [
        {k: (r[k] or "")[:300] if k != "base" or r[k] is not None else None for k in ("prompt", "tuned", "base")}
        for r in rows[:3]
    ]
    emit("answers", path=str(path), count=len(rows), sample=sample)
    return path
