"""See what will be trained: a row exactly as the trainer gets it, tokenized by the base model's own
tokenizer with the chosen template (encode.py, the engine's path), the trained tokens apart from
the masked ones (label -100), special tokens visible, the cut at max-seq-length, and what looks
wrong. Pure: the `tokenizers` library and jinja2, no torch; the app runs it in a process of its
own (`main` below), `model-garden inspect` in its own."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from .encode import IGNORE, Coder, Encoded, Rendered, encode_rows, render_preference, render_row, tokenizers_coder
from .inspect_pairs import Section, pair_header, pair_warnings, sections
from .pairs import PREFERENCE_FORMATS
from .scan import DatasetError, iter_rows, resolve_source, scan
from .templates import render_chat, saved_template, special_tokens, template_for
from .tokens import load_tokenizer, masked

LIMIT = 10_000  # rows read for the file's figures


@dataclass
class Piece:
    text: str
    trained: bool
    special: bool
    cut: bool  # past max-seq-length: the trainer never sees it
    id: int


@dataclass
class RowView:
    number: int  # the row in the file, from 1
    where: str
    all_ids: list[int]
    all_trained: list[int]
    max_seq_length: int
    pieces: list[Piece] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)  # preference rows: the prompt, then each reply
    extras: dict[str, str] = field(default_factory=dict)  # prompt-only rows: the columns the rewards get

    @property
    def ids(self) -> list[int]:
        return self.all_ids[: self.max_seq_length]

    @property
    def labels(self) -> list[int]:
        return [i if t else IGNORE for i, t in zip(self.ids, self.all_trained)]

    @property
    def trained(self) -> int:
        return sum(self.all_trained[: self.max_seq_length])

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "trained": self.trained}


@dataclass
class FileView:
    source: str
    format: str
    rows: list[RowView]
    max_seq_length: int
    masked: bool  # the prompt is left out of the loss
    read: int  # rows read (at most LIMIT)
    skipped: str | None  # the skipped rows, said
    warnings: list[str]  # about the template and the tokenizer, once for the file

    @property
    def share(self) -> float:
        """The trained share of the tokens the trainer sees, over the rows read."""
        seen = sum(len(r.ids) for r in self.rows)
        return sum(r.trained for r in self.rows) / seen if seen else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows": len(self.rows),
            "read": self.read,
            "max_seq_length": self.max_seq_length,
            "masked": self.masked,
            "share": self.share,
            "skipped": self.skipped,
            "warnings": self.warnings,
        }


def _stop_token(coder: Coder, specials: set[str]) -> str | None:
    """The special token the template writes right after a reply (its stop token), if any."""
    if coder.template is None:
        return None
    marker = "\x00reply\x00"
    try:
        text = render_chat(
            coder.template,
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
            coder.specials,
        )
    except Exception:
        return None
    after = text[text.find(marker) + len(marker) :] if marker in text else ""
    found = [(after.find(s), s) for s in specials if s and s in after]
    return min(found)[1] if found else None


def inspect_rows(
    source: str,
    fmt: str,
    base_model: str,
    chat_template: str,
    max_seq_length: int,
    responses_only: bool,
    columns: str = "",
    limit: int = LIMIT,
    max_prompt_length: int = 0,
) -> FileView:
    """Every usable row of the first `limit`, as the trainer gets it. Raises DatasetError."""
    path = resolve_source(source)
    if path is None:
        raise DatasetError(f"{source}: a Hub dataset; inspect a local file")
    report = scan(source, fmt, limit=limit, columns=columns)
    found = load_tokenizer(base_model)
    if found is None:
        raise DatasetError(
            f"{base_model}: its tokenizer is not on this machine (a local directory or the Hugging Face cache); "
            "the inspector shows the model's own tokens"
        )
    tok, directory = found
    specials = special_tokens(directory)
    template = template_for(report.format, chat_template, saved_template(directory), base_model)
    coder = tokenizers_coder(tok, template, specials)
    special_ids = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    special_texts = {tok.id_to_token(i) for i in special_ids}
    prompt_masked = masked(report.format, responses_only)
    eos = specials.get("eos_token", "")
    stop = _stop_token(coder, special_texts)
    stops = {tok.token_to_id(s) for s in (eos, stop) if s} - {None}
    if report.format in PREFERENCE_FORMATS:
        rows = _preference_rows(path, report.format, columns, limit, coder, (max_prompt_length, max_seq_length),
                                partial(_token_pieces, special_ids=special_ids, tok=tok), (stops, eos))  # fmt: skip
        return FileView(
            report.source, report.format, rows, max_seq_length, True, min(report.rows, limit), report.skipped_line, []
        )
    rendered: list[tuple[int, str, Rendered]] = []
    extras: dict[int, dict[str, str]] = {}
    for n, (where, row) in enumerate(iter_rows(path, columns), 1):
        if n > limit:
            break
        done = render_row(report.format, row, where, coder)
        if done is not None:
            rendered.append((n, where, done))
            if report.format == "prompt_only":
                extras[n] = {k: _short(v) for k, v in row.items() if k != "prompt"}
    encoded = encode_rows([r for _, _, r in rendered], coder)
    warnings = []
    if stop and eos and stop != eos:
        warnings.append(
            f"the chat template ends a reply with {stop}, the tokenizer's EOS is {eos}: generation (and a GGUF "
            "or Ollama export) may not stop at the reply's end"
        )
    rows = []
    for (n, where, r), e in zip(rendered, encoded):
        view = RowView(n, where, e.ids, e.trained(prompt_masked), max_seq_length)
        view.pieces = _pieces(r, e, view, special_ids, tok)
        if report.format == "prompt_only":  # nothing of it is trained: the completions are sampled
            view.extras = extras[n]
        else:
            view.warnings = _row_warnings(r, e, view, stops, eos)
        rows.append(view)
    return FileView(
        report.source, report.format, rows, max_seq_length, prompt_masked, min(report.rows, limit),
        report.skipped_line, warnings,
    )  # fmt: skip


def _short(value: Any, cut: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= cut else text[:cut] + "…"


def _pieces(r: Rendered, e: Encoded, view: RowView, special_ids: set[int], tok: Any) -> list[Piece]:
    cut = [k >= view.max_seq_length for k in range(len(e.ids))]
    return _token_pieces(r.text, e, range(len(e.ids)), view.all_trained, cut, special_ids, tok)


def _token_pieces(
    text: str, e: Encoded, span: range, trained: list[Any], cut: list[bool], special_ids: set[int], tok: Any
) -> list[Piece]:
    """The tokens in `span` as the text each covers (special tokens by name), so the row reads as written."""
    out = []
    cursor = e.offsets[span.start - 1][1] if span.start else 0
    for j, k in enumerate(span):
        token, (start, end) = e.ids[k], e.offsets[k]
        piece = text[max(start, cursor) : end]
        cursor = max(cursor, end)
        out.append(Piece(piece or tok.id_to_token(token) or "", bool(trained[j]), token in special_ids, cut[j], token))
    return out


def _preference_rows(
    path: Any, fmt: str, columns: str, limit: int, coder: Coder, lengths: tuple[int, int], piece: Any,
    stops: tuple[set[int], str],
) -> list[RowView]:  # fmt: skip
    """Preference and KTO rows: `lengths` is (max_prompt_length, max_seq_length)."""
    rows = []
    for n, (where, row) in enumerate(iter_rows(path, columns), 1):
        if n > limit:
            break
        pref = render_preference(fmt, row, where, coder)
        if pref is None:
            continue
        parts = sections(pref, coder, *lengths, piece)
        ids = [p.id for p in parts[0].pieces + parts[1].pieces]
        trained = [int(p.trained) for p in parts[0].pieces + parts[1].pieces]
        view = RowView(n, where, ids, trained, lengths[1], sections=parts)
        view.warnings = pair_warnings(parts, *stops)
        rows.append(view)
    return rows


def _row_warnings(r: Rendered, e: Encoded, view: RowView, stops: set[int], eos: str) -> list[str]:
    said = []
    if not view.trained:
        said.append("every label is -100: this row trains nothing (the trainer drops it)")
    runs, run = [], []  # the trained stretches (an assistant turn each, for chat rows)
    for token, t in zip(e.ids, view.all_trained):
        if t:
            run.append(token)
        elif run:
            runs.append(run)
            run = []
    runs += [run] if run else []
    if stops and any(not stops & set(run) for run in runs):
        said.append(f"a trained reply ends without EOS ({eos}): the model won't learn to stop")
    for m in r.messages or ():
        if m["role"] == "system" and m["content"].strip() and m["content"] not in r.text:
            said.append("the chat template dropped this row's system prompt")
            break
    return said


def pieces_text(pieces: list[dict[str, Any]], marks: bool) -> str:
    """The row as plain text; with `marks`, trained stretches in ⟦ ⟧ and the cut as ✂."""
    head = next((k for k, p in enumerate(pieces) if not p["cut"]), len(pieces))  # a prompt's start, cut off
    out = ["".join(p["text"] for p in pieces[:head])]
    if head:
        out.append("\n✂ max-prompt-length: the trainer sees nothing above\n")
    trained, cut = False, False
    for p in pieces[head:]:
        if p["cut"] and not cut:
            out.append("⟧" if trained and marks else "")
            out.append("\n✂ max-seq-length: the trainer sees nothing below\n")
            cut, trained = True, False
        if marks and not cut and p["trained"] != trained:
            out.append("⟦" if p["trained"] else "⟧")
            trained = p["trained"]
        out.append(p["text"])
    if trained and marks:
        out.append("⟧")
    return "".join(out)


def ids_table(pieces: list[dict[str, Any]]) -> list[str]:
    """One line per token: position, id, label, the text it covers."""
    return [
        f"{k:>5} {p['id']:>7} {'-100' if not p['trained'] or p['cut'] else p['id']:>7}  {json.dumps(p['text'])}"
        + ("  (cut)" if p["cut"] else "")
        for k, p in enumerate(pieces)
    ]


def header(summary: dict[str, Any], row: dict[str, Any], index: int) -> str:
    """One line: which row, its tokens and trained share, and the file's."""
    if row.get("sections"):
        return pair_header(summary, row, index)
    seen = min(len(row["all_ids"]), row["max_seq_length"])
    if summary["format"] == "prompt_only":
        given = ", ".join(f"{k}={v}" for k, v in row.get("extras", {}).items()) or "the prompt only"
        return (
            f"row {row['number']} ({index + 1} of {summary['rows']}) · prompt_only · {len(row['all_ids'])} prompt "
            f"tokens · the completions are sampled, none trained from the file · rewards get: {given}"
        )
    cut = len(row["all_ids"]) - seen
    share = row["trained"] / seen if seen else 0.0
    return (
        f"row {row['number']} ({index + 1} of {summary['rows']}) · {summary['format']} · {seen} tokens"
        + (f" (+{cut} cut)" if cut else "")
        + f" · {row['trained']} trained ({share:.0%}) · file {summary['share']:.0%} trained"
    )


def main(argv: list[str]) -> None:
    """`python -m mgtui.data.inspect '<json args>'`: the inspector's process for the app. Writes
    {"ready": summary} (or {"refused": message}), then answers each stdin line {"row": i} (an
    index among the usable rows; {"number": n} asks by the row's number in the file) with
    {"row": view, "index": i}."""

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        view = inspect_rows(**json.loads(argv[0]))
    except DatasetError as e:
        say({"refused": str(e)})
        return
    say({"ready": view.summary()})
    for line in sys.stdin:
        try:
            asked = json.loads(line)
            if "number" in asked:  # a row's number in the file: the first usable row from there
                n = int(asked["number"])
                i = next((k for k, r in enumerate(view.rows) if r.number >= n), len(view.rows) - 1)
            else:
                i = int(asked["row"])
        except (ValueError, KeyError, TypeError):
            continue
        i = max(0, min(i, len(view.rows) - 1))
        say({"row": view.rows[i].as_json(), "index": i})


if __name__ == "__main__":
    main(sys.argv[1:])
