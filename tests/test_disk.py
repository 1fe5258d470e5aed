"""A run's disk: keep only the newest checkpoints (save_total_limit), and a warning before a run
starts, on the form and from model-garden train, when the output directory's disk is too small."""

from __future__ import annotations

import pytest
from app_helpers import NO_GPU, settle
from engine_helpers import settings, write_dataset
from test_engine import run_in_process

from mgtui.runs import rundir
from mgtui.runs.launch import disk_warning, trainable_params
from mgtui.settings import resolve
from mgtui.tui.app import MgApp


def test_planned_steps_and_what_the_checkpoints_take():
    assert rundir.planned_steps(50, 3.0, 1000, 0.0, 8) == 50
    assert rundir.planned_steps(0, 3.0, 1000, 0.1, 8) == 3 * 113  # 900 training rows, 8 a step
    lora = 42_000_000  # r16 on every projection of Llama-3.1-8B
    every = rundir.disk_need_bytes(lora, "adamw_torch", 1000, 100, 0)
    newest_two = rundir.disk_need_bytes(lora, "adamw_torch", 1000, 100, 2)
    assert every > 4 * newest_two
    assert newest_two == 4 * lora + 2 * (4 * lora + 8 * lora + 2**20)
    assert rundir.disk_need_bytes(lora, "adamw_8bit", 1000, 100, 2) < newest_two


def test_a_disk_too_small_is_named_with_the_fixes(tmp_path):
    res = resolve([{"base_model": "unsloth/llama-3.1-8b", "output_dir": str(tmp_path / "run"), "max_steps": 1000}])
    trainable = trainable_params(res)
    assert trainable
    warning = disk_warning(res, rows=5000, trainable=trainable, free=2**30)
    assert warning and str(tmp_path / "run") in warning and "1.0 GB free" in warning
    assert "--save-total-limit" in warning and "--output-dir" in warning
    assert disk_warning(res, rows=5000, trainable=trainable, free=2**40) is None


def test_save_total_limit_keeps_the_newest_checkpoints(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "text", n=32)
    res = settings(tiny_model, data, tmp_path / "run", max_steps=8, save_steps=2, save_total_limit=2)
    code, run_dir = run_in_process(res)
    assert code == 0
    assert [p.name for p in rundir.checkpoints(run_dir)] == ["checkpoint-8", "checkpoint-6"]


async def test_the_form_warns_under_output_dir_when_the_disk_is_too_small(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "free_bytes", lambda path: 1024)
    app = MgApp({"dataset": "builtin:demo-chat", "output_dir": str(tmp_path / "run")}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        note = str(app.screen.query_one("#n-output_dir").render())
        assert "0.0 GB free" in note and "--save-total-limit" in note


@pytest.mark.parametrize("limit", ["-1", "two"])
def test_save_total_limit_is_checked_like_every_setting(capsys, limit):
    from mgtui.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["train", "--save-total-limit", limit, "--dry-run"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--save-total-limit" in err and err.count("\n") == 1
