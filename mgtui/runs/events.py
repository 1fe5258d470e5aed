"""The event schema, and the durable event log (JSON lines) that carries it.

This is the one place the schema is documented. Every event is one JSON object per line in
`<run dir>/events.jsonl`, with these keys always present:

    v      schema version (1)
    seq    0, 1, 2, ... in the order written (a reader can tell it missed nothing)
    t      Unix time, seconds
    type   one of the types below

Types and their extra keys (absent keys mean "not known"):

    start     pid, backend ("unsloth" | "transformers"), device ("cuda" | "cpu"), world_size,
              estimate_gb (the form's/estimator's peak for these settings), settings (flat dict)
    phase     phase ("downloading" | "loading_model" | "preparing_data" | "training" | "evaluating" |
              "saving" | "answering"),
              progress (0..1, when measurable), detail (text)
    dataset   rows, format, tokens {min, mean, p95, max}, max_seq_length, truncated, eval_rows
    log       step, total_steps, epoch, loss, learning_rate, grad_norm, tokens_per_s,
              samples_per_s, eta_s, elapsed_s, tokens_seen (this process's count: a resumed
              run's starts again at 0); preference runs add, as their trainer reports them:
              reward_chosen, reward_rejected, reward_margin, reward_accuracy (DPO, ORPO, SimPO:
              the share of pairs whose chosen reward is higher), logp_chosen, logp_rejected,
              kl (KTO), log_odds_ratio (ORPO); GRPO runs add: reward (the mean of the weighted sum
              over the step's completions), reward_std, reward_funcs {function: mean},
              reward_funcs_std {function: std}, kl (when kl_beta > 0), entropy,
              completion_length (mean tokens), completion_length_max, clipped_ratio (the share
              cut at max_completion_length), frac_reward_zero_std (groups whose completions all
              scored the same: nothing learnt from them)
    completions  step, samples [{prompt, completion, reward, rewards {function: value},
              advantage}] (GRPO: the completions sampled for the logged step(s), at most 16,
              texts cut at 2000 characters)
    eval      step, eval_loss (and any other eval_* metric)
    memory    peak_reserved_gb, peak_allocated_gb (torch), peak_nvml_gb (the process as nvidia-smi
              shows it, CUDA context included: what estimate_gb predicts), total_gb (CUDA only)
    answers   path (answers.jsonl), count, sample [{prompt, tuned, base}] (the first three, cut
              at 300 characters): --eval-prompts answered by the tuned and the base model
    warning   message
    message   message
    done      final_loss, steps, runtime_s, adapter (path)
    stopped   final_loss, steps, runtime_s, adapter (path), checkpoint (path)
    failed    kind ("oom" | "input" | "device" | "disk_full" | "error" | "crash"), message, step (the
              last reached), and for "oom": reserved_gb, allocated_gb, total_gb, advice [{title,
              changes, peak_gb, fits}]; for "disk_full": path, free_gb, checkpoint_gb, advice_text

`done`, `stopped` and `failed` are terminal: nothing follows them.

Writing never blocks the training loop: `EventWriter.emit` puts the event on an in-process
queue and returns; a writer thread appends to the file and flushes after each batch.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
# The preference series of a log event, in the order the run screen shows them.
PREFERENCE_SERIES = (
    "reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy", "logp_chosen", "logp_rejected",
    "kl", "log_odds_ratio",
)  # fmt: skip
# GRPO's scalar series of a log event (reward_funcs and reward_funcs_std are {function: value}).
GRPO_SERIES = (
    "reward", "reward_std", "kl", "entropy", "completion_length", "completion_length_max", "clipped_ratio",
    "frac_reward_zero_std",
)  # fmt: skip
TERMINAL = ("done", "stopped", "failed")
INPUT_KINDS = ("input", "device")  # failures that exit 2: bad input, or GPUs this torch can't use
EVENTS_FILE = "events.jsonl"


class EventWriter:
    """Queue + writer thread. `emit` is safe from any thread and never waits on disk."""

    def __init__(self, path: Path, on_event=None) -> None:
        self.path = path
        self.torn = repair_tail(path)  # where a killed writer's fragment was kept, or None
        self._q: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._seq = self._next_seq(path)
        self._seq_lock = threading.Lock()
        self._on_event = on_event  # e.g. the headless display, in the writer thread
        self._thread = threading.Thread(target=self._run, name="mgtui-events", daemon=True)
        self._thread.start()

    @staticmethod
    def _next_seq(path: Path) -> int:
        """A resumed run appends to its log: continue the numbering."""
        last = -1
        for event in read_events(path):
            last = event.get("seq", last)
        return last + 1

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        with self._seq_lock:
            event = {"v": SCHEMA_VERSION, "seq": self._seq, "t": round(time.time(), 3), "type": event_type, **fields}
            self._seq += 1
        self._q.put(event)
        return event

    def _run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            while True:
                batch = [self._q.get()]
                while True:  # drain whatever else is ready, then write it in one go
                    try:
                        batch.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                stop = batch[-1] is None
                events = [e for e in batch if e is not None]
                if events:
                    f.write("".join(json.dumps(e, default=str) + "\n" for e in events))
                    f.flush()
                    if self._on_event:
                        for e in events:
                            self._on_event(e)
                if stop:
                    os.fsync(f.fileno())
                    return

    def close(self, timeout: float = 10.0) -> None:
        self._q.put(None)
        self._thread.join(timeout)


def repair_tail(path: Path) -> Path | None:
    """A log whose last line was cut (its writer killed mid-write) would have the next writer's
    first event appended onto the fragment, and both lost: the fragment is moved to a dated file
    beside the log, and the log ends at its last whole line."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return None
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return None
            start = size
            while start > 0:  # back to the byte after the last newline
                step = min(start, 65536)
                f.seek(start - step)
                chunk = f.read(step)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    start = start - step + cut + 1
                    break
                start -= step
            f.seek(start)
            fragment = f.read()
            kept = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            kept.write_bytes(fragment)
            f.truncate(start)
            return kept
    except FileNotFoundError:
        return None


class EventFollower:
    """Reads a growing event log from an offset: history first, then whatever is new."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def read_new(self, limit_bytes: int = 8 << 20) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(limit_bytes)
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an incomplete last line waits for the rest
        out = []
        for line in lines:
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a torn line from a killed writer: skip it, keep following
        return out


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    follower = EventFollower(path)
    while batch := follower.read_new():
        yield from batch
