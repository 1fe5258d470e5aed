"""The training engine on the CPU with a tiny locally built Llama: real training, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import as_killed, ctrl_c_after, events, losses, run_in_process, settings, write_dataset

from mgtui.cli import main
from mgtui.runs import launch, rundir
from mgtui.settings import resolve
from mgtui.train import worker


@pytest.mark.parametrize(
    "fmt, responses_only",
    [("text", False), ("messages", False), ("messages", True), ("sharegpt", True), ("alpaca", False), ("alpaca", True)],
)
def test_each_format_trains_and_the_loss_falls(tmp_path, tiny_model, fmt, responses_only):
    data = write_dataset(tmp_path / f"{fmt}.jsonl", fmt)
    code, run_dir = run_in_process(settings(tiny_model, data, tmp_path / "run", train_on_responses_only=responses_only))
    assert code == 0, (
        (run_dir / "train.log").read_text()[-2000:] if (run_dir / "train.log").exists() else events(run_dir)[-1]
    )
    ls = losses(run_dir)
    assert len(ls) == 24
    assert sum(ls[-4:]) / 4 < ls[0] - 0.5  # a clear fall (in nats), far above step-to-step noise
    report = next(e for e in events(run_dir) if e["type"] == "dataset")
    assert report["format"] == fmt and report["rows"] == 64 and report["truncated"] == 0


def test_responses_only_masks_the_prompt(tiny_model):
    from transformers import AutoTokenizer

    from mgtui.settings import resolve
    from mgtui.train.datasets import tokenize_rows

    tok = AutoTokenizer.from_pretrained(tiny_model)
    res = resolve([{"train_on_responses_only": True, "dataset": "x"}])
    msgs = [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "2 plus 3 is 5."}]
    [ex], _ = tokenize_rows(res, "messages", [{"messages": msgs}], tok)
    learned = tok.decode([i for i, m in zip(ex["input_ids"], ex["assistant_masks"]) if m])
    assert learned.startswith("2 plus 3 is 5.") and "What is" not in learned and "user" not in learned


def test_run_directory_adapter_and_event_log(tmp_path, tiny_model, monkeypatch):
    secrets = ("hf_" + "Q" * 34, "0123456789abcdef" * 2 + "01234567")
    monkeypatch.setenv("HF_TOKEN", secrets[0])
    monkeypatch.setenv("WANDB_API_KEY", secrets[1])
    data = write_dataset(tmp_path / "d.jsonl", "messages")
    res = settings(tiny_model, data, tmp_path / "run", max_steps=12, save_steps=5, eval_split=0.1)
    code, run_dir = run_in_process(res)
    assert code == 0
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "settings.toml",
        "events.jsonl",
        "summary.json",
        "checkpoint-5",
        "checkpoint-10",
    ):
        assert (run_dir / name).exists(), name
    # The adapter reloads with PEFT.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), run_dir)
    assert any("lora_A" in n for n, _ in model.named_parameters())
    # The event log is complete and ordered.
    evs = events(run_dir)
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    types = [e["type"] for e in evs]
    assert types[0] == "phase" and types[-1] == "done"
    assert types.index("start") < types.index("dataset") < types.index("log")
    assert [e["step"] for e in evs if e["type"] == "log"] == list(range(1, 13))
    assert any(e["type"] == "eval" and "eval_loss" in e for e in evs)
    first_log = next(e for e in evs if e["type"] == "log")
    for key in (
        "step",
        "total_steps",
        "epoch",
        "loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_s",
        "samples_per_s",
        "eta_s",
    ):
        assert key in first_log, key
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["final_loss"] == pytest.approx(evs[-1]["final_loss"])
    assert {"torch", "transformers", "trl", "peft", "unsloth"} <= set(summary["versions"])
    # The sustained speed leaves out the first step's warm-up, and agrees with the logged rates.
    logs = [e for e in evs if e["type"] == "log"]
    assert summary["steady_steps_per_s"] == pytest.approx(11 / (logs[-1]["t"] - logs[0]["t"]), rel=0.05)
    assert summary["steady_tokens_per_s"] > 0
    assert rundir.run_state(run_dir).state == "done"
    # No secret from the environment is written anywhere in the run directory.
    for f in run_dir.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert not any(s.encode() in blob for s in secrets), f


def test_four_bit_settings_on_cpu_are_substituted_and_reported(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "text", n=16)
    res = settings(tiny_model, data, tmp_path / "run", max_steps=2, optim="paged_adamw_8bit")
    assert res.precision == 4
    code, run_dir = run_in_process(res)
    assert code == 0
    warnings = [e["message"] for e in events(run_dir) if e["type"] == "warning"]
    assert any("precision: 4-bit → 32-bit" in w for w in warnings)
    assert any("optim: paged_adamw_8bit → adamw_torch" in w for w in warnings)
    assert json.loads((run_dir / "summary.json").read_text())["substitutions"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgtui", *args], capture_output=True, text=True, timeout=timeout)


def test_stop_mid_run_saves_then_resume_continues_the_step_count(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=240)
    flags = [
        "train",
        "--base-model",
        str(tiny_model),
        "--dataset",
        str(data),
        "--output-dir",
        str(tmp_path / "run"),
        "--max-steps",
        "120",
        "--batch-size",
        "2",
        "--gradient-accumulation-steps",
        "1",
        "--save-steps",
        "1000",
        "--max-seq-length",
        "64",
    ]
    run_dir = tmp_path / "run"
    code, out, err = ctrl_c_after(flags, run_dir, timeout=120)
    said = [e.get("message") for e in events(run_dir) if e["type"] in ("message", "warning")]
    assert code == 130, (err, "stopping after" in out, said, (run_dir / "run.json").read_text())
    evs = events(run_dir)
    assert evs[-1]["type"] == "stopped"
    stopped_at = evs[-1]["steps"]
    assert 3 <= stopped_at < 120
    assert (run_dir / "adapter_model.safetensors").exists()
    assert (run_dir / f"checkpoint-{stopped_at}").is_dir()
    assert rundir.run_state(run_dir).state == "stopped"

    # Resume: the step count goes on from the checkpoint, to the same total (kept small: a busy
    # machine trains it slowly, and the check is the same at any total).
    done = cli(*flags[:-4], "--max-steps", "120", "--save-steps", "1000", "--max-seq-length", "64", "--resume")
    evs = events(run_dir)
    new_logs = [
        e for e in evs if e["type"] == "log" and e["seq"] > [x for x in evs if x["type"] == "stopped"][0]["seq"]
    ]
    assert done.returncode == 0, done.stderr
    assert new_logs[0]["step"] == stopped_at + 1 and new_logs[-1]["step"] == 120
    assert new_logs[0]["total_steps"] == 120


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "fine"}\n{"text": broken\n', ":2: invalid JSON"),
        ('{"prompt": "a", "answer": "b"}\n', "prompt-only data, which --method grpo trains; --method sft needs"),
        ('{"question": "a", "answer": "b"}\n', "no recognised fields; found columns ['answer', 'question']"),
        ("", "the dataset is empty"),
        ('{"text": ""}\n{"text": "   "}\n', "all 2 rows are empty after formatting as text"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "all 1 rows are empty after formatting as messages"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}\n', ":1: turn 1: unknown role 'robot'"),
    ],
)
def test_bad_datasets_fail_before_anything_starts(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    code = main(["train", "--dataset", str(bad), "--output-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(bad) in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_other_file_kinds_are_read(tmp_path):
    import csv

    from mgtui.data.scan import scan

    with open(tmp_path / "d.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["instruction", "input", "output"])
        w.writerow(["Add 1 and 2", "", "3"])
    assert scan(str(tmp_path / "d.csv")).format == "alpaca"
    (tmp_path / "d.json").write_text(json.dumps([{"text": "a"}, {"text": "b"}]))
    assert scan(str(tmp_path / "d.json")).rows == 2
    from datasets import Dataset

    Dataset.from_list(
        [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}] * 3
    ).save_to_disk(str(tmp_path / "saved"))
    r = scan(str(tmp_path / "saved"))
    assert (r.format, r.rows) == ("sharegpt", 3)
    Dataset.from_list([{"text": "a"}] * 5).to_parquet(str(tmp_path / "d.parquet"))
    assert scan(str(tmp_path / "d.parquet")).rows == 5


def test_occupied_output_directory_is_refused(tmp_path, capsys, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "text", n=8)
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text("{}")
    code = main(["train", "--base-model", str(tiny_model), "--dataset", str(data), "--output-dir", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "holds an adapter or checkpoints" in err and "--force" in err
    assert "--resume" not in err  # no checkpoint to resume from: not offered
    assert (run / "adapter_config.json").read_text() == "{}"
    # --force keeps the old run under another name rather than deleting it.
    res = settings(tiny_model, data, run, max_steps=1)
    _, said = launch.prepare(res, force=True)
    assert said and said.startswith("moved the previous contents aside to ")
    assert (Path(said.rsplit(" ", 1)[1]) / "adapter_config.json").read_text() == "{}"


@pytest.mark.parametrize(
    "command, expected",
    [
        ("import sys; sys.exit(3)", "ended with exit status 3 without a last word"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by signal SIGKILL"),
    ],
)
def test_supervisor_gives_a_resumed_run_that_dies_its_last_word(tmp_path, command, expected):
    """The log of a resumed run already ends with the previous stop: that is not this run's end."""
    from mgtui.runs.events import EventWriter

    run = tmp_path / "run"
    run.mkdir()
    w = EventWriter(run / "events.jsonl")
    w.emit("stopped", steps=4, final_loss=1.0, runtime_s=1.0, adapter=str(run))
    w.close()
    rundir.write_run_file(run, os.getpid())
    done = subprocess.run(
        [sys.executable, "-m", "mgtui.runs.supervise", str(run), "--", sys.executable, "-c", command], timeout=60
    )
    assert done.returncode == 1
    last = events(run)[-1]
    assert last["type"] == "failed" and expected in last["message"] and last["seq"] == 1
    assert rundir.run_state(run).state == "failed"


