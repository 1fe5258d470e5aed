"""The inspector for preference and KTO rows: the prompt once, then each reply (chosen beside
rejected, or KTO's reply and its label) as the preference trainers get them, through
encode_preferences (the engine's path). The trainers' loss covers every reply token after the
shared prompt, so that is what is marked trained."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .encode import Coder, Encoded, RenderedPreference, encode_preferences, encode_rows


@dataclass
class Section:
    """A stretch of the row shown apart: the prompt, or one reply."""

    name: str  # prompt, chosen, rejected, or "reply (desirable)" for KTO
    pieces: list[Any]  # inspect.Piece
    trained: int


def sections(
    pref: RenderedPreference, coder: Coder, max_prompt_length: int, max_seq_length: int,
    piece: Callable[..., list[Any]],
) -> list[Section]:  # fmt: skip
    """The prompt and each reply as pieces. `piece(text, ids, offsets, trained, cut)` builds the
    pieces (inspect.py's, so both kinds of row read alike)."""
    ids = encode_preferences([pref], coder)[0]
    encoded: list[Encoded] = encode_rows(pref.replies, coder)  # the same ids, with their offsets
    start = len(ids.prompt)
    kept = len(ids.cut_prompt(max_prompt_length).prompt)
    first = encoded[0]
    prompt_cut = [k < start - kept for k in range(start)]  # cut_prompt keeps the prompt's end
    out = [Section("prompt", piece(pref.replies[0].text, first, range(start), [False] * start, prompt_cut), 0)]
    names = (
        ["chosen", "rejected"] if pref.label is None else [f"reply ({'desirable' if pref.label else 'undesirable'})"]
    )
    for name, r, e in zip(names, pref.replies, encoded):
        span = range(start, len(e.ids))
        cut = [kept + (k - start) >= max_seq_length for k in span]  # prompt and reply share max_seq_length
        trained = [not c for c in cut]
        out.append(Section(name, piece(r.text, e, span, trained, cut), sum(trained)))
    return out


def pair_warnings(parts: list[Section], stops: set[int], eos: str) -> list[str]:
    said = []
    for s in parts[1:]:
        if not s.trained:
            said.append(f"the {s.name} reply is past max-seq-length: nothing of it is trained")
        elif stops and not any(p.id in stops for p in s.pieces if not p.cut):
            said.append(f"the {s.name} reply ends without EOS ({eos}): the model won't learn to stop")
    return said


def pair_header(summary: dict[str, Any], row: dict[str, Any], index: int) -> str:
    """One line: which row, the prompt's tokens and each reply's trained ones."""
    prompt, *replies = row["sections"]
    seen = sum(not p["cut"] for p in prompt["pieces"])
    return f"row {row['number']} ({index + 1} of {summary['rows']}) · {summary['format']} · prompt {seen} tokens · " + (
        " · ".join(f"{s['name']} {s['trained']} trained" for s in replies)
    )
