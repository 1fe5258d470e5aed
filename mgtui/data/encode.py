"""The one path from a row to token ids and labels. The engine, the form's count, the pre-flight,
`--dry-run` and the inspector all call `render_row` and `encode_rows`; only the tokenizer behind
`Coder.encode` differs (transformers' in the engine, the `tokenizers` library elsewhere; both run
the same tokenizer.json). Pure: jinja2 through templates.py, and no tokenizer import here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .scan import (
    CHAT_FORMATS,
    SFT_FORMATS,
    DatasetError,
    alpaca_parts,
    completion_start,
    dropped_tool_calls,
    plain_render,
    prompt_completion_parts,
    to_messages,
    tools_of,
)
from .templates import refused, render_chat

IGNORE = -100  # the label of a token the loss leaves out, as transformers and TRL write it

Offsets = list[tuple[int, int]]
Encode = Callable[[list[str], bool], list[tuple[list[int], Offsets]]]  # (texts, add special tokens)


@dataclass(frozen=True)
class Coder:
    """What turns rows into tokens: the chat template (chat formats), the tokenizer's special
    tokens as templates name them (bos_token, eos_token, ...), and the tokenizer."""

    template: str | None
    specials: dict[str, str]
    encode: Encode

    @property
    def eos(self) -> str:
        return self.specials.get("eos_token", "")


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: list[tuple[int, int]]  # the characters trained when the prompt is masked
    special: bool  # the tokenizer adds its special tokens (not for chat: the template writes them)
    messages: list[dict[str, Any]] | None = None  # chat rows, as the template got them


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    mask: list[int]  # 1 where a token is the response's (trained when the prompt is masked)
    offsets: Offsets

    def trained(self, prompt_masked: bool) -> list[int]:
        """1 per token the loss covers, before any cut."""
        return self.mask if prompt_masked else [1] * len(self.ids)

    def labels(self, max_seq_length: int, prompt_masked: bool) -> list[int]:
        """The labels the trainer computes its loss on: the ids, -100 where masked, cut at max_seq_length."""
        keep = self.trained(prompt_masked)
        return [i if k else IGNORE for i, k in zip(self.ids[:max_seq_length], keep[:max_seq_length])]

    @property
    def prompt_tokens(self) -> int:
        """Tokens before the first one of the response."""
        return self.mask.index(1) if 1 in self.mask else len(self.ids)


def chat_spans(
    msgs: list[dict[str, Any]], render: Callable[[list[dict[str, Any]], bool], str], first: int = 0
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


def render_row(fmt: str, row: dict[str, Any], where: str, coder: Coder) -> Rendered | None:
    """A row as the trainer gets it, in text, with what of it is the response; None for a row that
    is empty after formatting (skipped). Raises DatasetError for a row the template refuses."""
    eos = coder.eos
    if fmt == "prompt_only":
        return render_prompt(row, where, coder)
    if fmt not in SFT_FORMATS:  # a preference row: its longest sequence, as the trainer's cut sees it
        pref = render_preference(fmt, row, where, coder)
        return None if pref is None else max(pref.replies, key=lambda r: len(r.text))
    if fmt == "text":
        text = plain_render(fmt, row, where)
        return None if text is None else Rendered(text + eos, [(0, len(text) + len(eos))], True)
    if fmt in ("alpaca", "prompt_completion"):
        parts = alpaca_parts(row, where) if fmt == "alpaca" else prompt_completion_parts(row, where)
        if parts is None:
            return None
        text = parts[0] + parts[1] + eos
        return Rendered(text, [(len(parts[0]), len(text))], True)
    if fmt not in CHAT_FORMATS or coder.template is None:
        raise DatasetError(f"{where}: no chat template to render a {fmt} row")
    msgs = to_messages(fmt, row, where)
    if msgs is None:
        return None
    tools = tools_of(row, where)
    template = coder.template

    def render(messages: list[dict[str, Any]], gen: bool) -> str:
        return render_chat(template, messages, coder.specials, tools, generation_prompt=gen)

    try:
        text, spans = chat_spans(msgs, render, completion_start(fmt, row, where))
    except DatasetError:
        raise
    except Exception as e:  # the template's own raise_exception, or any error inside it
        raise refused(where, e) from None
    dropped = dropped_tool_calls(msgs, text, where)
    if dropped:
        raise dropped
    return Rendered(text, spans, False, msgs)


def render_prompt(row: dict[str, Any], where: str, coder: Coder) -> Rendered | None:
    """A prompt-only row (GRPO) as the trainer's generation starts from it: chat turns through the
    template with its generation prompt (trl/trainer/grpo_trainer.py, _tokenize_prompts:
    apply_chat_template(add_generation_prompt=True)), text as it is, the tokenizer adding its special
    tokens (the same, `processing_class(text=prompts)`). Nothing in it is trained: the completions are
    sampled, and their rewards decide what is learnt."""
    from .prompt_rows import prompt_row

    p = prompt_row(row, where)
    if p is None:
        return None
    if isinstance(p, str):
        return Rendered(p, [], True)
    if coder.template is None:
        raise DatasetError(f"{where}: no chat template to render a prompt_only row")
    try:
        text = render_chat(coder.template, p, coder.specials, None, generation_prompt=True)
    except Exception as e:  # the template's own raise_exception, or any error inside it
        raise refused(where, e) from None
    return Rendered(text, [], False, p)


def encode_rows(rendered: Sequence[Rendered], coder: Coder) -> list[Encoded]:
    """Token ids, with the response's tokens marked, for rows rendered alike (one batch per kind)."""
    out: list[Encoded | None] = [None] * len(rendered)
    for special in (True, False):
        picked = [i for i, r in enumerate(rendered) if r.special is special]
        if not picked:
            continue
        for i, (ids, offsets) in zip(picked, coder.encode([rendered[i].text for i in picked], special)):
            spans = rendered[i].spans
            mask = [int(end > start and any(a <= start < b for a, b in spans)) for start, end in offsets]
            out[i] = Encoded(list(ids), mask, [tuple(o) for o in offsets])  # type: ignore[misc]
    return [e for e in out if e is not None]


