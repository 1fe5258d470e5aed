"""--columns maps a file's own column names onto those a format reads, through the CLI, a preset and the form."""

from __future__ import annotations

import json

import pytest
from app_helpers import NO_GPU, settle, type_into
from test_engine import cli

from mgtui import presets
from mgtui.data.scan import DatasetError, scan
from mgtui.settings import resolve
from mgtui.tui.app import MgApp

MAP = "prompt=question,completion=answer"


@pytest.fixture
def qa(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        "".join(json.dumps({"question": f"What is {i}+{i}?", "answer": f" {2 * i}"}) + "\n" for i in range(24))
    )
    return path


def test_unknown_columns_are_named_with_the_way_to_map_them(qa):
    with pytest.raises(DatasetError) as e:
        scan(str(qa))
    assert "['answer', 'question']" in str(e.value) and "--columns prompt=question" in str(e.value)
    assert scan(str(qa), columns=MAP).format == "prompt_completion"
    with pytest.raises(DatasetError, match="--columns names \\['reply'\\]"):
        scan(str(qa), columns="completion=reply,prompt=question")


def test_mapped_columns_train_through_the_cli(tmp_path, tiny_model, qa):
    out = tmp_path / "run"
    done = cli("train", "--base-model", str(tiny_model), "--dataset", str(qa), "--columns", MAP,
               "--output-dir", str(out), "--max-steps", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["dataset"]["format"] == "prompt_completion"


@pytest.mark.parametrize(
    "spec, why", [("question", "not NAME=COLUMN"), ("query=question", "not a column a format reads")]
)
def test_a_bad_map_is_one_line_naming_the_setting(capsys, spec, why):
    from mgtui.cli import main

    assert main(["train", "--columns", spec, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--columns" in err and why in err


def test_the_map_is_kept_in_a_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = presets.save(resolve([{"columns": MAP}]), "qa")
    assert presets.load_path(path).values["columns"] == MAP


async def test_the_form_maps_columns_and_the_dataset_panel_follows(qa):
    app = MgApp({"dataset": str(qa)}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        panel = app.screen.query_one("#dataset")
        assert "['answer', 'question']" in str(panel.render())
        await type_into(pilot, "columns", MAP)
        await settle(pilot, 0.6)
        assert "prompt_completion" in str(panel.render())
