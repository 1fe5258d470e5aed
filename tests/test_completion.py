"""Completions for the form's text fields, read from real directories (pure functions), and
accepted with → in the real app."""

from __future__ import annotations

from pathlib import Path

from app_helpers import NO_GPU, settle, wait_until

from mgtui.completion import complete_dataset, complete_directory, complete_model, hub_cached
from mgtui.tui.app import MgApp


def make_tree(root: Path) -> None:
    (root / "data").mkdir()
    (root / "data" / "train.jsonl").write_text('{"text": "hello"}\n')
    (root / "data" / "notes.md").write_text("not data")
    (root / "data" / ".hidden.jsonl").write_text("")
    (root / "dataset-b").mkdir()
    (root / "models" / "my-model").mkdir(parents=True)
    (root / "models" / "my-model" / "config.json").write_text("{}")


def test_a_directory_completes_with_a_slash_then_leads_to_its_files(tmp_path):
    make_tree(tmp_path)
    base = str(tmp_path)
    assert complete_dataset(base + "/da") == base + "/data/"  # first by name; a directory leads on
    assert complete_dataset(base + "/data/") == base + "/data/train.jsonl"  # not notes.md, not hidden
    assert complete_dataset(base + "/data/t") == base + "/data/train.jsonl"
    assert complete_dataset(base + "/data/train.jsonl") is None  # complete already
    assert complete_dataset(base + "/data/.") == base + "/data/.hidden.jsonl"  # hidden when asked for
    assert complete_dataset(base + "/nothing-here/x") is None


def test_output_directory_completes_directories_only(tmp_path):
    make_tree(tmp_path)
    assert complete_directory(str(tmp_path / "data") + "/") is None  # it holds only files
    assert complete_directory(str(tmp_path) + "/m") == str(tmp_path) + "/models/"


def test_a_tilde_stays_as_typed(tmp_path, monkeypatch):
    make_tree(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert complete_dataset("~/data/tr") == "~/data/train.jsonl"


def test_models_and_datasets_from_the_hub_cache_and_the_built_ins(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    for name in (
        "models--unsloth--llama-3.1-8b-bnb-4bit",
        "models--Qwen--Qwen2.5-7B",
        "datasets--tatsu-lab--alpaca",
        "version.txt",
    ):
        (cache / name).mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    assert hub_cached("models") == ["Qwen/Qwen2.5-7B", "unsloth/llama-3.1-8b-bnb-4bit"]
    assert complete_model("unsloth/ll") == "unsloth/llama-3.1-8b-bnb-4bit"
    assert complete_model("Qw") == "Qwen/Qwen2.5-7B"
    assert complete_model("built") == "builtin:tiny-llama"
    assert complete_dataset("tatsu") == "tatsu-lab/alpaca"
    assert complete_dataset("builtin:d") == "builtin:demo-chat"
    assert complete_model("nobody/") is None


async def test_right_arrow_accepts_the_completion_in_the_form(tmp_path, isolated_home):
    make_tree(tmp_path)
    app = MgApp({}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        inp = app.screen.query_one("#i-dataset")
        inp.focus()
        await pilot.pause()
        # The suggestion is worked out in a thread: wait for Input to hold it (its _suggestion).
        await pilot.press(*(str(tmp_path) + "/da"))
        await wait_until(pilot, lambda: inp._suggestion == str(tmp_path / "data") + "/", "the directory's suggestion")
        await pilot.press("right")  # → the directory
        await wait_until(pilot, lambda: inp._suggestion == str(tmp_path / "data" / "train.jsonl"), "the file's")
        await pilot.press("right")  # → its dataset file
        await settle(pilot)
        assert inp.value == str(tmp_path / "data" / "train.jsonl")
        assert app.screen.dataset_panel.report is not None and app.screen.dataset_panel.report.rows == 1
