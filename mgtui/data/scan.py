"""Dataset reading, format detection and validation, without the `datasets` library.

Used by the form's quick scan, by `model-garden train` before it starts anything, and by the
engine (which then tokenizes). Errors are one line naming the file and the line (or row).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

SFT_FORMATS = ("text", "messages", "sharegpt", "alpaca", "prompt_completion", "chat_prompt_completion")
# Preference and KTO layouts: read in data/pairs.py
FORMATS = (*SFT_FORMATS, "preference", "sharegpt_preference", "alpaca_preference", "kto", "prompt_only")
CHAT_FORMATS = ("messages", "sharegpt", "chat_prompt_completion", "sharegpt_preference")  # through a chat template
MAYBE_CHAT = ("preference", "kto", "prompt_only")  # TRL's types: chat when the rows hold role/content lists, else text
# TRL's prompt-completion types: the loss covers the completion only, as TRL's completion_only_loss does.
COMPLETION_ONLY = ("prompt_completion", "chat_prompt_completion")
FILE_KINDS = (".jsonl", ".json", ".csv", ".parquet", ".txt")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    # LLaMA-Factory's tool turns: a call (JSON with name and arguments) and the tool's answer
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
ACCEPTED = (
    "text (a 'text' column); messages (OpenAI-style role/content list); "
    "sharegpt ('conversations' with from/value); alpaca (instruction, optional input, output); "
    "prompt_completion ('prompt' and 'completion' text); chat_prompt_completion ('prompt' and 'completion' "
    "as role/content lists)"
)
REQUIRED = {
    "text": {"text"},
    "messages": {"messages"},
    "sharegpt": {"conversations"},
    "alpaca": {"instruction", "output"},
    "prompt_completion": {"prompt", "completion"},
    "chat_prompt_completion": {"prompt", "completion"},
    "preference": {"chosen", "rejected"},
    "sharegpt_preference": {"conversations", "chosen", "rejected"},
    "alpaca_preference": {"instruction", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
    "prompt_only": {"prompt"},  # TRL's prompt-only type (GRPO): its other columns reach the reward functions
}
BUILTIN = {"builtin:demo-chat": Path(__file__).with_name("demo_chat.jsonl")}


class DatasetError(ValueError):
    """A problem with the user's data: one line, naming the file and the line or row."""


SPLIT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(\[(?P<start>\d+%?)?:(?P<stop>\d+%?)?\])?$")


def check_split(spec: str) -> None:
    """A split, or a slice of one as `datasets` reads it (train, train[:2000], train[10%:50%]).
    Raises ValueError naming what is wrong."""
    if not SPLIT.match(spec.strip()):
        raise ValueError(f"{spec!r} is not a split or a slice of one, such as train or train[:2000]")


def hub_dataset(source: str) -> tuple[str, str | None]:
    """(repository, subset) of a Hub dataset named 'org/name' or 'org/name:subset'."""
    repo, _, subset = source.partition(":")
    return repo, subset or None


def resolve_source(name: str) -> Path | None:
    """The local path of a dataset, or None for a Hub name."""
    if name in BUILTIN:
        return BUILTIN[name]
    p = Path(name).expanduser()
    if p.exists():
        return p
    from .dataset_info import registered_file

    registered = registered_file(name)  # a name in LLaMA-Factory's dataset_info.json
    if registered is not None:
        if not registered.exists():
            raise DatasetError(f"{name}: registered as {registered}, which does not exist")
        return registered
    if p.suffix.lower() in FILE_KINDS or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise DatasetError(f"{name}: no such file or directory")
    return None  # org/name: a Hub dataset


COLUMN_NAMES = (
    "text", "messages", "conversations", "instruction", "input", "output", "prompt", "completion",
    "chosen", "rejected", "label",
)  # fmt: skip