def test_resume_skips_a_torn_checkpoint_keeps_it_and_continues_from_the_last_whole_one(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "text", n=32)
    res = settings(tiny_model, data, tmp_path / "run", max_steps=8, save_steps=4)
    code, run_dir = run_in_process(res)
    assert code == 0 and rundir.latest_checkpoint(run_dir).name == "checkpoint-8"
    newest = run_dir / "checkpoint-8"
    saved = {p.name: p.read_bytes() for p in newest.iterdir() if p.is_file()}

    def torn(how) -> str | None:
        for name, content in saved.items():
            (newest / name).write_bytes(content)
        how()
        found, skipped = rundir.resumable_checkpoint(run_dir)
        assert found.name == "checkpoint-4" and skipped[0][0] == newest
        return skipped[0][1]

    def cut(name: str) -> None:
        (newest / name).write_bytes(saved[name][: len(saved[name]) // 2])

    assert torn(lambda: cut("optimizer.pt")) == "optimizer.pt is truncated"
    assert torn(lambda: cut("adapter_model.safetensors")) == "adapter_model.safetensors is truncated"
    assert torn(lambda: cut("trainer_state.json")) == "trainer_state.json is unreadable"
    assert torn(lambda: (newest / "scheduler.pt").unlink()) == "scheduler.pt is missing"
    assert torn(lambda: (newest / "trainer_state.json").unlink()) == "trainer_state.json is missing"

    as_killed(run_dir)  # a done run is not resumed: this one's engine was killed after its checkpoints
    code, _ = run_in_process(settings(tiny_model, data, run_dir, max_steps=8, save_steps=4, resume=True))
    assert code == 0
    evs = events(run_dir)
    assert any(
        e["type"] == "warning" and e["message"].startswith("skipped checkpoint-8: trainer_state.json is missing")
        for e in evs
    )
    assert any(e["type"] == "message" and e["message"] == "resuming from checkpoint-4" for e in evs)
    kept = list(run_dir.glob("torn-checkpoint-8-*"))
    assert len(kept) == 1 and (kept[0] / "optimizer.pt").exists()  # set aside, never deleted
    assert evs[-1]["type"] == "done" and evs[-1]["steps"] == 8


def test_a_model_directory_without_config_json_is_refused_before_loading(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "tokenizer.json").write_text("{}")
    data = write_dataset(tmp_path / "d.jsonl", "text", n=8)
    done = cli("train", "--base-model", str(model), "--dataset", str(data), "--output-dir", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        f"--base-model {model}: no config.json in this directory (not a Hugging Face model folder)"
    )
    assert "\n" not in done.stderr.strip() and not (tmp_path / "run").exists()


def test_a_full_disk_is_its_own_failure_with_free_space_and_advice(tmp_path):
    import errno

    (tmp_path / "checkpoint-40").mkdir()
    with (tmp_path / "checkpoint-40" / "optimizer.pt").open("wb") as f:
        f.truncate(50 * 2**20)  # sparse: its size counts, not the disk it takes
    for e in (
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError(
            "SafetensorError: Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
            'message: "No space left on device" })'
        ),
    ):
        assert worker.is_disk_full(e)
        report = worker.disk_full_report(tmp_path, e)
        assert str(tmp_path) in report["message"] and "GB free" in report["message"]
        assert report["checkpoint_gb"] == round(50 / 1024, 3) and report["free_gb"] > 0
        assert any("--output-dir" in a for a in report["advice_text"])
    assert not worker.is_disk_full(ValueError("bad"))


def test_a_killed_engine_is_reported_at_the_last_step_it_logged(tmp_path):
    from mgtui.runs.events import EventWriter
    from mgtui.runs.supervise import last_step

    w = EventWriter(tmp_path / "events.jsonl")
    for step in (1, 2, 3):
        w.emit("log", step=step, loss=1.0)
    w.emit("message", message="checkpoint saved at step 3")
    w.close()
    assert last_step(tmp_path) == 3


PROMPT_COMPLETION = {
    "prompt_completion": lambda q, a: {"prompt": f"Question: {q}\nAnswer:", "completion": f" {a}"},
    "chat_prompt_completion": lambda q, a: {
        "prompt": [{"role": "user", "content": q}],
        "completion": [{"role": "assistant", "content": a}],
    },
}


@pytest.mark.parametrize("fmt", list(PROMPT_COMPLETION))
def test_prompt_completion_is_detected_trains_and_learns_the_completion_only(tmp_path, tiny_model, fmt):
    """TRL's prompt-completion types, standard and conversational: the prompt is masked out of the loss."""
    from transformers import AutoTokenizer

    from mgtui.data.scan import scan
    from mgtui.train.datasets import tokenize_rows

    rows = [PROMPT_COMPLETION[fmt](f"What is {i} plus {i}?", f"{2 * i}.") for i in range(40)]
    data = tmp_path / "pc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert scan(str(data)).format == fmt
    res = settings(tiny_model, data, tmp_path / "run", max_steps=4)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    [ex], _ = tokenize_rows(res, fmt, rows[:1], tok)
    learned = tok.decode([i for i, m in zip(ex["input_ids"], ex["assistant_masks"]) if m])
    assert learned.strip().startswith("0.") and "What is" not in learned
    code, run_dir = run_in_process(res)
    assert code == 0
    assert json.loads((run_dir / "summary.json").read_text())["dataset"]["format"] == fmt


def test_rows_that_truncation_leaves_nothing_to_learn(tmp_path, tiny_model):
    """A response that starts after max_seq_length trains on no token: such rows are skipped with a
    warning, and when every row is such, the run stops with the length that would keep them (exit 2)."""
    from transformers import AutoTokenizer

    from mgtui.train.datasets import tokenize_rows

    long_q = "please " * 60
    rows = [PROMPT_COMPLETION["prompt_completion"](long_q + str(i), "yes.") for i in range(6)]
    rows += [PROMPT_COMPLETION["prompt_completion"](f"short {i}", "yes.") for i in range(2)]
    tok = AutoTokenizer.from_pretrained(tiny_model)
    res = resolve([{"base_model": str(tiny_model), "dataset": "d.jsonl", "max_seq_length": 32}])
    said: list[str] = []
    examples, _ = tokenize_rows(res, "prompt_completion", rows, tok, warn=said.append)
    assert len(examples) == 2 and said and said[0].startswith("6 of 8 rows skipped")
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    code, run_dir = run_in_process(settings(tiny_model, data, tmp_path / "run", max_steps=2, max_seq_length=32))
    failed = events(run_dir)[-1]
    assert code == 2 and failed["type"] == "failed" and failed["kind"] == "input"
    assert "--max-seq-length" in failed["message"] and "nothing would be learned" in failed["message"]


def test_content_given_as_text_parts_is_joined_and_an_image_is_refused(tmp_path, tiny_model):
    from mgtui.data.scan import DatasetError, scan

    parts = [{"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2 + 2?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "4."}]}]  # fmt: skip
    data = tmp_path / "parts.jsonl"
    data.write_text("".join(json.dumps({"messages": parts}) + "\n" for _ in range(24)))
    assert "user: What is 2 + 2?" in scan(str(data)).sample
    code, _ = run_in_process(settings(tiny_model, data, tmp_path / "run", max_steps=2))
    assert code == 0
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}}]}, parts[1]]
    (tmp_path / "img.jsonl").write_text(json.dumps({"messages": image}) + "\n")
    with pytest.raises(DatasetError, match=r"img.jsonl:1: turn 1: an image part"):
        scan(str(tmp_path / "img.jsonl"))


