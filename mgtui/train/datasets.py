"""Turn the user's rows into tokenized training data, with prompt masks and a length report.

Rows are read and checked by data/scan.py (no `datasets` needed); here they are rendered with
the tokenizer's chat template (or a named one), tokenized, and masked for
--train-on-responses-only. TRL's SFTTrainer takes the result as a processed dataset
(`input_ids`, plus `assistant_masks` from which it builds the labels).
"""

from __future__ import annotations

from typing import Any, Callable

from ..data.scan import (
    CHAT_FORMATS,
    DatasetError,
    alpaca_parts,
    column_map,
    completion_start,
    dropped_tool_calls,
    hub_dataset,
    iter_rows,
    prompt_completion_parts,
    rename,
    resolve_source,
    scan,
    scan_rows,
    to_messages,
    tools_of,
)
from ..data.templates import pick_template, refused
from ..data.tokens import length_stats, masked, nothing_learned, skipped_warning
from ..settings import Resolved


def load_rows(res: Resolved) -> tuple[str, list[dict[str, Any]]]:
    """(format, rows), checked row by row with the same errors for a file and a Hub dataset. Local
    sources through data/scan.py; Hub names ('org/name' or 'org/name:subset') through `datasets`."""
    source, fmt = res["dataset"], res["dataset_format"]
    path = resolve_source(source)
    if path is not None:
        report = scan(source, fmt, columns=res["columns"])  # every row checked, each error with its line
        return report.format, [row for _, row in iter_rows(path, res["columns"])]
    from datasets import load_dataset

    repo, subset = hub_dataset(source)
    from .download import DownloadStopped

    try:
        ds = load_dataset(repo, subset, split=res["dataset_split"])
    except DownloadStopped:
        raise  # a stop asked for during the download, not a problem with the data
    except Exception as e:
        raise DatasetError(f"{source}: cannot load from the Hub: {hub_problem(e)}") from None
    mapping = column_map(res["columns"])
    rows = [rename(row, mapping) for row in ds]
    where = f"{source} ({res['dataset_split']})"
    report = scan_rows(
        where, ((f"{where}: row {n}", row) for n, row in enumerate(rows, 1)), fmt, columns=res["columns"]
    )
    return report.format, rows


