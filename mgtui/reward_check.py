"""The check of a GRPO run's reward functions before anything loads: `model-garden train` and the
form's Start refuse in one line what the engine would fail on after loading the model. The user's
file is imported in a process of its own (mgtui/train/rewards.py), never in the app's."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

from .reward_spec import parse_rewards

if TYPE_CHECKING:
    from .settings import Resolved

CHECK_TIMEOUT_S = 300  # a reward file may import heavy libraries of its own


def rewards_problem(res: Resolved, columns: list[str] | None) -> str | None:
    """Why the run's reward functions can't be called on its data, or None. `columns` are the
    dataset's (after --columns), None when unknown before the run (a Hub dataset)."""
    if res["method"] != "grpo":
        return None
    refs = parse_rewards(res["reward_funcs"])
    extras = None if columns is None else [c for c in columns if c != "prompt"]
    if extras is not None and "answer" not in extras and any(r.name == "answer_match" and not r.file for r in refs):
        return (
            f"{res['dataset']}: answer_match compares each completion's final answer with an 'answer' column, "
            f"and the rows have {', '.join(extras) or 'nothing'} besides the prompt; map yours (--columns answer=NAME) "
            "or choose other --reward-funcs"
        )
    if not any(r.file for r in refs):
        return None
    settings = {k: res[k] for k in ("format_regex", "max_completion_length")}
    args = {"spec": res["reward_funcs"], "settings": settings, "columns": extras}
    cmd = [sys.executable, "-m", "mgtui.train.rewards", "check", json.dumps(args, default=str)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"--reward-funcs: importing {res['reward_funcs']} took over {CHECK_TIMEOUT_S} s"
    for line in reversed(done.stdout.splitlines()):  # the file may print while it imports
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if isinstance(said, dict) and ("ok" in said or "problem" in said):
            return None if said.get("ok") else f"--reward-funcs: {said['problem']}"
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"--reward-funcs: the check of {res['reward_funcs']} ended with exit {done.returncode}: {tail}"
