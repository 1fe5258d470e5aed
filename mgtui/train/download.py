"""The long waits before the first step, as phases with progress: the model's download (bytes, speed,
ETA), the weights loading and quantizing, and a Hub dataset's download.

huggingface_hub resumes a file whose connection dropped (with a Range request, once 10 MiB of it
arrived) and keeps each finished file in its cache: a stopped run's next try fetches only the files
still missing (the one in progress starts over). Both are said in the event log."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable

from ..hub_cache import offline
from ..hub_check import is_hub_name, remote_files
from ..units import GIB

Emit = Callable[..., Any]
EVERY_S = 0.5  # at most two progress events a second: the log stays small over hours


class DownloadStopped(Exception):
    """A stop was asked for during a download: what was fetched stays, and the next run resumes it."""

    def __init__(self, repo: str, done: int, total: int) -> None:
        super().__init__(
            f"stopped during the download of {repo} at {done / GIB:.2f} of {total / GIB:.2f} GB; the files "
            "finished stay in the Hub cache, and the next run fetches the rest (the file in progress starts over)"
        )
        self.done, self.total = done, total


class Rate:
    """Bytes per second over the last few seconds, and the time left at that pace."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.samples: list[tuple[float, int]] = []

    def add(self, t: float, done: int) -> None:
        self.samples.append((t, done))
        while len(self.samples) > 2 and t - self.samples[0][0] > self.window_s:
            self.samples.pop(0)

    def per_s(self) -> float | None:
        if len(self.samples) < 2 or self.samples[-1][0] <= self.samples[0][0]:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0)

    def eta_s(self, total: int) -> float | None:
        rate = self.per_s()
        return (total - self.samples[-1][1]) / rate if rate and self.samples else None


class ByteProgress:
    """The byte counts that huggingface_hub reports through `tqdm_class`, turned into phase events."""

    def __init__(self, emit: Emit, stop: threading.Event, phase: str, detail: str) -> None:
        self.emit, self.stop, self.phase, self.detail = emit, stop, phase, detail
        self.done = self.total = 0
        self.rate = Rate()
        self.last = 0.0
        self.lock = threading.Lock()

    def tqdm_class(self) -> type:
        from huggingface_hub.utils import tqdm

        progress = self

        class Bar(tqdm):
            """snapshot_download's bytes-written bar; its transfer and file-count bars are ignored."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                name, desc = kwargs.pop("name", None), str(kwargs.get("desc") or "")
                self.counts = name == "huggingface_hub.snapshot_download" or desc.startswith("Reconstructing")
                super().__init__(*args, **{**kwargs, "disable": True})

            def update(self, n: float | None = 1) -> bool | None:
                if self.counts and n:
                    progress.add(int(n))
                return super().update(n)

            def refresh(self, *args: Any, **kwargs: Any) -> None:
                if self.counts and self.total:
                    progress.total = int(self.total)
                return None

        return Bar

    def add(self, n: int) -> None:
        if self.stop.is_set():  # ends an abandoned download's thread before it reports after the stop
            raise DownloadStopped(self.detail, self.done, self.total)
        with self.lock:
            self.done += n
            now = time.monotonic()
            self.rate.add(now, self.done)
            if now - self.last >= EVERY_S or (self.total and self.done >= self.total):
                self.last = now
                self.report()

    def report(self) -> None:
        speed = self.rate.per_s()
        eta = self.rate.eta_s(self.total) if self.total else None
        self.emit(
            "phase",
            phase=self.phase,
            detail=self.detail,
            progress=round(self.done / self.total, 4) if self.total else None,
            done_bytes=self.done,
            total_bytes=self.total,
            speed_bps=round(speed) if speed else None,
            eta_s=round(eta, 1) if eta is not None else None,
        )


class ResumeNotes(logging.Handler):
    """huggingface_hub's "Trying to resume download..." warning, said in the event log."""

    def __init__(self, emit: Emit) -> None:
        super().__init__(logging.WARNING)
        self.emit_event = emit

    def emit(self, record: logging.LogRecord) -> None:
        if "resume download" in record.getMessage():
            self.emit_event("warning", message="the connection dropped during the download; resuming where it stopped")


