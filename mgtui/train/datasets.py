"""Turn the user's rows into tokenized training data, with prompt masks and a length report.

Rows are read and checked by data/scan.py (no `datasets` needed); here they are rendered with
the tokenizer's chat template (or a named one), tokenized, and masked for
--train-on-responses-only, by data/encode.py, the path the form and the inspector share. TRL's SFTTrainer takes the result as a processed dataset
(`input_ids`, plus `assistant_masks` from which it builds the labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

from ..data.encode import encode_rows, render_row, transformers_coder
from ..data.scan import (
    CHAT_FORMATS,
    SKIP_SHOWN,
    DatasetError,
    column_map,
    hub_dataset,
    iter_rows,
    rename,
    resolve_source,
    scan,
    scan_rows,
    skip_reason,
    skipped_line,
)
from ..data.templates import pick_template
from ..data.tokens import length_stats, masked, nothing_learned, skipped_warning
from ..settings import Resolved

R = TypeVar("R")


def load_rows(res: Resolved) -> tuple[str, list[dict[str, Any]]]:
    """(format, rows), checked row by row with the same errors for a file and a Hub dataset. Local
    sources through data/scan.py; Hub names ('org/name' or 'org/name:subset') through `datasets`."""
    source, fmt = res["dataset"], res["dataset_format"]
    path = resolve_source(source)
    if path is not None:
        report = scan(
            source, fmt, columns=res["columns"], method=res["method"]
        )  # every row checked, each error with its line
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
        where,
        ((f"{where}: row {n}", row) for n, row in enumerate(rows, 1)),
        fmt,
        columns=res["columns"],
        method=res["method"],
    )
    return report.format, rows


def hub_problem(error: Exception) -> str:
    """The first line of what `datasets` said, which names a missing subset or split with the ones there are."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def chat_template(res: Resolved, tokenizer: Any) -> str:
    return pick_template(res["chat_template"], getattr(tokenizer, "chat_template", None), res["base_model"])


def tokenize_rows(
    res: Resolved,
    fmt: str,
    rows: list[dict[str, Any]],
    tokenizer: Any,
    progress: Callable[[float], None] = lambda p: None,
    warn: Callable[[str], None] = lambda message: None,
) -> tuple[list[dict[str, list[int]]], int]:
    """Tokenized examples and how many rows were empty after formatting, through the one path from a
    row to tokens (data/encode.py) that the form, the pre-flight and the inspector use too."""
    masks = masked(fmt, res["train_on_responses_only"])
    coder = transformers_coder(tokenizer, chat_template(res, tokenizer) if fmt in CHAT_FORMATS else None)
    out: list[dict[str, list[int]]] = []
    skips = Skips(fmt)
    nothing_to_learn: list[int] = []  # prompt lengths of rows whose response starts after max_seq_length
    for start, rendered in rendered_batches(
        rows, lambda row, n: render_row(fmt, row, f"{res['dataset']}: row {n}", coder), skips
    ):
        for enc in encode_rows(rendered, coder):
            example = {"input_ids": enc.ids}
            if masks:
                example["assistant_masks"] = enc.mask
                if not any(enc.mask[: res["max_seq_length"]]):  # truncation leaves no target
                    nothing_to_learn.append(enc.prompt_tokens)
                    continue
            out.append(example)
        progress(min(start + 256, len(rows)) / len(rows))
    if nothing_to_learn and not out:
        raise nothing_learned(res["dataset"], res["max_seq_length"], min(nothing_to_learn))
    if not out:
        raise DatasetError(f"{res['dataset']}: all {len(rows)} rows are empty after formatting as {fmt}")
    said = skips.line(len(rows))
    if said:
        warn(said)
    if nothing_to_learn:
        warn(skipped_warning(len(nothing_to_learn), len(rows), res["max_seq_length"]))
    return out, skips.count


@dataclass
class Skips:
    """Rows a format renders to nothing: how many, and the first few with why."""

    fmt: str
    count: int = 0
    shown: list[tuple[int, str]] = field(default_factory=list)

    def add(self, n: int) -> None:
        self.count += 1
        if len(self.shown) < SKIP_SHOWN:
            self.shown.append((n, skip_reason(self.fmt)))

    def line(self, total: int) -> str | None:
        return skipped_line(self.count, total, self.shown)


def rendered_batches(
    rows: list[dict[str, Any]], render: Callable[[dict[str, Any], int], R | None], skips: Skips, size: int = 256
) -> Iterator[tuple[int, list[R]]]:
    """(start, rendered rows) a batch at a time, the rows rendered to nothing counted in `skips`
    (numbered from 1, as the user's file is)."""
    for start in range(0, len(rows), size):
        batch = []
        for n, row in enumerate(rows[start : start + size], start + 1):
            done = render(row, n)
            if done is None:
                skips.add(n)
            else:
                batch.append(done)
        yield start, batch


def build_datasets(res: Resolved, tokenizer, progress: Callable[[float], None]):
    """(train Dataset, eval Dataset or None, report dict, warnings)."""

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
    ds, eval_ds = held_out(examples, res, report, warnings)
    return ds, eval_ds, report, warnings


def held_out(examples: list[dict[str, Any]], res: Resolved, report: dict[str, Any], warnings: list[str]):
    """(train Dataset, eval Dataset or None): eval_split of the examples held out, for every method;
    the report gets both counts."""
    from datasets import Dataset

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
    return ds, eval_ds
