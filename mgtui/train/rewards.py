"""GRPO's reward functions: the built-ins that need no code, the user's own from a Python file, and
the check that runs before a run (`python -m mgtui.train.rewards check ...`). The user's file runs
only in the engine's process and in this check's, with the user's rights. No torch here.

TRL calls each function once per batch as `f(prompts=, completions=, completion_ids=, trainer_state=,
log_extra=, log_metric=, **columns)` and takes one float (or None) per completion
(trl/trainer/grpo_trainer.py, `_calculate_rewards`); a conversational dataset's prompts and
completions are lists of turns, a text dataset's are strings.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from ..reward_spec import RewardRef, parse_rewards

Reward = Callable[..., list[float | None]]
# What TRL passes every reward function besides the dataset's own columns.
TRL_ARGUMENTS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")


def text_of(completion: Any) -> str:
    """A completion's text: a string, or the content of a conversational completion's turns."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(t.get("content", "")) for t in completion if isinstance(t, dict))
    return str(completion)


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_answer(text: str) -> str:
    """A reply's final answer: inside its last <answer>...</answer>, after GSM8K's '####', else its
    last number, else its last line."""
    tagged = _ANSWER_TAG.findall(text)
    if tagged:
        return tagged[-1]
    if "####" in text:
        return text.rsplit("####", 1)[1]
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def normalise(answer: str) -> str:
    """Case, spaces, thousands separators, a $ and a final full stop don't make answers differ."""
    a = answer.strip().lower().replace(",", "").replace("$", "").rstrip(".").strip()
    try:
        number = float(a)
    except ValueError:
        return " ".join(a.split())
    return str(int(number)) if number.is_integer() else str(number)


def answer_match(completions: list[Any], answer: list[Any] | None = None, **kwargs: Any) -> list[float | None]:
    """1.0 when the completion's final answer equals the row's `answer` column, else 0.0."""
    if answer is None:
        raise ValueError("answer_match needs an 'answer' column in the dataset")
    return [
        1.0 if normalise(final_answer(text_of(c))) == normalise(final_answer(str(a))) else 0.0
        for c, a in zip(completions, answer)
    ]


def format_match_for(pattern: str) -> Reward:
    """1.0 when the completion matches `pattern` (searched anywhere), else 0.0."""
    compiled = re.compile(pattern)

    def format_match(completions: list[Any], **kwargs: Any) -> list[float | None]:
        return [1.0 if compiled.search(text_of(c)) else 0.0 for c in completions]

    return format_match


def length_penalty_for(max_completion_length: int) -> Reward:
    """-(completion tokens / max_completion_length): from 0 (empty) to -1 (cut at the maximum)."""

    def length_penalty(completion_ids: list[list[int]], **kwargs: Any) -> list[float | None]:
        return [-len(ids) / max_completion_length for ids in completion_ids]

    return length_penalty


def builtin(name: str, settings: Mapping[str, Any]) -> Reward:
    if name == "answer_match":
        return answer_match
    if name == "format_match":
        return format_match_for(settings["format_regex"])
    return length_penalty_for(settings["max_completion_length"])


@functools.cache
def import_file(path: Path) -> Any:
    """The user's reward file as a module, run once per process (the engine checks it before the
    model loads, then builds the trainer from it). Raises ValueError with one line."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(f"mgtui_rewards_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # anything the user's code raises while it imports
        line = _user_line(e, path)
        raise ValueError(f"{path}{line}: it doesn't import: {type(e).__name__}: {e}") from None
    return module


def _user_line(e: BaseException, path: Path) -> str:
    if isinstance(e, SyntaxError) and e.lineno:
        return f":{e.lineno}"
    tb = e.__traceback__
    found = ""
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path.resolve() or tb.tb_frame.f_code.co_filename == str(path):
            found = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def signature_problem(func: Any, label: str, columns: list[str] | None) -> str | None:
    """Whether TRL's call (its arguments and the dataset's columns, by keyword) reaches `func`.
    Columns None: not known before the run (a Hub dataset); only that it is a function."""
    if not callable(func):
        return f"{label} is not a function"
    if columns is None:
        return None
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None  # a builtin or C function: nothing to check
    offered = [*TRL_ARGUMENTS, *columns]
    try:
        sig.bind(**{name: None for name in offered})
    except TypeError as e:
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        needed = [
            n
            for n, p in sig.parameters.items()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and n not in offered
        ]
        if needed:
            return (
                f"{label} needs {', '.join(repr(n) for n in needed)}, which is neither TRL's argument "
                f"({', '.join(TRL_ARGUMENTS[:3])}, ...) nor a dataset column ({', '.join(columns) or 'none'})"
            )
        if not takes_all:
            return f"{label} doesn't take every argument TRL passes ({e}); end its parameters with **kwargs"
        return f"{label}: {e}"
    return None


def load_rewards(spec: str, settings: Mapping[str, Any], columns: list[str] | None) -> list[Reward]:
    """The spec's functions in order, each checked. Raises ValueError with one line."""
    modules: dict[str, Any] = {}
    out: list[Reward] = []
    for ref in parse_rewards(spec):
        func = _resolve(ref, settings, modules)
        problem = signature_problem(func, _label(ref), columns)
        if problem:
            raise ValueError(problem)
        out.append(func)
    return out


def _label(ref: RewardRef) -> str:
    return ref.name if ref.file is None else f"{ref.file}:{ref.name}"


def _resolve(ref: RewardRef, settings: Mapping[str, Any], modules: dict[str, Any]) -> Reward:
    if ref.file is None:
        return builtin(ref.name, settings)
    if ref.file not in modules:
        modules[ref.file] = import_file(Path(ref.file).expanduser())
    func = getattr(modules[ref.file], ref.name, None)
    if func is None:
        names = [n for n, v in vars(modules[ref.file]).items() if inspect.isfunction(v) and not n.startswith("_")]
        raise ValueError(f"{ref.file} has no function {ref.name!r} (it has: {', '.join(names) or 'none'})")
    return func


def main(argv: list[str]) -> int:
    """`python -m mgtui.train.rewards check '<json {spec, settings, columns}>'`: one JSON line,
    {"ok": true} or {"problem": "..."}; the user's file is imported in this process only."""
    args = json.loads(argv[1])
    try:
        load_rewards(args["spec"], args["settings"], args["columns"])
    except ValueError as e:
        print(json.dumps({"problem": str(e)}))
        return 0
    except BaseException as e:  # SystemExit or anything else the user's code does while imported
        print(json.dumps({"problem": f"{args['spec']}: {type(e).__name__}: {e}"}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
