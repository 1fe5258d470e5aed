"""What `--resume` accepts. A checkpoint continues the run that saved it: the settings that shaped
its weights, its data order and its optimizer must be the same; the cadence and length of the
run may change, and those changes are said and honoured. Nothing is recorded and then ignored.

- The adapter's shape, the base model, precision and the data are in the checkpoint's weights
  and in which rows were seen: another value would fail after the model loads, or train on
  something else in silence.
- The learning rate and the schedule are the checkpoint's: transformers restores the optimizer
  and the scheduler from it (LambdaLR's state_dict keeps base_lrs and last_epoch; torch's
  lr_scheduler.py), so a new value would be recorded in settings.toml and never used.
- The batch, accumulation, world size, seed and eval split decide which rows the resumed run
  skips (trainer.py's `steps_trained_in_current_epoch`): changed, it would skip the wrong ones.
- Steps and epochs are honoured: the Trainer takes max_steps from the new arguments
  (trainer_callback.py, init_training_references), and the schedule is rebuilt for them. The
  logging, eval and save cadence come back from the checkpoint's trainer_state.json
  (trainer.py `TrainerState.load_from_json`, read by DefaultFlowCallback); the engine's callback
  sets them again from the new arguments (train/callback.py, on_train_begin).

Pure: reads the run directory, imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from ..settings import SETTINGS, Resolved, resolve
from ..units import comma_list
from . import rundir

RESUMABLE = ("stopped", "failed", "dead")


def state_problem(out: Path) -> str | None:
    """Why the run in `out` can't be resumed whatever the settings: its state, or no checkpoint."""
    st = rundir.run_state(out)
    if st.state == "running":
        return f"{out} is still running (pid {st.pid}): attach to it instead"
    if st.state == "done":
        return (
            f"{out} is done: a finished run is not resumed (its adapter is in {out}); "
            "to train further, start a new run in another --output-dir"
        )
    if st.state in ("damaged", "unreadable"):
        return f"--resume: {out}'s record is {st.state} ({st.problem}); --force moves it aside for a new run"
    if st.state in ("queued", "cancelled", "new"):
        return f"--resume: {out} holds no run that trained ({st.state})"
    if rundir.latest_checkpoint(out) is None:
        return f"--resume: {out} has no checkpoint to resume from"
    return None


def resumable(out: Path) -> bool:
    """Whether the app offers "Resume it" for `out`."""
    return state_problem(out) is None


def saved_settings(out: Path) -> Resolved | None:
    from .. import presets

    path = out / rundir.SETTINGS_FILE
    if not path.exists():
        return None
    pre = presets.load_path(path)
    return resolve([pre.values], pre.explicit_keys())


def compare(old: Resolved, new: Resolved) -> tuple[list[str], list[str]]:
    """(refused, honoured): the differing settings, each as 'name old → new'."""
    refused: list[str] = []
    honoured: list[str] = []
    for s in SETTINGS:
        before, after = old.by_name(s.name), new.by_name(s.name)
        if not s.on_resume or before == after:
            continue
        change = f"{s.name} {before!r} → {after!r}"
        if s.name == "gpus" and before and after and len(comma_list(before)) != len(comma_list(after)):
            refused.append(change + " (another number of GPUs changes the global batch)")
        elif s.on_resume == "may":
            honoured.append(change)
        else:
            refused.append(change)
    return refused, honoured


def check(out: Path, new: Resolved) -> list[str]:
    """Raise ValueError (one line) when `out` can't be resumed with `new`; else the changes that
    will be honoured, to be said."""
    from ..presets import PresetError

    problem = state_problem(out)
    if problem:
        raise ValueError(problem)
    try:
        old = saved_settings(out)
    except PresetError as e:
        raise ValueError(f"--resume: {out}'s settings can't be read ({e}); --force moves the run aside") from None
    if old is None:
        return []
    refused, honoured = compare(old, new)
    if refused:
        raise ValueError(
            f"--resume: {'; '.join(refused)}: the checkpoint holds the old value"
            f"{'s' if len(refused) > 1 else ''}; resume without changing "
            f"{'them' if len(refused) > 1 else 'it'}, or start a new run in another --output-dir"
        )
    return honoured