def encode_row(fmt: str, row: dict[str, Any], where: str, coder: Coder) -> tuple[Rendered, Encoded] | None:
    rendered = render_row(fmt, row, where, coder)
    return None if rendered is None else (rendered, encode_rows([rendered], coder)[0])


def tokenizers_coder(tokenizer: Any, template: str | None, specials: dict[str, str]) -> Coder:
    """A Coder over a `tokenizers.Tokenizer` (the form, the pre-flight, the inspector: no torch)."""

    def encode(texts: list[str], special: bool) -> list[tuple[list[int], Offsets]]:
        return [(e.ids, e.offsets) for e in tokenizer.encode_batch(texts, add_special_tokens=special)]

    return Coder(template, specials, encode)


def transformers_coder(tokenizer: Any, template: str | None) -> Coder:
    """A Coder over a transformers tokenizer (the engine's): its special tokens as templates see them."""
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}

    def encode(texts: list[str], special: bool) -> list[tuple[list[int], Offsets]]:
        enc = tokenizer(texts, add_special_tokens=special, return_offsets_mapping=True)
        return list(zip(enc["input_ids"], enc["offset_mapping"]))

    return Coder(template, specials, encode)


@dataclass(frozen=True)
class RenderedPreference:
    """A preference or KTO row in text: each reply as a whole sequence (the prompt, then the reply),
    its span the reply, so that encode_rows marks the reply's tokens as for SFT."""

    prompt: str
    replies: tuple[Rendered, ...]  # chosen and rejected, or KTO's one reply
    label: bool | None


@dataclass(frozen=True)
class PreferenceIds:
    """Token ids as TRL's preference collators take them: the prompt once, then each reply."""

    prompt: list[int]
    replies: list[list[int]]
    label: bool | None
    prompt_text: str
    reply_texts: list[str]

    def cut_prompt(self, max_prompt_length: int) -> PreferenceIds:
        """Keep the prompt's last tokens (its end leads into the reply); 0 keeps it whole."""
        if not max_prompt_length or len(self.prompt) <= max_prompt_length:
            return self
        return PreferenceIds(
            self.prompt[-max_prompt_length:], self.replies, self.label, self.prompt_text, self.reply_texts
        )


def render_preference(fmt: str, row: dict[str, Any], where: str, coder: Coder) -> RenderedPreference | None:
    """The preference counterpart of render_row: the chat template (or the Alpaca prompt, or the
    text) renders the prompt and each reply; None for a row with an empty reply (skipped)."""
    from .pairs import preference_row

    pref = preference_row(fmt, row, where)
    if pref is None:
        return None
    if isinstance(pref.prompt, str):
        prompt = pref.prompt
        replies = []
        for reply in pref.replies:
            text = prompt + str(reply) + coder.eos
            replies.append(Rendered(text, [(len(prompt), len(text))], True))
        return RenderedPreference(prompt, tuple(replies), pref.label)
    if coder.template is None:
        raise DatasetError(f"{where}: no chat template to render a {fmt} row")
    template = coder.template
    head: list[dict[str, Any]] = pref.prompt

    def render(messages: list[dict[str, Any]], gen: bool) -> str:
        return render_chat(template, messages, coder.specials, None, generation_prompt=gen)

    try:
        prompt = render(head, True)
        rendered = []
        for reply in pref.replies:
            assert isinstance(reply, list)
            text, spans = chat_spans(head + reply, render, len(head))
            span = [(spans[0][0], len(text))] if spans else []  # from the reply's first turn to its end
            rendered.append(Rendered(text, span, False, head + reply))
    except DatasetError:
        raise
    except Exception as e:  # the template's own raise_exception, or any error inside it
        raise refused(where, e) from None
    return RenderedPreference(prompt, tuple(rendered), pref.label)


def encode_preferences(rendered: Sequence[RenderedPreference], coder: Coder) -> list[PreferenceIds]:
    """Ids of the prompt and of each reply. The prompt ends where the first reply's marked tokens
    begin, the earlier of the replies' starts (as TRL's DPO tokenizer cuts where prompt and
    prompt+reply part: trl/trainer/dpo_trainer.py, tokenize_fn's common_prefix_length)."""
    flat = [r for pref in rendered for r in pref.replies]
    encoded = encode_rows(flat, coder)
    out: list[PreferenceIds] = []
    i = 0
    for pref in rendered:
        mine = encoded[i : i + len(pref.replies)]
        i += len(pref.replies)
        cut = min(e.prompt_tokens for e in mine)
        texts = [r.text[_char_at(e, cut, r.text) :] for r, e in zip(pref.replies, mine)]
        head = pref.replies[0].text[: _char_at(mine[0], cut, pref.replies[0].text)]
        out.append(PreferenceIds(mine[0].ids[:cut], [e.ids[cut:] for e in mine], pref.label, head, texts))
    return out


def _char_at(enc: Encoded, token: int, text: str) -> int:
    """Where token `token` starts in the text (the text's end past the last token)."""
    return enc.offsets[token][0] if token < len(enc.offsets) else len(text)