def fetch_model(repo: str, remote_code: bool, emit: Emit, stop: threading.Event) -> None:
    """Download what loading `repo` needs into the Hub cache, as the "downloading" phase. Nothing to
    do for a local directory or offline; files already cached are said and skipped."""
    if not is_hub_name(repo) or offline():
        return
    from huggingface_hub import snapshot_download

    found = remote_files(repo, "model", remote_code)
    if not found.left:
        return  # all in the cache: loading says the rest
    cached = [n for n in found.sizes if n not in found.left]
    if cached:
        have = found.bytes(cached)
        emit(
            "message",
            message=f"{len(cached)} of {len(found.sizes)} files ({have / GIB:.2f} GB) are in the cache already",
        )
    progress = ByteProgress(emit, stop, "downloading", repo)
    emit("phase", phase="downloading", detail=repo, progress=0.0)
    notes = ResumeNotes(emit)
    logger = logging.getLogger("huggingface_hub.file_download")
    logger.addHandler(notes)
    failed: list[BaseException] = []

    def download() -> None:
        try:
            snapshot_download(
                repo, revision=found.sha, allow_patterns=list(found.sizes), tqdm_class=progress.tqdm_class()
            )
        except BaseException as e:  # handed to the main thread
            failed.append(e)

    # In a thread of its own, so that a stop is answered while a connection stalls or retries
    # (huggingface_hub retries a dropped one every second); a stopped download is abandoned.
    fetching = threading.Thread(target=download, daemon=True, name="download")
    fetching.start()
    try:
        while fetching.is_alive():
            if stop.wait(0.2):
                raise DownloadStopped(repo, progress.done, progress.total)
            fetching.join(0.2)
    finally:
        logger.removeHandler(notes)
    if failed:
        raise failed[0]
    progress.report()
    emit("message", message=f"downloaded {progress.done / GIB:.2f} GB of {repo}")


class HubBytes:
    """The bytes of the files huggingface_hub downloads for another library (`datasets` fetching a Hub
    dataset passes no progress hook of its own), as the "downloading" phase: while open, the hub's
    default progress bar reports its per-file downloads here. Each file's size joins the total as
    its download begins, so the ETA firms up file by file."""

    def __init__(self, emit: Emit, stop: threading.Event, detail: str) -> None:
        self.progress = ByteProgress(emit, stop, "downloading", detail)
        self.emit, self.detail = emit, detail

    def __enter__(self) -> HubBytes:
        import importlib

        # the module (not the class huggingface_hub.utils re-exports under the same name)
        self.module = vars(importlib.import_module("huggingface_hub.utils.tqdm"))
        self.saved = self.module["tqdm"]
        progress = self.progress

        class Bar(self.saved):  # type: ignore[name-defined]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self.counts = kwargs.get("name") == "huggingface_hub.http_get"
                if self.counts:
                    with progress.lock:
                        progress.total += int(kwargs.get("total") or 0) - int(kwargs.get("initial") or 0)
                    kwargs["disable"] = True
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                if self.counts and n:
                    progress.add(int(n))
                return super().update(n)

        self.module["tqdm"] = Bar
        self.logger = logging.getLogger("huggingface_hub.file_download")
        self.notes = ResumeNotes(self.emit)
        self.logger.addHandler(self.notes)
        return self

    def __exit__(self, *exc: object) -> None:
        self.module["tqdm"] = self.saved
        self.logger.removeHandler(self.notes)
        if self.progress.done:
            self.progress.report()
            self.emit("message", message=f"downloaded {self.progress.done / 2**20:.1f} MB of {self.detail}")


class WeightsProgress:
    """transformers' "Loading weights" loop (each tensor read, and quantized when 4/8-bit) as the
    loading_model phase's progress, through its public tqdm hook."""

    def __init__(self, emit: Emit, detail: str) -> None:
        self.emit, self.detail = emit, detail

    def hook(self, factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        items = args[0] if args else kwargs.get("iterable")
        if kwargs.get("desc") != "Loading weights" or items is None:
            return factory(*args, **kwargs)
        return self.track(list(items))

    def track(self, items: list[Any]) -> Iterable[Any]:
        total, last = len(items), 0.0
        for n, item in enumerate(items):
            now = time.monotonic()
            if now - last >= EVERY_S:
                last = now
                self.emit("phase", phase="loading_model", detail=self.detail, progress=round(n / total, 3))
            yield item
        self.emit("phase", phase="loading_model", detail=self.detail, progress=1.0)

    def __enter__(self) -> WeightsProgress:
        from transformers.utils import logging as hf_logging

        self.previous = hf_logging.set_tqdm_hook(self.hook)
        return self

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.set_tqdm_hook(self.previous)