def column_map(spec: str) -> dict[str, str]:
    """--columns "prompt=question,completion=answer" as {source column: the name a format reads}.
    Raises ValueError with the item at fault."""
    mapping: dict[str, str] = {}
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        target, sep, source = (p.strip() for p in item.partition("="))
        if not sep or not target or not source:
            raise ValueError(f"{item!r} is not NAME=COLUMN")
        if target not in COLUMN_NAMES:
            raise ValueError(f"{target!r} is not a column a format reads ({', '.join(COLUMN_NAMES)})")
        mapping[source] = target
    return mapping


def rename(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    if not mapping:
        return row
    return {mapping.get(k, k): v for k, v in row.items()}


def iter_rows(path: Path, columns: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for each row, its columns renamed by a dataset_info.json entry for the file
    (LLaMA-Factory's) and then by --columns; `where` is 'file:line N' or 'file: row N' for errors."""
    from .dataset_info import registration

    mapping = column_map(columns)
    convert = registration(path)
    for where, row in _read_rows(path):
        yield where, rename(convert(row, where) if convert else row, mapping)


def _read_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if path.is_dir():
        yield from _iter_saved(path)
    elif suffix == ".jsonl":
        with open(path, encoding="utf-8", errors="strict") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DatasetError(f"{path}:{n}: invalid JSON: {getattr(e, 'msg', e)}") from None
                if not isinstance(row, dict):
                    raise DatasetError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
                yield f"{path}:{n}", row
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DatasetError(f"{path}:{getattr(e, 'lineno', '?')}: invalid JSON: {getattr(e, 'msg', e)}") from None
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"train": [...]} or {"data": [...]}
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a JSON list of objects")
        for n, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise DatasetError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
            yield f"{path}: row {n}", row
    elif suffix == ".txt":  # plain text: one row per non-empty line
        with open(path, encoding="utf-8", errors="strict") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield f"{path}:{n}", {"text": line.rstrip("\r\n")}
    elif suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if None in row:
                    raise DatasetError(f"{path}:{reader.line_num}: more fields than the header has")
                yield f"{path}:{reader.line_num}", dict(row)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:
            raise DatasetError(f"{path}: not a readable Parquet file: {e}") from None
        for n, row in enumerate(table.to_pylist(), 1):
            yield f"{path}: row {n}", row
    else:
        raise DatasetError(f"{path}: unsupported file type {suffix or '(none)'}; use {', '.join(FILE_KINDS)}")


def _iter_saved(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A directory written by Dataset.save_to_disk (Arrow stream files), read with pyarrow."""
    files = sorted(path.glob("*.arrow")) or sorted(path.glob("*/*.arrow"))
    if not files:
        raise DatasetError(f"{path}: not a dataset directory (no .arrow files from save_to_disk)")
    import pyarrow as pa

    n = 0
    for file in files:
        with pa.memory_map(str(file)) as source:
            for row in pa.ipc.open_stream(source).read_all().to_pylist():
                n += 1
                yield f"{file}: row {n}", row


def detect_format(columns: set[str], first: dict[str, Any] | None = None) -> str | None:
    """The format a file's columns (and its first row, for prompt-completion's two types) say."""
    from .pairs import detect

    preference = detect(columns, first)
    if preference:
        return preference
    if {"prompt", "completion"} <= columns:
        prompt = (first or {}).get("prompt")
        return "chat_prompt_completion" if isinstance(prompt, list) or _json_list(prompt) else "prompt_completion"
    if "prompt" in columns and not columns & {"completion", "completions", "chosen", "rejected"}:
        return "prompt_only"
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "sharegpt"
    if {"instruction", "output"} <= columns:
        return "alpaca"
    if "text" in columns:
        return "text"
    return None


def _json_list(value: Any) -> bool:
    """A CSV cell holding a JSON list of turns."""
    return isinstance(value, str) and value.lstrip().startswith("[{")


def _turns(value: Any, name: str, where: str) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)  # CSV cells hold JSON text
        except ValueError:
            raise DatasetError(f"{where}: '{name}' is not a list") from None
    if not isinstance(value, list):
        raise DatasetError(f"{where}: '{name}' is not a list")
    return value


def _text_parts(parts: list[Any], where: str) -> str:
    """Content parts as one text: OpenAI's [{"type": "text", "text": ...}], or with the text under
    "value". An image, video or audio part is refused: mgtui fine-tunes text-only models."""
    texts = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        text = next((part[k] for k in ("text", "value") if isinstance(part.get(k), str)), None) if kind else None
        if kind == "text" and text is not None:
            texts.append(text)
        elif kind == "text":
            raise DatasetError(f"{where}: a text part without its text (under 'text' or 'value')")
        elif kind in MEDIA_PARTS:
            media = next(m for m in ("image", "video", "audio") if m in kind)
            raise DatasetError(f"{where}: an {media} part ({kind!r}); mgtui fine-tunes text-only models")
        else:
            raise DatasetError(f"{where}: a content part of type {kind!r}; only text parts are read")
    return "".join(texts)


MEDIA_PARTS = ("image", "image_url", "input_image", "video", "video_url", "audio", "input_audio")


def completion_start(fmt: str, row: dict[str, Any], where: str) -> int:
    """Where the completion's turns begin in a chat prompt-completion row's messages (0 otherwise)."""
    if fmt != "chat_prompt_completion":
        return 0
    prompt = _turns(row.get("prompt"), "prompt", where)
    added = _system_column(row, where) and not (
        prompt and isinstance(prompt[0], dict) and prompt[0].get("role") == "system"
    )
    return len(prompt) + (1 if added else 0)  # a system column comes first


def prompt_completion_parts(row: dict[str, Any], where: str) -> tuple[str, str] | None:
    """(prompt, completion) of a standard prompt-completion row, or None when the completion is empty."""
    prompt, completion = row.get("prompt"), row.get("completion")
    for key, value in (("prompt", prompt), ("completion", completion)):
        if value is not None and not isinstance(value, str):
            raise DatasetError(f"{where}: '{key}' is not text (a list of turns is chat_prompt_completion)")
    if not completion or not completion.strip():
        return None
    return prompt or "", completion


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """An assistant turn's OpenAI tool calls, as chat templates read them: the arguments as a mapping
    (OpenAI writes them as JSON text; Hugging Face templates expect a dict)."""
    if not isinstance(calls, list):
        raise DatasetError(f"{where}: 'tool_calls' is not a list")
    out = []
    for n, call in enumerate(calls, 1):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise DatasetError(f"{where}: tool call {n} needs a 'function' with a 'name'")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                raise DatasetError(f"{where}: tool call {n}: 'arguments' is not JSON") from None
        out.append({**call, "type": call.get("type", "function"), "function": {**function, "arguments": arguments}})
    return out


def tools_of(row: dict[str, Any], where: str) -> list[dict[str, Any]] | None:
    """The row's tool definitions (a 'tools' column, as TRL reads it, or JSON text as LLaMA-Factory
    and CSV cells hold it), each in OpenAI's {"type": "function", "function": {...}} form that chat
    templates read; a bare function definition is wrapped."""
    tools = row.get("tools")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools) if tools.strip() else None
        except ValueError:
            raise DatasetError(f"{where}: 'tools' is not JSON") from None
    if isinstance(tools, dict):
        tools = [tools]
    if tools is not None and not isinstance(tools, list):
        raise DatasetError(f"{where}: 'tools' is not a list")
    out = []
    for n, tool in enumerate(tools or (), 1):
        if not isinstance(tool, dict):
            raise DatasetError(f"{where}: tool {n} in 'tools' is not an object")
        if "function" not in tool and isinstance(tool.get("name"), str):
            tool = {"type": "function", "function": tool}
        out.append(tool)
    return out or None


def _function_call(value: Any, where: str) -> list[dict[str, Any]]:
    """A ShareGPT function_call turn's value (JSON text: one {"name", "arguments"} or a list of
    them, as LLaMA-Factory writes them) as OpenAI tool calls."""
    try:
        calls = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise DatasetError(f"{where}: a function_call turn's value is not JSON") from None
    calls = calls if isinstance(calls, list) else [calls]
    if not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls) or not calls:
        raise DatasetError(f"{where}: a function_call turn needs JSON with a 'name' and 'arguments'")
    return [{"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}} for c in calls]


def _system_column(row: dict[str, Any], where: str) -> str | None:
    """A 'system' column (LLaMA-Factory's, and some exports'): the row's system prompt."""
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise DatasetError(f"{where}: 'system' is not text")
    return system if system and system.strip() else None