def hub_problem(error: Exception) -> str:
    """The first line of what `datasets` said, which names a missing subset or split with the ones there are."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def chat_template(res: Resolved, tokenizer) -> str:
    return pick_template(res["chat_template"], getattr(tokenizer, "chat_template", None), res["base_model"])


def _chat_spans(
    msgs: list[dict[str, Any]], render: Callable[..., str], first: int = 0
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant's turns from turn
    `first` on, found by rendering each prefix (a template that renders prefixes consistently, as
    all common ones do)."""
    full = render(msgs, False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, m in enumerate(msgs):
        if m["role"] != "assistant" or i < first:
            continue
        before, upto = render(msgs[:i], True), render(msgs[: i + 1], False)
        if full.startswith(upto) and upto.startswith(before):
            spans.append((len(before), len(upto)))
        elif m["content"]:  # fall back to locating the reply's text
            start = full.find(m["content"], cursor)
            if start >= 0:
                spans.append((start, start + len(m["content"])))
        cursor = spans[-1][1] if spans else cursor
    return full, spans


def tokenize_rows(
    res: Resolved,
    fmt: str,
    rows: list[dict[str, Any]],
    tokenizer,
    progress: Callable[[float], None] = lambda p: None,
    warn: Callable[[str], None] = lambda message: None,
) -> tuple[list[dict[str, list[int]]], int]:
    """Tokenized examples and how many rows were empty after formatting."""
    masks = masked(fmt, res["train_on_responses_only"])
    template = chat_template(res, tokenizer) if fmt in CHAT_FORMATS else None
    eos = tokenizer.eos_token or ""

    def renderer(tools: list[dict[str, Any]] | None) -> Callable[..., str]:
        def render(msgs: list[dict[str, Any]], gen: bool) -> str:
            return tokenizer.apply_chat_template(
                msgs, tools=tools, tokenize=False, add_generation_prompt=gen, chat_template=template
            )

        return render

    out: list[dict[str, list[int]]] = []
    skipped = 0
    nothing_to_learn: list[int] = []  # prompt lengths of rows whose response starts after max_seq_length
    step = max(1, len(rows) // 20)
    for n, row in enumerate(rows):
        where = f"{res['dataset']}: row {n + 1}"
        if fmt == "text":
            text = row.get("text") or ""
            text, spans = (text + eos if text.strip() else ""), [(0, len(text) + len(eos))]
        elif fmt in ("alpaca", "prompt_completion"):
            parts = alpaca_parts(row, where) if fmt == "alpaca" else prompt_completion_parts(row, where)
            text, spans = ("", []) if parts is None else (parts[0] + parts[1] + eos, [(len(parts[0]), 10**12)])
        else:
            msgs = to_messages(fmt, row, where)
            try:
                first = completion_start(fmt, row, where)
                text, spans = ("", []) if msgs is None else _chat_spans(msgs, renderer(tools_of(row, where)), first)
            except DatasetError:
                raise
            except Exception as e:  # a template that rejects the row: said as the form says it
                raise refused(where, e) from None
            dropped = dropped_tool_calls(msgs or [], text, where)
            if dropped:
                raise dropped
        if not text:
            skipped += 1
            continue
        enc = tokenizer(text, add_special_tokens=fmt not in CHAT_FORMATS, return_offsets_mapping=masks)
        example = {"input_ids": enc["input_ids"]}
        if masks:
            example["assistant_masks"] = [
                int(any(a <= start < b for a, b in spans)) if end > start else 0 for start, end in enc["offset_mapping"]
            ]
            if not any(example["assistant_masks"][: res["max_seq_length"]]):  # truncation leaves no target
                first = (
                    example["assistant_masks"].index(1) if 1 in example["assistant_masks"] else len(enc["input_ids"])
                )
                nothing_to_learn.append(first)
                continue
        out.append(example)
        if n % step == 0:
            progress(n / len(rows))
    if nothing_to_learn and not out:
        raise nothing_learned(res["dataset"], res["max_seq_length"], min(nothing_to_learn))
    if not out:
        raise DatasetError(f"{res['dataset']}: all {len(rows)} rows are empty after formatting as {fmt}")
    if nothing_to_learn:
        warn(skipped_warning(len(nothing_to_learn), len(rows), res["max_seq_length"]))
    return out, skipped


def build_datasets(res: Resolved, tokenizer, progress: Callable[[float], None]):
    """(train Dataset, eval Dataset or None, report dict, warnings)."""
    from datasets import Dataset

    warnings: list[str] = []
    fmt, rows = load_rows(res)
    if res["train_on_responses_only"] and fmt == "text":
        warnings.append("train_on_responses_only: plain text has no prompt to mask; training on every token")
    examples, skipped = tokenize_rows(res, fmt, rows, tokenizer, progress, warnings.append)
    report = {
        "rows": len(rows),
        "format": fmt,
        "skipped_empty": skipped,
        **length_stats([len(e["input_ids"]) for e in examples], res["max_seq_length"]),
    }
    if report["truncated"]:
        warnings.append(
            f"{report['truncated']} of {len(examples)} rows are longer than max_seq_length "
            f"{res['max_seq_length']} and will be truncated"
        )
    ds = Dataset.from_list(examples)
    eval_ds = None
    if res["eval_split"] > 0:
        if len(ds) < 4:
            warnings.append("eval_split: too few rows to hold some out; evaluation is off")
        else:
            split = ds.train_test_split(test_size=res["eval_split"], seed=res["seed"])
            ds, eval_ds = split["train"], split["test"]
    report["train_rows"] = len(ds)
    report["eval_rows"] = len(eval_ds) if eval_ds is not None else 0
    return ds, eval_ds, report, warnings
