"""The dataset panel: the chosen data checked and shown at once (format, rows and a sample, or the
problem with its line), then its lengths counted in the base model's own tokens in the background,
against max-seq-length."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import get_current_worker

if TYPE_CHECKING:
    from ...data.scan import ScanReport


def length_stats(tokens: list[int], max_seq_length: int) -> dict:
    from ...data.tokens import length_stats as stats  # the data modules load with the first dataset

    return stats(tokens, max_seq_length)


Key = tuple[str, str, str, str, str, str]  # what a scan depends on: data, format, model, template, column map, method


class DatasetPanel(Static):
    class Changed(Message):
        """What the panel knows of the data changed (the form shows the truncation by its field)."""

    def __init__(self, scan_limit: int, **kw) -> None:
        super().__init__("", **kw)
        self.scan_limit = scan_limit
        self.key: Key | None = None
        self.max_seq_length = 0
        self.responses_only = False
        self.prompts: list[int] = []  # per counted row, the tokens before its first trained one
        self.report: ScanReport | None = None
        self.error: str | None = None
        self.counted = ""  # how the tokens were counted; "" while counting
        self.problem: str | None = None  # what the engine will refuse, found while counting
        self.progress = 0.0
        self._wait: Timer | None = None

    def follow(
        self,
        dataset: str,
        fmt: str,
        base_model: str,
        chat_template: str,
        max_seq_length: int,
        delay: float = 0.4,
        columns: str = "",
        responses_only: bool = False,
        method: str = "sft",
    ) -> None:
        """Show what the form now names. A change of data, model or template is scanned once typing
        pauses for `delay` seconds; a new max-seq-length or masking only redraws."""
        key = (dataset, fmt, base_model, chat_template, columns, method)
        if key == self.key and (max_seq_length, responses_only) == (self.max_seq_length, self.responses_only):
            return
        self.max_seq_length, self.responses_only = max_seq_length, responses_only
        if key != self.key:
            if self.key is None or (key[:2], key[4:]) != (self.key[:2], self.key[4:]):  # other data: start afresh
                self.report, self.error = None, None
            self.key = key
            if self._wait is not None:
                self._wait.stop()
            self._wait = self.set_timer(max(delay, 0.01), self._scan)
        self.update(self.text())

    @property
    def settled(self) -> bool:
        """The data the form names is checked (tests and snapshots wait on it)."""
        return self.key is not None and (not self.key[0] or self.report is not None or self.error is not None)

    @work(thread=True, exclusive=True, group="scan")
    def _scan(self) -> None:
        """Check the data and show it at once; then count its tokens, which can take seconds."""
        asked = self.key
        assert asked is not None
        source, fmt, base, template, columns, method = asked
        if not source:
            return
        from ...data.scan import DatasetError, scan

        try:
            report = scan(source, fmt, limit=self.scan_limit, columns=columns, method=method)
        except DatasetError as e:
            self.app.call_from_thread(self._got, asked, None, str(e))
            return
        self.app.call_from_thread(self._got, asked, report, None)
        if report.hub:
            return
        # The count runs in a process of its own: tokenizing in a thread here would hold the
        # interpreter that answers keys. A newer scan (this worker is exclusive) kills it.
        worker = get_current_worker()
        from ...data.tokens import count_command

        argv, env = count_command(
            source=source,
            fmt=report.format,
            limit=min(self.scan_limit, report.rows),
            base_model=base,
            chat_template=template,
            columns=columns,
        )
        child = subprocess.Popen(
            argv, env=env, text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )  # never onto the app's terminal
        try:
            for line in child.stdout:  # type: ignore[union-attr]
                if worker.is_cancelled:
                    return
                message = json.loads(line)
                if "progress" in message:
                    self.app.call_from_thread(self._counting, asked, message["progress"])
                    continue
                if "refused" in message:  # a row the chat template refuses: the engine would stop on it too
                    self.app.call_from_thread(self._got_tokens, asked, [], "tokens not counted", message["refused"], [])
                else:
                    self.app.call_from_thread(
                        self._got_tokens,
                        asked,
                        message["tokens"],
                        message["how"],
                        message["problem"],
                        message["prompts"],
                    )
                return
            if not worker.is_cancelled:  # it died without a word (killed, out of memory)
                self.app.call_from_thread(
                    self._got_tokens, asked, [], "tokens not counted: the count stopped", None, []
                )
        finally:
            child.kill()
            child.wait()

    def _got(self, asked: Key, report: ScanReport | None, error: str | None) -> None:
        if asked == self.key:  # else a newer scan is on its way
            self.report, self.error, self.counted, self.progress, self.problem = report, error, "", 0.0, None
            self.prompts = []
            self.update(self.text())
            self.post_message(self.Changed())

    def _counting(self, asked: Key, done: float) -> None:
        if asked == self.key:
            self.progress = done
            self.update(self.text())

    def _got_tokens(self, asked: Key, tokens: list[int], counted: str, problem: str | None, prompts: list[int]) -> None:
        if asked == self.key and self.report is not None:
            # Sorted once here: the figures are redrawn on every edit, and length_stats sorts (fast when sorted).
            self.report.tokens, self.counted, self.problem = sorted(tokens), counted, problem
            self.prompts = prompts
            self.update(self.text())
            self.post_message(self.Changed())

    def truncation(self, max_seq_length: int) -> str | None:
        """How many rows max_seq_length would cut short (and leave nothing to learn), for the field's
        note; None if none."""
        tokens = self.report.tokens if self.report is not None and self.counted else []
        cut = length_stats(tokens, max_seq_length)["truncated"] if tokens else 0
        lost = len(self.unlearnable())
        # short, the worse news first: the note is cut at about 18 columns at 80x24
        return ((f"{lost} learn nothing, " if lost else "") + f"{cut} rows truncated") if cut else None

    def unlearnable(self) -> list[int]:
        """Prompt lengths of the counted rows that max-seq-length leaves with no trained token."""
        from ...data.tokens import masked, unlearnable

        r = self.report
        if r is None or not self.prompts or not masked(r.format, self.responses_only):
            return []
        return unlearnable(self.prompts, self.max_seq_length)

    @property
    def blocking(self) -> str | None:
        """The engine would stop: no counted row has a token left to learn."""
        from ...data.tokens import nothing_learned

        lost = self.unlearnable()
        if lost and len(lost) == len(self.prompts) and self.report is not None:
            return str(nothing_learned(self.report.source, self.max_seq_length, min(lost)))
        return None

    def text(self) -> Text:
        if self.key is None or not self.key[0]:
            return Text("no dataset chosen (dataset field)", style="dim")
        if self.error:
            return Text(self.error, style="bold red")
        r = self.report
        if r is None:
            return Text("scanning…", style="dim")
        if r.hub:
            return Text(f"{r.source}: a Hub dataset, checked when the run starts", style="cyan")
        t = Text()
        more = f" (first {self.scan_limit})" if r.rows >= self.scan_limit else ""
        t.append(f"{r.format} · {r.usable} rows{more}", style="bold green")
        t.append("\n")
        if r.skipped_line:
            t.append(r.skipped_line + "\n", style="yellow")
        if r.format in ("prompt_completion", "chat_prompt_completion"):
            t.append("the loss covers the completion only (as TRL's completion_only_loss)\n", style="dim")
        if not self.counted:
            t.append(f"counting tokens… {self.progress:.0%}\n", style="dim")
        elif not r.tokens:
            t.append(f"{self.counted}\n", style="dim")
        else:
            stats = length_stats(r.tokens, self.max_seq_length)
            tok = stats["tokens"]
            t.append(f"tokens mean {tok['mean']:.0f} · p95 {tok['p95']} · max {tok['max']}\n")
            t.append(f"{self.counted}\n", style="dim")
            if stats["truncated"]:
                t.append(
                    f"{stats['truncated']} rows longer than max-seq-length {self.max_seq_length}: "
                    "they will be truncated\n",
                    style="yellow",
                )
            lost = self.unlearnable()
            if lost:
                t.append(
                    f"{len(lost)} rows learn nothing: their prompt fills max-seq-length; "
                    + ("the run would stop\n" if len(lost) == len(self.prompts) else "they will be skipped\n"),
                    style="bold red" if len(lost) == len(self.prompts) else "yellow",
                )
        if self.problem:
            t.append(self.problem + "\n", style="bold yellow")
        t.append(r.sample[:300], style="italic")
        return t