def to_messages(fmt: str, row: dict[str, Any], where: str, reply: bool = True) -> list[dict[str, Any]] | None:
    """A chat row as [{role, content}], checked; an assistant's tool calls and a tool turn's id and
    name are kept for the template. None for empty rows (skipped, counted): with no assistant reply,
    or (`reply` False: a prompt) with no text at all."""
    if fmt == "chat_prompt_completion":
        row = {
            "messages": _turns(row.get("prompt"), "prompt", where) + _turns(row.get("completion"), "completion", where),
            "system": row.get("system"),
        }
        fmt = "messages"
    if fmt == "messages":
        turns = row.get("messages")
        key_role, key_text, roles = "role", "content", None
    else:
        turns = row.get("conversations")
        key_role, key_text, roles = "from", "value", SHAREGPT_ROLES
    if isinstance(turns, str):
        try:
            turns = json.loads(turns)  # CSV cells hold JSON text
        except ValueError:
            raise DatasetError(
                f"{where}: '{'messages' if fmt == 'messages' else 'conversations'}' is not a list"
            ) from None
    if not isinstance(turns, list):
        raise DatasetError(f"{where}: '{'messages' if fmt == 'messages' else 'conversations'}' is not a list")
    out: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        at = f"{where}: turn {i + 1}"
        calls = turn.get("tool_calls") if isinstance(turn, dict) and roles is None else None
        if not isinstance(turn, dict) or key_role not in turn or (key_text not in turn and not calls):
            raise DatasetError(f"{at} needs '{key_role}' and '{key_text}'")
        role, text = turn[key_role], turn.get(key_text)
        if roles is not None:
            if role not in roles:
                raise DatasetError(f"{at}: unknown speaker {role!r} (use {', '.join(sorted(roles))})")
            if role == "function_call":
                calls, text = _function_call(text, at), ""
            role = roles[role]
        elif role not in ("system", "user", "assistant", "tool"):
            raise DatasetError(f"{at}: unknown role {role!r} (use system, user, assistant, tool)")
        if isinstance(text, list):  # OpenAI content parts: the text ones, joined
            text = _text_parts(text, at)
        if text is None and calls:
            text = ""  # an assistant turn that only calls tools
        if not isinstance(text, str):
            raise DatasetError(f"{at}: '{key_text}' is not text")
        message: dict[str, Any] = {"role": role, "content": text}
        if calls:
            if role != "assistant":
                raise DatasetError(f"{at}: only an assistant turn makes tool calls")
            message["tool_calls"] = _tool_calls(calls, at)
        if role == "tool":
            message.update({k: turn[k] for k in ("tool_call_id", "name") if isinstance(turn.get(k), str)})
        out.append(message)
    system = _system_column(row, where)
    if system and not (out and out[0]["role"] == "system"):  # a system turn in the rows wins, as LLaMA-Factory's
        out.insert(0, {"role": "system", "content": system})
    if not reply:
        return out if any(t["content"].strip() for t in out) else None
    if not any(t["role"] == "assistant" and (t["content"].strip() or t.get("tool_calls")) for t in out):
        return None
    return out