def test_full_fine_tuning_trains_every_weight_and_saves_the_model(tmp_path, tiny_model):
    from mgtui.tui.screens.run import load_snippet

    data = write_dataset(tmp_path / "d.jsonl", "text", n=16)
    res = settings(tiny_model, data, tmp_path / "run", max_steps=3, full_finetuning=True, load_in_16bit=True)
    code, run_dir = run_in_process(res)
    assert code == 0
    assert (run_dir / "model.safetensors").exists() and not (run_dir / "adapter_config.json").exists()
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run_dir).state_dict()
    assert any(not (before[k] == after[k]).all() for k in before if "layers.0.mlp" in k)  # the weights moved
    assert "AutoModelForCausalLM.from_pretrained" in load_snippet(run_dir)


def tool_rows(n: int) -> list[dict]:
    """OpenAI-style tool-calling conversations: a call (arguments as JSON text), its result, the answer."""
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    rows = []
    for i in range(n):
        call = {"id": f"c{i}", "type": "function", "function": {"name": "add", "arguments": f'{{"a": {i}, "b": {i}}}'}}
        rows.append({
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": f"c{i}", "content": str(2 * i)},
                {"role": "assistant", "content": f"It is {2 * i}."},
            ],
            "tools": tools,
        })  # fmt: skip
    return rows


