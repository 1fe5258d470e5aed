"""Presets: built-ins, round trip, broken files, atomic save, no secrets."""

from __future__ import annotations

import os
import tomllib

import pytest

from mgtui import presets
from mgtui.cli import main
from mgtui.settings import resolve


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "name, guide_flags",
    [
        ("default", ["--base-model", "unsloth/llama-3.1-8b-bnb-4bit", "--epochs", "3"]),
        (
            "budget",
            [
                "--base-model",
                "unsloth/llama-3.1-8b-bnb-4bit",
                "--lora-r",
                "16",
                "--batch-size",
                "2",
                "--gradient-accumulation-steps",
                "4",
                "--epochs",
                "3",
            ],
        ),
        (
            "mid-range",
            [
                "--base-model",
                "unsloth/llama-3.1-8b",
                "--load-in-8bit",
                "--lora-r",
                "32",
                "--use-rslora",
                "--optim",
                "adamw_torch",
                "--batch-size",
                "4",
                "--gradient-accumulation-steps",
                "4",
                "--epochs",
                "3",
            ],
        ),
        (
            "high-end",
            [
                "--base-model",
                "unsloth/llama-3.1-8b",
                "--quality-mode",
                "--lora-r",
                "64",
                "--batch-size",
                "4",
                "--gradient-accumulation-steps",
                "4",
                "--lr-scheduler-type",
                "cosine",
                "--epochs",
                "3",
            ],
        ),
        ("quality", ["--base-model", "unsloth/llama-3.1-8b", "--quality-mode", "--lora-r", "64", "--epochs", "3"]),
    ],
)
def test_builtin_presets_reproduce_the_guide(capsys, name, guide_flags):
    _, from_preset, _ = run(capsys, "train", "--preset", name, "--dry-run")
    _, from_flags, _ = run(capsys, "train", *guide_flags, "--dry-run")
    assert tomllib.loads(from_preset) == tomllib.loads(from_flags)
    assert "dataset" not in presets.load(name).values  # the user's paths are never in a built-in


def test_flags_override_a_preset(capsys):
    code, out, _ = run(capsys, "train", "--preset", "mid-range", "--load-in-16bit", "--lora-r", "8", "--dry-run")
    data = tomllib.loads(out)
    assert code == 0 and data["load_in_16bit"] and not data["load_in_8bit"] and data["lora_r"] == 8


def test_list_and_show(capsys):
    code, out, _ = run(capsys, "presets", "list")
    assert code == 0
    for name in ("default", "budget", "mid-range", "high-end", "quality", "demo"):
        assert name in out
    code, out, _ = run(capsys, "presets", "show", "quality")
    assert code == 0 and "quality_mode = true" in out


def test_round_trip_is_identical(capsys, tmp_path):
    args = [
        "--base-model",
        "unsloth/llama-3.1-8b",
        "--quality-mode",
        "--lora-r",
        "64",
        "--optim",
        "adamw_8bit",
        "--dataset",
        "data/x.jsonl",
        "--lr-scheduler-type",
        "cosine",
        "--learning-rate",
        "1e-4",
    ]
    target = tmp_path / "mine.toml"
    code, first, _ = run(capsys, "train", *args, "--save-preset", str(target), "--dry-run")
    assert code == 0 and target.is_file()
    code, second, _ = run(capsys, "train", "--preset", str(target), "--dry-run")
    assert code == 0 and first == second
    original = resolve([dict(presets.load(str(target)).values)])
    assert original.values == resolve([{k: v for k, v in tomllib.loads(first).items() if k != "schema"}]).values


def test_user_preset_by_name_shadows_builtin(capsys, isolated_home):
    code, _, err = run(capsys, "train", "--lora-r", "8", "--save-preset", "quality", "--dry-run")
    assert code == 0 and "saved preset" in err
    assert presets.load("quality").values["lora_r"] == 8 and not presets.load("quality").builtin
    assert presets.user_dir() == isolated_home / "config" / "mgtui" / "presets"