def dropped_tool_calls(messages: list[dict[str, Any]], rendered: str, where: str) -> DatasetError | None:
    """A chat template that ignores tool calls renders an empty assistant turn and trains on nothing
    of it: the row is refused, naming it. A call is rendered when its function's name appears."""
    for i, message in enumerate(messages):
        for call in message.get("tool_calls") or ():
            if call["function"]["name"] not in rendered:
                return DatasetError(
                    f"{where}: turn {i + 1} calls a tool, and the chat template does not render tool calls; "
                    "use a model whose template does, or --chat-template hermes"
                )
    return None


ALPACA_PROMPT = (
    "Below is an instruction that describes a task{ctx}. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n{input}### Response:\n"
)


def alpaca_parts(row: dict[str, Any], where: str) -> tuple[str, str] | None:
    """(prompt, response) for an Alpaca row, or None when it has no output."""
    instr, inp, output = row.get("instruction"), row.get("input") or "", row.get("output")
    for key, value in (("instruction", instr), ("input", inp), ("output", output)):
        if value is not None and not isinstance(value, str):
            raise DatasetError(f"{where}: '{key}' is not text")
    if not output or not str(output).strip() or not instr:
        return None
    prompt = ALPACA_PROMPT.format(
        ctx=", paired with an input that provides further context" if inp else "",
        instruction=instr,
        input=f"### Input:\n{inp}\n\n" if inp else "",
    )
    return prompt, output


