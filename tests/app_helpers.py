"""Shared by the app tests: a GPU source fed with recorded samples, and input helpers."""

from __future__ import annotations

from mgtui.nvml import FixedSource, GpuReading, GpuSample

GIB = 1024**3
NO_GPU = FixedSource(GpuReading(error="no NVIDIA GPU found"))


def one_gpu(total_gib: float = 24.0, used_gib: float = 0.5, util: int = 87) -> FixedSource:
    return FixedSource(
        GpuReading(
            (
                GpuSample(
                    0,
                    "NVIDIA GeForce RTX 4090",
                    int(total_gib * GIB),
                    int(used_gib * GIB),
                    utilization=util,
                    temperature=64,
                    power_w=312.0,
                    power_limit_w=450.0,
                    sm_clock_mhz=2520,
                    process_memory={},
                ),
            )
        )
    )


async def type_into(pilot, name: str, text: str) -> None:
    widget = pilot.app.screen.query_one(f"#i-{name}")
    widget.focus()
    await pilot.pause()
    await pilot.press("end", *["backspace"] * len(widget.value))
    if text:
        await pilot.press(*list(text))
    await pilot.pause()


async def wait_until(pilot, ready, what: str = "the state", timeout: float = 120.0) -> None:
    """Wait for a state, never for a time: the bound only turns a hang into a failure."""
    import time

    end = time.time() + timeout
    while not ready():
        if time.time() > end:
            raise TimeoutError(f"never reached {what} in {timeout:.0f} s")
        await pilot.pause(0.05)


async def settle(pilot, seconds: float = 0.3, timeout: float = 120.0) -> None:
    """Let background work (groups mounting, architecture lookup, dataset scan) finish: wait for
    the screen to say it is ready (the bound only turns a hang into a failure)."""
    import time

    await pilot.pause(seconds)
    end = time.time() + timeout
    while not getattr(pilot.app.screen, "ready", True):
        if time.time() > end:
            raise TimeoutError(f"{type(pilot.app.screen).__name__} not ready after {timeout:.0f} s")
        await pilot.pause(0.05)
    await workers_done(pilot)
    await pilot.pause()


async def workers_done(pilot) -> None:
    """The app's workers have ended. An exclusive worker replaced by a newer one of its group (a
    timer's poll under load) ends cancelled, which Textual's wait_for_complete raises: it ended."""
    from textual.worker import WorkerCancelled

    while True:
        try:
            await pilot.app.workers.wait_for_complete()
            return
        except WorkerCancelled:
            continue


def shared_gpu(total_gib: float = 24.0) -> FixedSource:
    """A card that two other users hold 14.5 GiB of, and a PID this machine can't see (a container)."""
    procs = {4242: int(9.0 * GIB), 5151: int(4.5 * GIB), 6060: int(1.0 * GIB)}
    sample = GpuSample(
        0,
        "NVIDIA GeForce RTX 4090",
        int(total_gib * GIB),
        sum(procs.values()),
        utilization=64,
        temperature=61,
        power_w=250.0,
        power_limit_w=450.0,
        sm_clock_mhz=2520,
        process_memory=procs,
    )
    table = {4242: ("alice", "python train.py --model llama-3.1-8b --epochs 3"), 5151: ("bob", "ollama serve")}
    return FixedSource(GpuReading((sample,)), table)


class ReplayChat:
    """The chat process's recorded lines (tests/data/chat_session.jsonl, from a real run of the demo
    model) played back per request: the chat screen's snapshots show the same on every machine."""

    def __init__(self, path) -> None:
        import json

        self.lines = [json.loads(x) for x in path.read_text().splitlines()]
        self.pending: list[dict] = []
        self.asked: list[tuple[int, list[dict], object, list[str]]] = []

    def start(self) -> None:
        self.pending += [e for e in self.lines if e["type"] in ("loading", "ready")]

    def ask(self, rid, messages, sampling, which) -> bool:
        self.asked.append((rid, messages, sampling, which))
        self.pending += [e for e in self.lines if e.get("id") == rid and e.get("which") in which]
        return True

    def stop(self, rid) -> bool:
        return True

    def close(self) -> None:
        pass

    def drain(self) -> list[dict]:
        out, self.pending = self.pending, []
        return out
