"""The settings model, quality mode and the guide's command lines."""

from __future__ import annotations

import re
import tomllib

import pytest
from conftest import ROOT

from mgtui.cli import main
from mgtui.settings import DEFAULTS, SETTINGS, SettingError, resolve


def dry_run(capsys, *args: str) -> dict:
    assert main(["train", *args, "--dry-run"]) == 0
    return tomllib.loads(capsys.readouterr().out)


def guide_commands() -> list[list[str]]:
    """Every `uv run model-garden train` command in the guide, as written (the guide's `...`
    stands for 'the rest of your flags' and is dropped)."""
    text = (ROOT / "docs" / "training-quality-settings.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            words = cmd.split()
            if words[:4] == ["uv", "run", "model-garden", "train"]:
                cmds.append([w for w in words[4:] if w != "..."])
    return cmds


def test_guide_has_its_commands():
    assert len(guide_commands()) >= 17


@pytest.mark.parametrize("cmd", guide_commands(), ids=lambda c: " ".join(c)[:60])
def test_every_guide_command_line_is_accepted(capsys, cmd):
    out = dry_run(capsys, *cmd)
    # Every flag given shows up in the resolved settings with the given value.
    for i, word in enumerate(cmd):
        if word.startswith("--"):
            key = word[2:].replace("-", "_")
            nxt = cmd[i + 1] if i + 1 < len(cmd) else "--"
            if nxt.startswith("--"):
                assert out.get(key, True) is True  # a quality-derived key is a comment
            elif key in out:
                assert str(out[key]) == nxt or out[key] == float(nxt)


def test_defaults_are_the_guides():
    d = DEFAULTS
    assert (d["load_in_8bit"], d["load_in_16bit"]) == (False, False)  # 4-bit
    assert d["use_gradient_checkpointing"] == "unsloth"
    assert d["optim"] == "adamw_8bit"
    assert (d["lora_r"], d["lora_alpha"], d["batch_size"], d["gradient_accumulation_steps"]) == (16, 16, 2, 4)
    assert d["lr_scheduler_type"] == "linear"
    assert (d["learning_rate"], d["max_seq_length"], d["warmup_steps"], d["seed"]) == (2e-4, 2048, 5, 3407)


@pytest.mark.parametrize("rank, rslora", [(16, False), (31, False), (32, True), (64, True)])
def test_quality_mode_table(rank, rslora):
    res = resolve([{"quality_mode": True, "lora_r": rank, "base_model": "unsloth/llama-3.1-8b"}])
    assert res.precision == 16
    assert res["use_gradient_checkpointing"] == "true"
    assert res["optim"] == "adamw_torch"
    assert res["use_rslora"] is rslora
    assert set(res.quality_set) == {"load_in_16bit", "use_gradient_checkpointing", "optim"} | (
        {"use_rslora"} if rslora else set()
    )


def test_explicit_flags_win_over_quality_mode(capsys):
    out = dry_run(
        capsys,
        "--base-model",
        "unsloth/llama-3.1-8b",
        "--quality-mode",
        "--lora-r",
        "64",
        "--optim",
        "adamw_8bit",
        "--use-gradient-checkpointing",
        "unsloth",
        "--load-in-8bit",
        "--no-use-rslora",
    )
    assert out["optim"] == "adamw_8bit"
    assert out["use_gradient_checkpointing"] == "unsloth"
    assert out["load_in_8bit"] is True and out["load_in_16bit"] is False
    assert out["use_rslora"] is False


def test_quality_mode_without_explicit_flags_is_reported():
    res = resolve([{"quality_mode": True, "base_model": "m"}], explicit={"quality_mode", "base_model"})
    assert res.quality_set == {"load_in_16bit": True, "use_gradient_checkpointing": "true", "optim": "adamw_torch"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--load-in-8bit", "--load-in-16bit"], "--load-in-8bit and --load-in-16bit exclude each other"),
        (["--load-in-16bit"], "pre-quantized 4-bit checkpoint; use 'unsloth/llama-3.1-8b' instead"),
        (
            ["--load-in-8bit", "--base-model", "unsloth/Qwen2.5-7B-Instruct-unsloth-bnb-4bit"],
            "use 'unsloth/Qwen2.5-7B-Instruct' instead",
        ),
        (["--quality-mode"], "--load-in-16bit (set by --quality-mode)"),
        (["--lora-r", "0"], "argument --lora-r: 0 is not an integer from 1 to 1024"),
        (["--learning-rate", "fast"], "argument --learning-rate: 'fast' is not a number"),
        (["--optim", "sgd"], "argument --optim: 'sgd' is not one of adamw_8bit"),
        (["--use-gradient-checkpointing", "maybe"], "'maybe' is not one of unsloth, true, false"),
        (["--eval-split", "0.9"], "0.9 is not a number from 0 to 0.5"),
        (["--unknown-flag"], "unrecognized arguments: --unknown-flag"),
        (
            ["--chat-template", "chatlm"],
            "--chat-template: unknown template 'chatlm' (known: chatml, hermes, llama-3, gemma",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        code = main(["train", *args, "--dry-run"])
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_local_4bit_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"quantization_config": {"load_in_4bit": true, "quant_method": "bitsandbytes"}}'
    )
    with pytest.raises(SettingError, match="pre-quantized 4-bit"):
        resolve([{"base_model": str(tmp_path), "load_in_16bit": True}])


def test_high_rank_without_rslora_warns(capsys):
    assert main(["train", "--lora-r", "32", "--dry-run"]) == 0
    assert "warning: lora_r = 32 without --use-rslora" in capsys.readouterr().err


def test_every_setting_has_a_flag_help_and_group():
    from mgtui.cli import build_parser

    helptext = build_parser("model-garden")._subparsers._group_actions[0].choices["train"].format_help()
    for s in SETTINGS:
        assert s.flag in helptext and s.help and s.group
        s.check(s.default)


def test_command_line_round_trips(capsys):
    res = resolve([{"base_model": "unsloth/llama-3.1-8b", "quality_mode": True, "lora_r": 64, "optim": "adamw_8bit"}])
    cmd = res.command_line()
    assert cmd[:2] == ["model-garden", "train"] and "--load-in-16bit" not in cmd
    again = dry_run(capsys, *cmd[2:])
    assert again["optim"] == "adamw_8bit" and again["lora_r"] == 64


def test_the_typed_view_of_the_settings_is_the_table():
    """mgtui/setting_types.py (names and types for the type checker) is generated from the table."""

    from settings_render import TARGET, render

    from mgtui.settings import SETTINGS

    expected = render(SETTINGS)
    assert TARGET.read_text() == expected, f"run: uv run python tests/settings_render.py\n{expected}"


def test_the_type_checker_catches_a_misspelt_setting(tmp_path):
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text('from mgtui.settings import resolve\n\nres = resolve()\nprint(res["lora_rr"], res["lora_r"])\n')
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", str(probe)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 1 and "'lora_rr'" in out.stdout and out.stdout.count("error:") == 1, out.stdout
