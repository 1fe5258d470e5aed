"""--adapter-from RUN_DIR: a finished run's adapter that a new run trains on (SFT, then DPO).
Checked before anything starts, in one line: the directory holds a LoRA adapter, trained on the
same base model. Pure: files only."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from ..settings import Resolved
from .rundir import SETTINGS_FILE

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def trained_on(run_dir: Path) -> str | None:
    """The base model a run's adapter was trained on: the run's own settings (the name the user
    gave), else the adapter's config (the path the engine loaded)."""
    try:
        return str(tomllib.loads((run_dir / SETTINGS_FILE).read_text(encoding="utf-8"))["base_model"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        base = json.loads((run_dir / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None
    return str(base) if base else None


def adapter_from_problem(res: Resolved) -> str | None:
    """Why --adapter-from can't be used for this run, or None."""
    given = res["adapter_from"]
    if not given:
        return None
    run_dir = Path(given).expanduser()
    flag = f"--adapter-from {given}"
    if not run_dir.is_dir():
        return f"{flag}: no such directory"
    if not (run_dir / ADAPTER_CONFIG).is_file() or not any((run_dir / w).is_file() for w in ADAPTER_WEIGHTS):
        return f"{flag}: no LoRA adapter here (adapter_config.json and its weights); give a finished run's directory"
    base = trained_on(run_dir)
    if base is not None and base.rstrip("/") != res["base_model"].rstrip("/"):
        return f"{flag}: its adapter was trained on {base}, this run's base model is {res['base_model']}; use the same base model"
    return None
