"""Preference tuning (DPO, ORPO, SimPO, KTO) with the tiny model on the CPU: the data layouts, the
refusals, the engine's runs and their reward series, and DPO on an SFT run's adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import events, run_in_process, settings, write_dataset

from mgtui.data.pairs import preference_row
from mgtui.data.scan import DatasetError, scan
from mgtui.settings import SettingError, resolve

WORDS = ("apple", "river", "stone", "cloud", "green", "music", "light", "table")


def preference_rows(n: int = 32, chat: bool = False) -> list[dict[str, Any]]:
    """Pairs a tiny model can learn to rank: the chosen reply repeats the prompt's word."""
    rows: list[dict[str, Any]] = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        if chat:  # conversational, implicit prompt: the shared user turn is the prompt
            user = {"role": "user", "content": f"Say {w}"}
            rows.append(
                {
                    "chosen": [user, {"role": "assistant", "content": f"{w} {w}"}],
                    "rejected": [user, {"role": "assistant", "content": "no thanks"}],
                }
            )
        else:
            rows.append({"prompt": f"Say {w}:", "chosen": f" {w} {w}", "rejected": " no thanks"})
    return rows


def kto_rows(n: int = 16) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        rows.append({"prompt": f"Say {w}:", "completion": f" {w} {w}", "label": True})
        rows.append({"prompt": f"Say {w}:", "completion": " no thanks", "label": False})
    return rows


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def adapter_loads(model: Path, run_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), run_dir)
    assert any("lora_" in name for name, _ in tuned.named_parameters())


# --- data: every layout read, and refused for a method that doesn't train it ---


@pytest.mark.parametrize(
    "row, fmt, prompt, replies",
    [
        ({"prompt": "Q", "chosen": "a", "rejected": "b"}, "preference", "Q", ("a", "b")),
        ({"chosen": "Q is a", "rejected": "Q is b"}, "preference", "Q is", (" a", " b")),  # implicit prompt
        (
            {"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "a"},
             "rejected": {"from": "gpt", "value": "b"}},
            "sharegpt_preference", [{"role": "user", "content": "Q"}],
            ([{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]),
        ),
        ({"prompt": "Q", "completion": "a", "label": False}, "kto", "Q", ("a",)),
    ],
)  # fmt: skip
def test_layouts_give_the_prompt_and_replies(row, fmt, prompt, replies):
    pref = preference_row(fmt, row, "row 1")
    assert pref is not None and pref.prompt == prompt and pref.replies == replies


def test_alpaca_preference_prompt_is_the_alpaca_prompt():
    pref = preference_row("alpaca_preference", {"instruction": "Say hi", "chosen": "hi", "rejected": "no"}, "r")
    assert pref is not None and "### Instruction:\nSay hi" in str(pref.prompt) and pref.replies == ("hi", "no")


@pytest.mark.parametrize(
    "rows, method, message",
    [
        (preference_rows(2), "sft", "this is preference (chosen/rejected) data, which --method dpo, orpo or simpo trains"),
        (preference_rows(2), "kto", "--method kto needs prompt, completion and label columns"),
        (kto_rows(1), "dpo", "this is KTO (replies labelled true/false) data, which --method kto trains"),
        ([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}], "dpo",
         "this is SFT (one reply per prompt) data, which --method sft trains; --method dpo needs chosen and rejected"),
    ],
)  # fmt: skip
def test_data_for_another_method_is_refused_in_one_line_naming_it(tmp_path, rows, method, message):
    data = write(tmp_path / "d.jsonl", rows)
    with pytest.raises(DatasetError) as caught:
        scan(str(data), method=method)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_forced_sft_format_with_a_chosen_column_names_the_method(tmp_path):
    data = write(tmp_path / "d.jsonl", [{"text": "x", "chosen": "a"}])
    with pytest.raises(DatasetError, match="which --method dpo, orpo or simpo trains"):
        scan(str(data), "text", method="sft")


