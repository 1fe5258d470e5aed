"""GRPO with reward functions, on the CPU with the tiny model: the reward spec, the built-ins, the
prompt-only data, the check of the user's reward file before anything loads, and the engine's runs
(the reward rising, the completions published, a stop and a resume)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import ctrl_c_after, events, run_in_process, settings

from mgtui.cli import main
from mgtui.data.scan import DatasetError, scan
from mgtui.reward_check import rewards_problem
from mgtui.reward_spec import RewardRef, parse_rewards, parse_weights
from mgtui.runs import rundir
from mgtui.settings import SettingError, resolve
from mgtui.train.rewards import answer_match, final_answer, format_match_for, length_penalty_for

WORDS = ("apple", "river", "stone", "cloud", "green", "music", "light", "table")


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prompt_rows(n: int = 32, chat: bool = True) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        prompt: Any = [{"role": "user", "content": f"Say something about {w}"}] if chat else f"About {w}:"
        rows.append({"prompt": prompt, "topic": w})
    return rows


# --- the reward spec and the settings ---


def test_reward_spec_reads_builtins_then_a_files_functions():
    assert parse_rewards("answer_match,rewards.py:correct,fmt") == [
        RewardRef("answer_match"),
        RewardRef("correct", "rewards.py"),
        RewardRef("fmt", "rewards.py"),
    ]
    assert parse_weights("1, 0.5", 2) == [1.0, 0.5] and parse_weights("", 3) is None


@pytest.mark.parametrize(
    "spec, said",
    [
        ("correct", "'correct' is not a built-in reward"),
        ("rewards.txt:correct", "a reward file is a Python file"),
        ("answer_match,answer_match", "named twice"),
        ("r.py:1bad", "not a Python function name"),
        ("", "no reward function named"),
    ],
)
def test_a_bad_reward_spec_is_refused_by_the_settings_in_one_line(spec, said):
    with pytest.raises(SettingError) as e:
        resolve([{"method": "grpo", "reward_funcs": spec, "dataset": "d.jsonl"}])
    assert e.value.name == "reward_funcs" and said in str(e.value) and "\n" not in str(e.value)


def test_generations_must_divide_the_completions_of_a_step_and_weights_match_the_functions():
    with pytest.raises(SettingError, match=r"--num-generations 8 must divide .* = 6"):
        resolve([{"method": "grpo", "batch_size": 3, "gradient_accumulation_steps": 2, "dataset": "d.jsonl"}])
    with pytest.raises(SettingError, match="2 weights for 1 reward functions"):
        resolve([{"method": "grpo", "reward_weights": "1,2", "dataset": "d.jsonl"}])
    with pytest.raises(SettingError, match="--format-regex"):
        resolve([{"method": "grpo", "reward_funcs": "format_match", "format_regex": "(", "dataset": "d.jsonl"}])
    res = resolve([{"method": "grpo", "batch_size": 4, "gradient_accumulation_steps": 2, "num_generations": 4}])
    assert res["num_generations"] == 4


# --- the built-in rewards ---


def test_answer_match_reads_the_final_answer_as_gsm8k_and_tagged_replies_write_it():
    assert final_answer("so it is <answer> 72 </answer>") == " 72 "
    assert final_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == " 72"
    assert final_answer("48 + 24 = 72 clips") == "72"
    completions = [
        "<answer>1,000</answer>",
        "It is 72.",
        [{"role": "assistant", "content": "<answer>Paris</answer>"}],
        "5",
    ]
    answers = ["#### 1000", "72", "paris", "6"]
    assert answer_match(completions=completions, answer=answers) == [1.0, 1.0, 1.0, 0.0]


def test_format_and_length_rewards():
    fmt = format_match_for(r"(?s)<answer>.+</answer>")
    assert fmt.__name__ == "format_match"
    assert fmt(completions=["<answer>x</answer>", "x"]) == [1.0, 0.0]
    length = length_penalty_for(8)
    assert length(completion_ids=[[1, 2], [1] * 8]) == [-0.25, -1.0]


# --- prompt-only data ---


def test_prompt_only_rows_are_read_as_text_or_chat_and_keep_their_columns(tmp_path):
    data = write(tmp_path / "p.jsonl", [*prompt_rows(2), *prompt_rows(2, chat=False)])
    report = scan(str(data), method="grpo")
    assert report.format == "prompt_only" and report.columns == ["prompt", "topic"] and report.usable == 4
    csv = tmp_path / "p.csv"
    csv.write_text('prompt,answer\n"[{""role"": ""user"", ""content"": ""2+2?""}]",4\n')
    assert scan(str(csv), method="grpo").format == "prompt_only"


@pytest.mark.parametrize(
    "rows, method, said",
    [
        (
            [{"prompt": "q", "completion": "a"}],
            "grpo",
            "which --method sft trains; --method grpo needs a 'prompt' column",
        ),
        ([{"prompt": "q", "answer": "a"}], "sft", "prompt-only data, which --method grpo trains"),
        ([{"prompt": "q", "chosen": "a", "rejected": "b"}], "grpo", "which --method dpo, orpo or simpo trains"),
        (
            [{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}],
            "grpo",
            "the prompt ends with an assistant turn",
        ),
    ],
)
def test_data_for_another_method_is_refused_naming_the_method(tmp_path, rows, method, said):
    data = write(tmp_path / "d.jsonl", rows)
    with pytest.raises(DatasetError, match=said):
        scan(str(data), method=method)


# --- the user's reward file, checked before anything loads ---

GOOD = """
import re
def correct(prompts, completions, answer, **kwargs):
    return [1.0 if a in str(c) else 0.0 for c, a in zip(completions, answer)]