def test_overwrite_needs_force(capsys, tmp_path):
    target = tmp_path / "p.toml"
    assert run(capsys, "train", "--lora-r", "8", "--save-preset", str(target), "--dry-run")[0] == 0
    code, _, err = run(capsys, "train", "--lora-r", "32", "--save-preset", str(target), "--dry-run")
    assert code == 2 and "already exists (use --force" in err
    assert presets.load(str(target)).values["lora_r"] == 8
    assert run(capsys, "train", "--lora-r", "32", "--save-preset", str(target), "--force", "--dry-run")[0] == 0
    assert presets.load(str(target)).values["lora_r"] == 32


@pytest.mark.parametrize(
    "text, message",
    [
        ("schema = 1\nlora_r = = 3\n", "invalid TOML"),
        ("schema = 1\nlora_r = 16\nhf_token = 'x'\n", "line 3: unknown key 'hf_token'"),
        ("schema = 1\n\nlora_r = 'sixteen'\n", "line 3: lora_r: expected an integer from 1 to 1024"),
        ("schema = 1\noptim = 'sgd'\n", "line 2: --optim: 'sgd' is not one of"),
        ("schema = 2\n", "schema 2 is newer"),
        ("schema = 1\nresume = true\n", "unknown key 'resume'"),
    ],
)
def test_broken_preset_names_file_key_and_line(capsys, tmp_path, text, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    code, out, err = run(capsys, "train", "--preset", str(bad), "--dry-run")
    assert code == 2 and out == ""
    assert str(bad) in err and message in err and err.count("\n") == 1
    assert bad.read_text() == text  # nothing changed


def test_toml_syntax_error_has_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\nlora_r = = 3\n")
    with pytest.raises(presets.PresetError, match=r"line 2"):
        presets.load(str(bad))


def test_failed_save_leaves_old_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.toml"
    presets.save(resolve([{"lora_r": 8}]), str(target))
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(presets.PresetError, match="No space left"):
        presets.save(resolve([{"lora_r": 64}]), str(target), force=True)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.toml"]  # no temporary left behind


def test_no_secrets_in_presets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "a" * 34)
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef" * 2 + "01234567")
    path = presets.save(resolve([{"report_to": "wandb"}]), str(tmp_path / "p.toml"))
    text = path.read_text()
    assert "hf_" not in text and "0123456789abcdef" not in text
    with pytest.raises(presets.PresetError, match="token"):
        presets.save(resolve([{"base_model": "org/model", "master_addr": "hf_" + "b" * 34}]), str(tmp_path / "q.toml"))
    assert not (tmp_path / "q.toml").exists()


def test_builtin_presets_ship_in_the_wheel():
    import re

    from conftest import ROOT

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"presets" = "mgtui/_builtin_presets"', pyproject)
    assert presets.builtin_dir() == ROOT / "presets" or presets.builtin_dir().name == "_builtin_presets"


def test_a_directory_in_use_offers_what_can_be_done_about_it(tmp_path, engine_pid):
    """The form's Start asks these, in this order; the decision is pure and tested here."""
    from mgtui.runs import rundir

    out = tmp_path / "run"
    out.mkdir()
    (out / "events.jsonl").write_text('{"v": 1, "seq": 0, "t": 0, "type": "stopped"}\n')
    assert rundir.occupied_answers(out) == ["new", "cancel"]  # stopped, but nothing to resume from
    (out / "checkpoint-5").mkdir()  # torn (empty): nothing to resume from either
    assert rundir.occupied_answers(out) == ["new", "cancel"]
    import json

    (out / "run.json").write_text(json.dumps({"pid": engine_pid, "state": "running"}))
    assert rundir.occupied_answers(out) == ["attach", "new", "cancel"]
    assert rundir.free_directory(str(out)) == f"{out}-2"
    (tmp_path / "run-2").mkdir()
    (tmp_path / "run-2" / "events.jsonl").write_text("")
    assert rundir.free_directory(str(out)) in (f"{out}-2", f"{out}-3")


def test_a_preset_without_paths_keeps_the_users_dataset_and_output():
    from mgtui.form_model import FormModel

    m = FormModel({"dataset": "mine.jsonl", "output_dir": "out/mine", "lora_r": 8})
    chosen = m.with_preset({"lora_r": 32, "quality_mode": True}, {"lora_r", "quality_mode"})
    assert chosen == {"dataset": "mine.jsonl", "output_dir": "out/mine", "lora_r": 32, "quality_mode": True}
    assert m.with_preset({"dataset": "theirs.jsonl"}, {"dataset"})["dataset"] == "theirs.jsonl"
