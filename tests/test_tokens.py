"""Dataset lengths in tokens: the form's count before any model loads, against the engine's."""

from __future__ import annotations

import json
import shutil

import pytest
from app_helpers import NO_GPU, settle, type_into
from engine_helpers import write_dataset

from mgtui.data.scan import scan
from mgtui.data.tokens import counter_for, find_tokenizer, length_stats
from mgtui.demo_model import builtin_model_dir
from mgtui.settings import resolve
from mgtui.tui.app import MgApp


def test_length_stats_counts_what_will_be_truncated():
    stats = length_stats([5, 1, 9, 3, 7, 9], 7)
    assert stats == {"tokens": {"min": 1, "mean": 5.7, "p95": 9, "max": 9}, "max_seq_length": 7, "truncated": 2}


def test_tokenizer_found_in_a_local_directory_and_the_hub_cache(tiny_model, tmp_path, monkeypatch):
    assert find_tokenizer(str(tiny_model)) == tiny_model / "tokenizer.json"
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_model / "tokenizer.json", snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_tokenizer("org/tiny") == snapshot / "tokenizer.json"
    assert counter_for("org/tiny").exact
    assert find_tokenizer("org/not-cached") is None
    assert find_tokenizer("builtin:tiny-llama") is None  # the demo's model: once the engine has built it
    shutil.copytree(tiny_model, builtin_model_dir())
    assert find_tokenizer("builtin:tiny-llama") == builtin_model_dir() / "tokenizer.json"
    assert not counter_for("org/not-cached").exact  # estimated from characters, and it says so
    assert "estimated" in counter_for("org/not-cached").how


@pytest.mark.parametrize("fmt", ["text", "messages", "sharegpt", "alpaca"])
def test_the_forms_count_is_the_engines_tokenization(tiny_model, tmp_path, fmt):
    """The form renders rows as the engine will (the chat template, the EOS it appends, special
    tokens) with the tokenizer alone, and so counts exactly what the engine trains on."""
    from transformers import AutoTokenizer

    from mgtui.train.datasets import tokenize_rows

    data = write_dataset(tmp_path / "train.jsonl", fmt)
    counter = counter_for(str(tiny_model), fmt)
    assert counter.exact and counter.problem is None
    report = scan(str(data), count=counter.count, render=counter.render)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    res = resolve([{"dataset": str(data), "base_model": str(tiny_model)}], set())
    examples, _ = tokenize_rows(res, fmt, rows, AutoTokenizer.from_pretrained(tiny_model))
    assert report.tokens == [len(e["input_ids"]) for e in examples] and len(report.tokens) == 64


def test_chat_data_without_a_template_is_flagged_before_the_run(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "chat_template.jinja").unlink()  # a base model whose tokenizer has no chat template
    counter = counter_for(str(model), "messages")
    assert counter.problem == (
        f"{model}: its tokenizer has no chat template; pass --chat-template (chatml, hermes, llama-3, gemma, zephyr)"
    )
    assert counter_for(str(model), "messages", "chatml").problem is None  # a named one fixes it
    assert "unknown template 'nope'" in counter_for(str(model), "messages", "nope").problem


async def test_the_form_warns_of_truncation_as_max_seq_length_changes(tiny_model, tmp_path, isolated_home):
    data = write_dataset(tmp_path / "train.jsonl", "text")
    counter = counter_for(str(tiny_model), "text")
    tokens = scan(str(data), count=counter.count, render=counter.render).tokens
    longest = max(tokens)
    app = MgApp({"base_model": str(tiny_model), "dataset": str(data)}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        panel = lambda: str(app.screen.query_one("#dataset").render())  # noqa: E731
        assert f"max {longest}" in panel() and "counted by the model's tokenizer" in panel()
        assert "truncated" not in panel()
        note = lambda: str(app.screen.query_one("#n-max_seq_length").render())  # noqa: E731
        await type_into(pilot, "max_seq_length", str(longest - 1))
        assert f"rows longer than max-seq-length {longest - 1}: they will be truncated" in panel()
        assert note() == f"{tokens.count(longest)} rows truncated"  # and under the field being edited
        await type_into(pilot, "max_seq_length", str(longest))
        assert "truncated" not in panel() and "truncated" not in note()


async def test_the_form_counts_rows_that_truncation_leaves_nothing_to_learn(tiny_model, tmp_path, isolated_home):
    """A prompt longer than max-seq-length leaves its row no trained token: the panel and the
    field's note say how many; when it is every row, Start is refused before any model loads."""
    long_rows = [{"prompt": "please " * 60 + str(i), "completion": "yes."} for i in range(6)]
    data = tmp_path / "pc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in long_rows))
    out = tmp_path / "out"
    values = {"base_model": str(tiny_model), "dataset": str(data), "output_dir": str(out), "max_seq_length": 32}
    app = MgApp(values, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        panel = lambda: str(app.screen.query_one("#dataset").render())  # noqa: E731
        assert "6 rows learn nothing: their prompt fills max-seq-length; the run would stop" in panel()
        assert str(app.screen.query_one("#n-max_seq_length").render()) == "6 learn nothing, 6 rows truncated"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert any(
            "Start refused:" in n.message and "nothing would be learned" in n.message for n in app._notifications
        )
        assert not out.exists()
        await type_into(pilot, "max_seq_length", "512")
        assert "learn nothing" not in panel()


NO_SYSTEM = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
)


async def test_a_row_the_chat_template_refuses_is_named_before_the_run(tiny_model, tmp_path, isolated_home):
    from transformers import AutoTokenizer

    from mgtui.data.scan import DatasetError
    from mgtui.train.datasets import tokenize_rows

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "chat_template.jinja").write_text(NO_SYSTEM)  # as Gemma's and Mistral's refuse a system turn
    data = write_dataset(tmp_path / "train.jsonl", "messages")
    said = f"{data}:1: the chat template refused this row: System role not supported"
    counter = counter_for(str(model), "messages")
    with pytest.raises(DatasetError) as e:
        scan(str(data), count=counter.count, render=counter.render)
    assert str(e.value) == said
    # The engine stops on the same row with the same words (it names rows by number, not line).
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    res = resolve([{"dataset": str(data), "base_model": str(model)}], set())
    with pytest.raises(DatasetError) as e:
        tokenize_rows(res, "messages", rows, AutoTokenizer.from_pretrained(model))
    assert str(e.value) == f"{data}: row 1: the chat template refused this row: System role not supported"
    # The form says so, and Start is refused rather than loading the model to fail.
    app = MgApp(
        {"base_model": str(model), "dataset": str(data), "output_dir": str(tmp_path / "out")},
        None,
        NO_GPU,
        offer_runs=False,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert said in str(app.screen.query_one("#dataset").render())
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert any(n.message == f"Start refused: {said}" for n in app._notifications)
        assert not (tmp_path / "out").exists()


def test_model_garden_train_names_the_refused_row_before_it_starts(tiny_model, tmp_path, capsys):
    from mgtui.cli import main

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "chat_template.jinja").write_text(NO_SYSTEM)
    data = write_dataset(tmp_path / "train.jsonl", "messages")
    code = main(["train", "--base-model", str(model), "--dataset", str(data), "--output-dir", str(tmp_path / "run")])
    assert code == 2
    assert capsys.readouterr().err == (
        f"model-garden train: error: {data}:1: the chat template refused this row: System role not supported\n"
    )
    assert not (tmp_path / "run").exists()  # nothing started, nothing written
