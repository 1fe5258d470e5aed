"""A GRPO run's latest sampled completions with their rewards: each sample's prompt (one short
line), its completion, the total reward, each function's reward and the advantage. Focusable and
scrolled by keyboard (↑↓, pgup/pgdn, home/end; n/p: the next or previous sample); `show` replaces
the samples as a new `completions` event arrives, from the top."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from ...runs.view import Sample, samples


def num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def head_text(event: dict[str, Any] | None, count: int) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if not event:
        t.append("no completions sampled yet", style="dim")
        return t
    t.append(f"completions at step {event.get('step', '?')}", style="bold")
    t.append(f" · {count} samples · ↑↓ scroll · n/p next/previous", style="dim")
    return t


def sample_text(i: int, s: Sample) -> Group:
    """#i, the reward (green above the group's mean, red below: the advantage's sign), the
    advantage and each function's reward; the prompt on one dim line, cut at the panel's width;
    the completion as written."""
    head = Text()
    tone = "green" if (s.advantage or 0) > 0 else "red" if (s.advantage or 0) < 0 else ""
    head.append(f"#{i} ", style="bold")
    head.append(f"reward {num(s.reward)}", style=f"bold {tone}")
    head.append(f"  adv {num(s.advantage, signed=True)}", style=tone)
    if s.rewards:
        head.append("  " + " · ".join(f"{name} {num(v)}" for name, v in s.rewards.items()), style="dim")
    prompt = Text(f"› {s.prompt}", style="dim", no_wrap=True, overflow="ellipsis")
    body = s.completion.strip()
    return Group(head, prompt, Text(body) if body else Text("(empty)", style="dim italic"))


class CompletionsPanel(VerticalScroll):
    """The latest `completions` event's samples, one card each under a head line."""

    DEFAULT_CSS = """
    CompletionsPanel { height: 1fr; scrollbar-size-vertical: 1; }
    CompletionsPanel > #cmphead { height: 1; dock: top; }
    CompletionsPanel > .sample { height: auto; margin-top: 1; padding-right: 1; }
    CompletionsPanel > .sample.-unused { display: none; }
    """
    BINDINGS = [
        Binding("n", "next_sample", "Next sample", show=False, tooltip="the completions: scroll to the next sample"),
        Binding("p", "previous_sample", "Previous", show=False, tooltip="the completions: the previous sample"),
    ]

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.event: dict[str, Any] | None = None
        self.samples: list[Sample] = []

    def compose(self) -> ComposeResult:
        yield Static(head_text(None, 0), id="cmphead")

    def allow_focus(self) -> bool:
        """Hidden (display: none), it is no stop for tab nor for the screen's first focus."""
        return self.display and super().allow_focus()

    @property
    def cards(self) -> list[Static]:
        return list(self.query(".sample").results(Static))

    def show(self, event: dict[str, Any] | None) -> None:
        """The samples of `event` (the latest `completions` event): cards are reused, so a live run
        swaps texts in place rather than rebuilding the panel."""
        if event is self.event:
            return
        self.event = event
        self.samples = samples(event)
        self.query_one("#cmphead", Static).update(head_text(event, len(self.samples)))
        cards = self.cards
        new = [Static(classes="sample") for _ in range(len(self.samples) - len(cards))]
        for i, card in enumerate(cards + new):
            if i < len(self.samples):
                card.update(sample_text(i + 1, self.samples[i]))
            card.set_class(i >= len(self.samples), "-unused")
        if new:
            self.mount_all(new)
        self.scroll_home(animate=False)  # new samples: the offset into the old ones means nothing now

    def visible_cards(self) -> list[Static]:
        return [c for c in self.cards if not c.has_class("-unused")]

    @staticmethod
    def top(card: Static) -> int:
        """The scroll offset that puts a card's first line right under the docked head line."""
        return card.virtual_region.y - 1

    def action_next_sample(self) -> None:
        """The next sample's first line at the top (the first's, from the top of the panel)."""
        for card in self.visible_cards():
            if self.top(card) > self.scroll_y + 1:
                self.scroll_to(y=self.top(card), animate=False)
                return
        self.scroll_end(animate=False)

    def action_previous_sample(self) -> None:
        for card in reversed(self.visible_cards()):
            if self.top(card) < self.scroll_y:
                self.scroll_to(y=self.top(card), animate=False)
                return
        self.scroll_home(animate=False)