def test_tool_calls_train_through_a_template_that_renders_them(tmp_path, tiny_model):
    """The calls and the answer are learned, the tool's result is not, and the form's count agrees
    with the engine's tokens."""
    from transformers import AutoTokenizer

    from mgtui.data.scan import scan
    from mgtui.data.tokens import counter_for
    from mgtui.train.datasets import tokenize_rows

    rows = tool_rows(32)
    data = tmp_path / "tools.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = settings(
        tiny_model,
        data,
        tmp_path / "run",
        max_steps=4,
        chat_template="hermes",
        train_on_responses_only=True,
        max_seq_length=512,
    )
    tok = AutoTokenizer.from_pretrained(tiny_model)
    examples, _ = tokenize_rows(res, "messages", rows[3:4], tok)
    learned = tok.decode([i for i, m in zip(examples[0]["input_ids"], examples[0]["assistant_masks"]) if m])
    assert '{"name": "add", "arguments": {"a": 3, "b": 3}}' in learned and "It is 6." in learned
    assert "What is" not in learned and "<tool_response>" not in learned
    counter = counter_for(str(tiny_model), "messages", "hermes")
    assert scan(str(data), count=counter.count, render=counter.render, limit=4).tokens[3] == len(
        examples[0]["input_ids"]
    )
    code, run_dir = run_in_process(res)
    assert code == 0
    assert json.loads((run_dir / "summary.json").read_text())["dataset"]["format"] == "messages"