def plain_render(fmt: str, row: dict[str, Any], where: str) -> str | None:
    """A readable rendering without a tokenizer: for previews and the quick scan."""
    if fmt == "prompt_only":
        from .prompt_rows import plain_prompt

        return plain_prompt(row, where)
    if fmt not in SFT_FORMATS:
        from .pairs import plain, preference_row

        pref = preference_row(fmt, row, where)
        return None if pref is None else plain(pref)
    if fmt == "text":
        text = row.get("text")
        if text is not None and not isinstance(text, str):
            raise DatasetError(f"{where}: 'text' is not text")
        return text if text and text.strip() else None
    if fmt == "alpaca":
        parts = alpaca_parts(row, where)
        return None if parts is None else parts[0] + parts[1]
    if fmt == "prompt_completion":
        pc = prompt_completion_parts(row, where)
        return None if pc is None else pc[0] + pc[1]
    msgs = to_messages(fmt, row, where)
    return None if msgs is None else "\n".join(f"{m['role']}: {m['content']}{_calls_text(m)}" for m in msgs)


def _calls_text(message: dict[str, Any]) -> str:
    calls = message.get("tool_calls") or ()
    return "".join(f" [calls {c['function']['name']}({json.dumps(c['function']['arguments'])})]" for c in calls)


@dataclass
class ScanReport:
    source: str
    format: str
    rows: int = 0
    usable: int = 0
    skipped: int = 0
    columns: list[str] = field(default_factory=list)
    sample: str = ""
    tokens: list[int] = field(default_factory=list)  # per usable row, when a counter was given
    hub: bool = False
    skips: list[tuple[int, str]] = field(default_factory=list)  # the first skipped rows: (row number, why)

    @property
    def skipped_line(self) -> str | None:
        """The skipped rows in one line, with the first few row numbers and why; None if none."""
        return skipped_line(self.skipped, self.rows, self.skips)


SKIP_SHOWN = 5


def skip_reason(fmt: str) -> str:
    """Why a row of this format is empty after formatting (and so skipped)."""
    return {
        "text": "empty text",
        "alpaca": "no instruction or no output",
        "prompt_completion": "empty completion",
        "prompt_only": "empty prompt",
    }.get(fmt, "no assistant reply")


