"""The app's end of the chat: the generation process (train/generate.py) started beside the UI,
its JSON lines read in a thread into a queue that the screen drains, and what a conversation is
(turns with a tuned and a base answer, saved as dataset rows). No torch here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .json_process import JsonLinesProcess

CONVERSATIONS_FILE = "conversations.jsonl"
LOG_FILE = "chat.log"


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    system: str = ""

    def line(self) -> str:
        system = (
            f'system "{self.system[:30]}{"…" if len(self.system) > 30 else ""}"' if self.system else "no system prompt"
        )
        greedy = " (greedy)" if self.temperature == 0 else ""
        return (
            f"temperature {self.temperature:g}{greedy} · top-p {self.top_p:g} · "
            f"max new tokens {self.max_new_tokens} · {system}"
        )


# name: (type, lowest, highest); a value outside is refused with its field's name
FIELDS: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 5.0),
    "top_p": (float, 0.01, 1.0),
    "max_new_tokens": (int, 1, 32768),
}


def parse_sampling(values: dict[str, str]) -> tuple[Sampling | None, str | None]:
    """The sampling settings from typed text, or the first problem, naming its field."""
    parsed: dict[str, Any] = {"system": values.get("system", "")}
    for name, (kind, lo, hi) in FIELDS.items():
        text = values.get(name, "").strip()
        try:
            value = kind(text)
        except ValueError:
            return None, f"{name.replace('_', '-')}: {text!r} is not a {'whole ' if kind is int else ''}number"
        if not lo <= value <= hi:
            return None, f"{name.replace('_', '-')}: {text} is not between {lo:g} and {hi:g}"
        parsed[name] = value
    return Sampling(**parsed), None


def shown(text: str) -> str:
    """A model's text as the terminal may show it: no control characters (a model can write an
    escape sequence or a NUL), and a long run of blank lines said in a few words."""
    out = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    return re.sub(r"\n{4,}", lambda m: f"\n[{len(m.group())} blank lines]\n", out)


@dataclass
class Turn:
    prompt: str
    answers: dict[str, str] = field(default_factory=dict)  # which ("tuned" | "base") -> text so far
    done: dict[str, str] = field(default_factory=dict)  # which -> "12 tokens · 31 tok/s" or "stopped"


def history(turns: list[Turn]) -> list[dict[str, str]]:
    """The conversation so far as the model sees it: each prompt and the tuned answer (the base
    answer is shown beside it, for comparison, and not carried on)."""
    out: list[dict[str, str]] = []
    for t in turns:
        out.append({"role": "user", "content": t.prompt})
        if "tuned" in t.answers:
            out.append({"role": "assistant", "content": t.answers["tuned"]})
    return out


def save_conversation(path: Path, turns: list[Turn], system: str = "") -> int:
    """Appends the conversation as one row of the dataset's messages format; returns the rows now
    in the file. Never overwrites: a good answer can become training data."""
    msgs = ([{"role": "system", "content": system}] if system else []) + history([t for t in turns if t.answers])
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


class ChatProcess(JsonLinesProcess):
    """The generation process for one run directory, started on demand."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self._lock = threading.Lock()

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mgtui.train.generate", str(self.run_dir)]
        self.spawn(cmd, self.run_dir / LOG_FILE, subprocess.PIPE)

    def send(self, message: dict[str, Any]) -> bool:
        with self._lock:
            if self.proc is None or self.proc.poll() is not None or self.proc.stdin is None:
                return False
            try:
                self.proc.stdin.write(json.dumps(message) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return False
        return True

    def ask(self, rid: int, messages: list[dict[str, str]], s: Sampling, which: list[str]) -> bool:
        return self.send(
            {
                "type": "generate",
                "id": rid,
                "messages": messages,
                "system": s.system,
                "temperature": s.temperature,
                "top_p": s.top_p,
                "max_new_tokens": s.max_new_tokens,
                "which": which,
            }
        )

    def stop(self, rid: int) -> bool:
        return self.send({"type": "stop", "id": rid})

    def close(self, timeout: float = 20.0) -> None:
        """Asks it to quit (an answer being written stops at its next token); killed if it hangs.
        Blocking: the screen calls it from a thread of its own."""
        if self.proc is None:
            return
        self.send({"type": "quit"})
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