def test_column_mapping_applies_to_preference_data(tmp_path):
    data = write(tmp_path / "d.jsonl", [{"question": "Q", "good": "a", "bad": "b"}])
    report = scan(str(data), columns="prompt=question,chosen=good,rejected=bad", method="dpo")
    assert report.format == "preference" and "[chosen] a" in report.sample


def test_the_train_command_refuses_mismatched_data_in_one_line(tmp_path, capsys, tiny_model):
    from mgtui.cli import main

    data = write_dataset(tmp_path / "sft.jsonl", "messages", n=4)
    code = main(["train", "--base-model", str(tiny_model), "--dataset", str(data), "--method", "dpo",
                 "--output-dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--method sft trains" in err and len(err.splitlines()) == 1


# --- settings ---


def test_a_method_setting_given_for_another_method_is_said():
    assert any("--beta is a setting of" in w for w in resolve([{"beta": 0.3}]).warnings)
    assert not resolve([{"method": "dpo", "beta": 0.3}]).warnings


def test_kto_needs_two_replies_in_a_batch():
    with pytest.raises(SettingError, match="--batch-size must be 2 or more"):
        resolve([{"method": "kto", "batch_size": 1}])


# --- the engine ---


def test_dpo_reward_margin_and_accuracy_rise(tmp_path, tiny_model):
    data = write(tmp_path / "pairs.jsonl", preference_rows(chat=True))
    res = settings(tiny_model, data, tmp_path / "run", method="dpo", max_steps=8, learning_rate=5e-3)
    code, run_dir = run_in_process(res)
    assert code == 0
    logs = [e for e in events(run_dir) if e["type"] == "log"]
    margins = [e["reward_margin"] for e in logs]
    accuracies = [e["reward_accuracy"] for e in logs]
    assert margins[0] == pytest.approx(0.0) and margins[-1] > margins[0] + 0.2  # step 1: policy == reference
    assert accuracies[-1] > accuracies[0]
    assert all("reward_chosen" in e and "logp_rejected" in e for e in logs)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "dpo" and summary["reward_margin"] == pytest.approx(margins[-1])
    assert summary["reward_accuracy"] == pytest.approx(accuracies[-1])
    assert summary["dataset"]["chat"] is True
    adapter_loads(tiny_model, run_dir)


@pytest.mark.parametrize("method", ["orpo", "simpo", "kto"])
def test_orpo_simpo_and_kto_finish_with_adapters_that_load(tmp_path, tiny_model, method):
    rows = kto_rows() if method == "kto" else preference_rows()
    data = write(tmp_path / "d.jsonl", rows)
    res = settings(tiny_model, data, tmp_path / "run", method=method, max_steps=3, learning_rate=5e-3)
    code, run_dir = run_in_process(res)
    assert code == 0
    logs = [e for e in events(run_dir) if e["type"] == "log"]
    assert len(logs) == 3 and all("reward_margin" in e for e in logs)
    if method == "kto":
        assert all("kl" in e for e in logs)
    adapter_loads(tiny_model, run_dir)


def test_dpo_from_an_sft_runs_adapter(tmp_path, tiny_model):
    sft_data = write_dataset(tmp_path / "sft.jsonl", "messages", n=16)
    code, sft_dir = run_in_process(settings(tiny_model, sft_data, tmp_path / "sft", max_steps=2))
    assert code == 0
    data = write(tmp_path / "pairs.jsonl", preference_rows(16, chat=True))
    res = settings(tiny_model, data, tmp_path / "dpo", method="dpo", max_steps=3, adapter_from=str(sft_dir))
    code, run_dir = run_in_process(res)
    assert code == 0
    logs = [e for e in events(run_dir) if e["type"] == "log"]
    # The reference is the SFT model (a frozen copy of its adapter): at step 1 the margin is 0.
    assert logs[0]["reward_margin"] == pytest.approx(0.0, abs=1e-4) and len(logs) == 3
    adapter_loads(tiny_model, run_dir)


def test_adapter_from_another_base_model_is_refused(tmp_path, tiny_model):
    from mgtui.runs.adapter_from import adapter_from_problem

    run_dir = tmp_path / "other"
    run_dir.mkdir()
    (run_dir / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/another-model"}))
    (run_dir / "adapter_model.safetensors").write_bytes(b"")
    res = resolve([{"base_model": str(tiny_model), "method": "dpo", "adapter_from": str(run_dir)}])
    problem = adapter_from_problem(res)
    assert problem and "trained on org/another-model" in problem and "same base model" in problem
    assert "no such directory" in str(
        adapter_from_problem(resolve([{"method": "dpo", "adapter_from": str(tmp_path / "none")}]))
    )


# --- the form ---


async def test_the_form_shows_only_the_chosen_methods_settings_and_refuses_its_data():
    from app_helpers import NO_GPU, settle, wait_until

    from mgtui.tui.app import MgApp

    app = MgApp({"dataset": "builtin:demo-chat"}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        form = pilot.app.screen

        def shown(name: str) -> bool:
            return bool(form.query_one(f"#f-{name}").display)

        assert shown("method") and shown("packing") and not shown("beta") and not shown("dpo_loss_type")
        form.query_one("#i-method").value = "dpo"  # as picking it in the Select does
        await wait_until(pilot, lambda: shown("beta"))
        assert shown("dpo_loss_type") and shown("max_prompt_length") and not shown("simpo_gamma")
        assert not shown("packing") and not shown("desirable_weight")
        panel = form.dataset_panel
        await wait_until(pilot, lambda: panel.error is not None)  # the demo's chat rows are SFT data
        assert "which --method sft trains; --method dpo needs chosen and rejected replies" in panel.error
        form.query_one("#i-method").value = "kto"
        await wait_until(pilot, lambda: shown("desirable_weight"))
        assert shown("undesirable_weight") and shown("beta") and not shown("dpo_loss_type")
        assert form.model.resolved is not None and form.model.resolved["method"] == "kto"


@pytest.mark.parametrize("name, method", [("dpo-on-sft", "dpo"), ("orpo", "orpo")])
def test_builtin_preference_presets(name, method):
    from mgtui import presets

    preset = presets.load(name)
    assert preset.builtin and preset.values["method"] == method and "dataset" not in preset.values
    res = resolve([preset.values])
    assert res["method"] == method and not res.warnings  # only its own method's settings


def test_runs_all_shows_a_preference_runs_reward_accuracy_and_margin(tmp_path, monkeypatch):
    import shutil

    from mgtui.runs.history import compare_rows, read_record, table

    run = tmp_path / "dpo"
    run.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "run_dpo_done.jsonl", run / "events.jsonl")
    rec = read_record(run)
    assert rec.reward_accuracy == 1.0 and rec.reward_margin == pytest.approx(1.2352, abs=1e-3)
    heads, rows = table([rec], full=True)
    cells = dict(zip(heads, rows[0]))
    assert cells["reward acc"] == "100%" and cells["margin"].startswith("1.2")
    summary, _ = compare_rows([rec])
    assert ("reward accuracy", ["100%"]) in summary


# --- the estimate ---


@pytest.mark.parametrize("method", ["dpo", "orpo", "simpo", "kto"])
def test_the_estimate_counts_the_sequences_with_gradients_and_gives_a_verdict(method):
    """Chosen and rejected in one forward for the paired methods; KTO's KL batch runs without gradients,
    so its activations are SFT's. The terms are modelled (tests/test_estimate_methods.py): a verdict."""
    from dataclasses import replace

    from mgtui.estimate import lookup
    from mgtui.estimate.memory import Inputs, estimate

    arch = lookup("unsloth/llama-3.1-8b").arch
    sft = Inputs(batch_size=2, seq_len=1024)
    pref = replace(sft, method=method)
    pairs = 1 if method == "kto" else 2
    assert pref.sequences == pairs * sft.sequences
    b = estimate(arch, pref, gpu_gib=80.0)
    same = estimate(arch, replace(sft, batch_size=2 * pairs), gpu_gib=80.0)
    assert b.breakdown["activations"] == pytest.approx(same.breakdown["activations"])
    assert b.unreliable is None and b.state == "fits"
    assert {"dpo": "reference", "kto": "KL batch"}.get(method, "no reference") in " ".join(b.notes)