def skipped_line(skipped: int, rows: int, skips: list[tuple[int, str]]) -> str | None:
    if not skipped:
        return None
    reasons: dict[str, list[int]] = {}
    for n, why in skips[:SKIP_SHOWN]:
        reasons.setdefault(why, []).append(n)
    more = ", …" if skipped > len(skips[:SKIP_SHOWN]) else ""
    said = "; ".join(f"{why} (row{'s' if len(ns) > 1 else ''} {', '.join(map(str, ns))}" for why, ns in reasons.items())
    return f"{skipped} of {rows} rows skipped, not trained: {said}{more})"


def scan(
    source: str,
    fmt: str = "auto",
    limit: int | None = None,
    count: Callable[[list[str]], list[int]] | None = None,
    render: Callable[[str, dict[str, Any], str], str | None] | None = None,
    columns: str = "",
    method: str | None = None,
) -> ScanReport:
    """Read and check every row (or the first `limit`). `count` measures rows in tokens, a batch at a
    time, as `render` writes them out (default: plainly, as the sample is). Data another training
    method trains than `method` is refused (None: the inspector's and the counter's reading, any
    method's data). Raises DatasetError."""
    if not source:
        raise DatasetError("--dataset: give a dataset file, directory or Hub name")
    path = resolve_source(source)
    if path is None:
        return ScanReport(source, fmt, hub=True)
    try:
        column_map(columns)
    except ValueError as e:
        raise DatasetError(f"--columns: {e}") from None
    try:
        return scan_rows(str(path), iter_rows(path, columns), fmt, limit, count, render, columns, method)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from None


def scan_rows(
    source: str,
    rows: Iterable[tuple[str, dict[str, Any]]],
    fmt: str = "auto",
    limit: int | None = None,
    count: Callable[[list[str]], list[int]] | None = None,
    render: Callable[[str, dict[str, Any], str], str | None] | None = None,
    columns: str = "",
    method: str | None = None,
) -> ScanReport:
    """scan() over rows already read, (where, row) with columns mapped: a file's, or a Hub dataset's."""
    report = ScanReport(source, fmt)
    batch: list[str] = []
    mapping = column_map(columns)
    for where, row in rows:
        if report.rows == 0:
            missing = {column for column, target in mapping.items() if target not in row}
            if missing:
                raise DatasetError(f"{where}: --columns names {sorted(missing)}, not among the file's columns")
            found = set(row)
            report.columns = sorted(found)
            if fmt == "auto":
                detected = detect_format(found, row)
                if detected is None:
                    from .meaning import refusal

                    raise refusal("messages", row, where) or DatasetError(
                        f"{where}: no recognised fields; found columns {sorted(found)}; "
                        f"accepted formats: {ACCEPTED}; or map yours, e.g. --columns prompt=question,completion=answer"
                    )
                report.format = detected
            elif not REQUIRED[fmt] <= found:
                raise DatasetError(
                    f"{where}: format {fmt} needs {sorted(REQUIRED[fmt])}; found columns {sorted(found)}"
                )
            from .meaning import wrong_method

            mismatch = wrong_method(where, report.format, method) if method else None
            if mismatch:
                raise mismatch
        report.rows += 1
        from .meaning import refusal

        refused = refusal(report.format, row, where)
        if refused:
            raise refused
        text = plain_render(report.format, row, where)
        if text is None:
            report.skipped += 1
            if len(report.skips) < SKIP_SHOWN:
                report.skips.append((report.rows, skip_reason(report.format)))
        else:
            report.usable += 1
            if count is not None:
                batch.append(text if render is None else render(report.format, row, where) or "")
                if len(batch) == 512:
                    report.tokens += count(batch)
                    batch.clear()
            if not report.sample:
                report.sample = text
        if limit and report.rows >= limit:
            break
    if report.rows == 0:
        raise DatasetError(f"{source}: the dataset is empty")
    if report.usable == 0:
        raise DatasetError(f"{source}: all {report.rows} rows are empty after formatting as {report.format}")
    if batch and count is not None:
        report.tokens += count(batch)
    return report