def test_tool_calls_under_a_template_without_them_are_refused_before_the_run(tmp_path, tiny_model, capsys):
    """The tiny model's own ChatML ignores tool calls: the row is named, and nothing starts."""
    from transformers import AutoTokenizer

    from mgtui.data.scan import DatasetError
    from mgtui.train.datasets import tokenize_rows

    data = tmp_path / "tools.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tool_rows(4)))
    run = tmp_path / "run"
    code = main(["train", "--base-model", str(tiny_model), "--dataset", str(data), "--output-dir", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and not run.exists()
    assert err == (
        f"model-garden train: error: {data}:1: turn 2 calls a tool, and the chat template does not render tool calls; "
        "use a model whose template does, or --chat-template hermes\n"
    )
    res = resolve([{"dataset": str(data), "base_model": str(tiny_model)}])
    with pytest.raises(DatasetError, match=r"row 1: turn 2 calls a tool"):  # the engine says the same
        tokenize_rows(res, "messages", tool_rows(1), AutoTokenizer.from_pretrained(tiny_model))


def test_rows_with_nothing_to_learn_are_found_before_the_model_loads(tmp_path, tiny_model, capsys):
    long_q = "please " * 60
    rows = [PROMPT_COMPLETION["prompt_completion"](long_q + str(i), "yes.") for i in range(6)]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    argv = ["train", "--base-model", str(tiny_model), "--dataset", str(data), "--output-dir", str(run)]
    code = main([*argv, "--max-seq-length", "32"])
    err = capsys.readouterr().err
    assert code == 2 and not run.exists()  # refused before any run directory or model
    assert "in every row the response starts after max_seq_length 32" in err and err.count("\n") == 1
    # Some rows: a warning, and the run goes ahead without them.
    data.write_text(
        "".join(json.dumps(r) + "\n" for r in rows + [PROMPT_COMPLETION["prompt_completion"]("hi", "yes.")])
    )
    code = main([*argv, "--max-seq-length", "32", "--max-steps", "1", "--batch-size", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: 6 of 7 rows skipped: their response starts after max_seq_length 32" in err
