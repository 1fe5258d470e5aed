"""Every tracker the settings offer works on a fresh install, or is refused before the run starts:
TensorBoard writes its event files into the run directory; W&B without a key logs offline there."""

from __future__ import annotations

import importlib.util

import pytest
from engine_helpers import write_dataset
from test_engine import cli

from mgtui.runs.launch import engine_env, tracker_problem
from mgtui.settings import resolve


def train(tmp_path, tiny_model, tracker: str):
    data = write_dataset(tmp_path / "d.jsonl", "text", n=16)
    out = tmp_path / "run"
    done = cli("train", "--base-model", str(tiny_model), "--dataset", str(data), "--output-dir", str(out),
               "--max-steps", "3", "--logging-steps", "1", "--report-to", tracker)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


def test_tensorboard_writes_its_events_into_the_run_directory(tmp_path, tiny_model):
    out = train(tmp_path, tiny_model, "tensorboard")
    events = list(out.glob("runs/*/events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_wandb_without_a_key_logs_offline_into_the_run_directory(tmp_path, tiny_model, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = train(tmp_path, tiny_model, "wandb")
    runs = list(out.glob("wandb/offline-run-*/run-*.wandb"))
    assert runs and runs[0].stat().st_size > 0


def test_wandb_env_keeps_a_chosen_mode_and_key():
    res = resolve([{"report_to": "wandb"}])
    assert engine_env(res, {}, None)["WANDB_MODE"] == "offline"
    keyed = engine_env(res, {"WANDB_API_KEY": "k" * 40}, None)
    assert "WANDB_MODE" not in keyed and keyed["WANDB_PROJECT"] == "mgtui"
    assert "WANDB_MODE" not in engine_env(resolve([{}]), {}, None)


@pytest.mark.parametrize("tracker, package", [("wandb", "wandb"), ("tensorboard", "tensorboard")])
def test_a_tracker_that_is_not_installed_is_refused_before_the_run(monkeypatch, tracker, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith(package[:6]) else real(name, *a)
    )
    problem = tracker_problem(tracker)
    assert problem and problem.startswith(f"--report-to {tracker}: {package} is not installed")
    assert tracker_problem("none") is None