def fmt(completions, **kwargs):
    return [0.0 for _ in completions]
"""


@pytest.mark.parametrize(
    "source, spec, said",
    [
        (GOOD, "rewards.py:correct,fmt", None),
        ("def correct(:\n    pass\n", "rewards.py:correct", "rewards.py:1: it doesn't import: SyntaxError"),
        ("import no_such_module_here\n", "rewards.py:correct", "rewards.py:1: it doesn't import: ModuleNotFoundError"),
        (GOOD, "rewards.py:corect", "has no function 'corect' (it has: correct, fmt)"),
        (
            "def correct(prompts, completions):\n    return []\n",
            "rewards.py:correct",
            "end its parameters with **kwargs",
        ),
        ("def correct(completions, solution, **kw):\n    return []\n", "rewards.py:correct", "needs 'solution'"),
        ("correct = 3\n", "rewards.py:correct", "is not a function"),
        ("import sys\nsys.exit(3)\n", "rewards.py:correct", "SystemExit"),
    ],
)
def test_a_reward_file_is_checked_in_a_process_of_its_own(tmp_path, monkeypatch, source, spec, said):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rewards.py").write_text(source)
    res = resolve([{"method": "grpo", "reward_funcs": spec, "dataset": "d.jsonl"}])
    problem = rewards_problem(res, ["prompt", "answer"])
    if said is None:
        assert problem is None
    else:
        assert problem is not None and said in problem and "\n" not in problem, problem
    assert "rewards" not in sys.modules and not any(m.startswith("mgtui_rewards") for m in sys.modules)


def test_answer_match_without_an_answer_column_is_refused_naming_the_columns(tmp_path):
    res = resolve([{"method": "grpo", "dataset": "d.jsonl"}])
    problem = rewards_problem(res, ["prompt", "solution"])
    assert (
        problem is not None
        and "the rows have solution besides the prompt; map yours (--columns answer=NAME)" in problem
    )


def test_the_train_command_refuses_a_broken_reward_file_before_loading(tmp_path, capsys, tiny_model):
    data = write(tmp_path / "p.jsonl", prompt_rows(8))
    (tmp_path / "rewards.py").write_text(
        "def topic_said(completions, **kw):\n    return [1 / 0]\nraise ValueError('oops')\n"
    )
    out = tmp_path / "run"
    code = main(["train", "--base-model", str(tiny_model), "--dataset", str(data), "--method", "grpo",
                 "--reward-funcs", f"{tmp_path / 'rewards.py'}:topic_said", "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "rewards.py:3: it doesn't import: ValueError: oops" in err
    assert not out.exists()  # nothing started, nothing written


# --- the engine ---

REWARDS = '''
def says_one(completions, **kwargs):
    """The word "one", up to four times: a behaviour a model can learn by its tokens."""
    return [min(c[0]["content"].count("one"), 4) / 4 for c in completions]

def said_topic(completions, topic, **kwargs):
    return [float(t in c[0]["content"]) for c, t in zip(completions, topic)]
'''


def grpo_settings(model: Path, tmp_path: Path, **overrides: Any):
    data = write(tmp_path / "p.jsonl", prompt_rows(32))
    (tmp_path / "rewards.py").write_text(REWARDS)
    values: dict[str, Any] = dict(
        method="grpo",
        reward_funcs=f"{tmp_path / 'rewards.py'}:says_one,said_topic",
        num_generations=8,
        batch_size=16,
        max_completion_length=16,
        max_steps=20,
        learning_rate=3e-2,
    )
    values.update(overrides)
    return settings(model, data, tmp_path / "run", **values)


def test_a_learnable_reward_rises_and_the_completions_are_published(tmp_path, rl_tiny_model):
    code, run_dir = run_in_process(grpo_settings(rl_tiny_model, tmp_path))
    assert code == 0
    evs = events(run_dir)
    logs = [e for e in evs if e["type"] == "log"]
    assert len(logs) == 20
    rewards = [e["reward_funcs"]["says_one"] for e in logs]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.3, rewards
    for e in logs:
        assert {"reward", "reward_std", "completion_length", "completion_length_max", "clipped_ratio"} <= set(e)
        assert set(e["reward_funcs"]) == set(e["reward_funcs_std"]) == {"says_one", "said_topic"}
    shown = [e for e in evs if e["type"] == "completions"]
    assert [e["step"] for e in shown] == list(range(1, 21))  # one per logged step, not repeated at the end
    sample = shown[-1]["samples"][0]
    assert len(shown[-1]["samples"]) == 16 and "Say something about" in sample["prompt"]
    assert sample["reward"] == pytest.approx(sum(sample["rewards"].values()), abs=1e-3)
    said = [e["message"] for e in evs if e["type"] == "message"]
    assert "completions sampled with Transformers' generate" in said
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "grpo" and summary["reward"] == pytest.approx(logs[-1]["reward"])
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(rl_tiny_model), run_dir)
    assert any("lora_" in name for name, _ in tuned.named_parameters())


def test_a_grpo_run_stops_and_resumes(tmp_path, tiny_model):
    data = write(tmp_path / "p.jsonl", prompt_rows(32))
    (tmp_path / "rewards.py").write_text(REWARDS)
    flags = ["--base-model", str(tiny_model), "--dataset", str(data), "--output-dir", str(tmp_path / "run"),
             "--method", "grpo", "--reward-funcs", f"{tmp_path / 'rewards.py'}:says_one",
             "--num-generations", "4", "--batch-size", "8", "--gradient-accumulation-steps", "1",
             "--max-completion-length", "8", "--max-seq-length", "128", "--save-steps", "1000"]  # fmt: skip
    run_dir = tmp_path / "run"
    code, _, err = ctrl_c_after(["train", *flags, "--max-steps", "200"], run_dir)
    assert code == 130, err
    stopped = events(run_dir)[-1]
    assert stopped["type"] == "stopped" and 3 <= stopped["steps"] < 200
    assert rundir.run_state(run_dir).state == "stopped"
    done = subprocess.run(
        [sys.executable, "-m", "mgtui", "train", *flags, "--max-steps", str(stopped["steps"] + 2), "--resume"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    after = [e for e in events(run_dir) if e["seq"] > stopped["seq"]]
    steps = [e["step"] for e in after if e["type"] == "log"]
    assert steps == [stopped["steps"] + 1, stopped["steps"] + 2]
    assert [e["step"] for e in after if e["type"] == "completions"] == steps


async def test_the_forms_start_checks_the_reward_file_in_a_worker_and_refuses_in_one_line(tmp_path, tiny_model):
    from app_helpers import settle, wait_until

    from mgtui.tui.app import MgApp

    data = write(tmp_path / "p.jsonl", prompt_rows(8))
    (tmp_path / "rewards.py").write_text("def says_one(completions):\n    return [0.0] * len(completions)\n")
    values = {"dataset": str(data), "base_model": str(tiny_model), "output_dir": str(tmp_path / "o"),
              "method": "grpo", "reward_funcs": f"{tmp_path / 'rewards.py'}:says_one"}  # fmt: skip
    app = MgApp(values, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form = app.screen
        await wait_until(pilot, lambda: form.dataset_panel.report is not None)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: any("Start refused" in str(n.message) for n in app._notifications))
        said = [str(n.message) for n in app._notifications if "Start refused" in str(n.message)]
        assert "says_one doesn't take every argument TRL passes" in said[0] and "**kwargs" in said[0]
        assert app.screen is form and not (tmp_path / "o").exists()
