"""Who holds the GPUs: each card's processes as nvitop lists them (PID, user, command, memory),
read from an NVML reading and the process table, and which of them are this user's mgtui runs.
Never parses nvidia-smi; never raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from .nvml import GpuSample, describe_pid
from .units import GIB

HIDDEN_GIB = 1.0  # used memory that no listed process accounts for, above which PIDs are hidden


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    memory: int  # bytes on this card
    user: str  # "?" when the process is not in this PID namespace
    command: str
    run: str = ""  # the run directory's name, when it is one of this user's mgtui runs

    @property
    def visible(self) -> bool:
        return self.user != "?"


def processes(
    g: GpuSample,
    runs: dict[int, str] | None = None,
    describe: Callable[[int], tuple[str, str]] = describe_pid,
) -> list[GpuProcess]:
    """A card's processes, largest first. `runs` maps this user's mgtui runs' PIDs to their name."""
    runs = runs or {}
    out = []
    for pid, memory in g.process_memory.items():
        user, command = describe(pid)
        out.append(GpuProcess(pid, memory, user, command, runs.get(pid, "")))
    return sorted(out, key=lambda p: -p.memory)


def hidden_note(g: GpuSample) -> str | None:
    """NVML lists no process (or too few) for memory in use: inside a container, the processes of
    others are hidden. Say so rather than show an empty list."""
    listed = sum(g.process_memory.values())
    unaccounted = (g.memory_used - listed) / GIB
    if unaccounted <= HIDDEN_GIB:
        return None
    who = "no process" if not g.process_memory else "processes for only part of it"
    return (
        f"{unaccounted:.1f} GB in use that NVML names {who} for: their PIDs are hidden here "
        "(a container, or another user's namespace)"
    )


def others_gib(g: GpuSample, own: Iterable[int] = ()) -> float:
    """What processes other than `own` hold on the card."""
    return (g.memory_used - g.used_by(set(own))) / GIB


def short(command: str, width: int) -> str:
    return command if len(command) <= width else command[: max(1, width - 1)] + "…"


THIS_RUN = "\0this"  # the run a screen follows, among `runs`


def line(p: GpuProcess, width: int) -> str:
    """PID, user, memory, and the command (or the mgtui run it is), in `width` columns."""
    what = "this run" if p.run == THIS_RUN else f"mgtui run {p.run}" if p.run else p.command
    head = f"{p.pid} {p.user[:8]:<6} {p.memory / GIB:4.1f}G "
    return head + short(what, max(6, width - len(head)))
