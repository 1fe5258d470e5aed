"""GRPO's --reward-funcs and --reward-weights, read into what the engine calls. Pure: no torch, and the
user's file is never imported here (that happens in the engine's process, and in its check's).

The spec is comma-separated. A bare name is a built-in (BUILTIN_REWARDS); `path.py:name` names a
function in a Python file, and bare names after it are that file's too, until the next `path.py:`:
`answer_match,rewards.py:correct,fmt` is one built-in and two of rewards.py's functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .units import comma_list

BUILTIN_REWARDS = ("answer_match", "format_match", "length_penalty")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class RewardRef:
    name: str
    file: str | None = None  # None: a built-in


def parse_rewards(spec: str) -> list[RewardRef]:
    """The reward functions of a spec, in order. Raises ValueError with a line for the user."""
    refs: list[RewardRef] = []
    file: str | None = None
    for item in comma_list(spec):
        if ":" in item:
            path, _, name = item.rpartition(":")
            if not path.endswith(".py"):
                raise ValueError(f"{item!r}: a reward file is a Python file, as rewards.py:name")
            file = path
        else:
            name = item
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Python function name")
        if file is None and name not in BUILTIN_REWARDS:
            raise ValueError(
                f"{name!r} is not a built-in reward ({', '.join(BUILTIN_REWARDS)}); name your own as rewards.py:" + name
            )
        ref = RewardRef(name, file)
        if any(r.name == name for r in refs):
            raise ValueError(f"{name!r} is named twice; each reward function once")
        refs.append(ref)
    if not refs:
        raise ValueError("no reward function named; e.g. answer_match, or rewards.py:correct")
    return refs


def parse_weights(spec: str, count: int) -> list[float] | None:
    """One weight per reward function, or None (all 1). Raises ValueError."""
    items = comma_list(spec)
    if not items:
        return None
    try:
        weights = [float(w) for w in items]
    except ValueError:
        raise ValueError(f"{spec!r} is not a comma-separated list of numbers") from None
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} reward functions; give one per function, in order")
    return weights


def reward_files(spec: str) -> list[Path]:
    """The user's files a spec names (for the pre-run check), in order, each once."""
    seen: list[Path] = []
    for ref in parse_rewards(spec):
        if ref.file is not None and Path(ref.file) not in seen:
            seen.append(Path(ref.file))
    return seen
