"""The conventions users bring, with rows written as those tools' documentation writes them: LLaMA-
Factory's dataset_info.json and its ShareGPT tool turns, content parts with 'value', plain .txt;
and the columns that change what a file means, used or refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mgtui.data.encode import encode_row
from mgtui.data.scan import DatasetError, iter_rows, scan, to_messages, tools_of
from mgtui.data.tokens import coder_for

LF = Path(__file__).parent / "data" / "llamafactory"  # rows as LLaMA-Factory's data/README.md writes them


@pytest.fixture
def lf(tmp_path, monkeypatch):
    """LLaMA-Factory's layout: data/dataset_info.json beside the files, run from the folder above."""
    shutil.copytree(LF, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def test_a_dataset_registered_for_llama_factory_works_by_name(lf):
    assert scan("identity").format == "alpaca"  # ./data/dataset_info.json, as LLaMA-Factory's dataset_dir
    assert scan("data/identity").usable == 2
    pretrain = scan("data/c4_demo")  # {"prompt": "text"}: a pre-training entry
    assert (pretrain.format, pretrain.sample) == ("text", "Beijing is the capital of China.")
    with pytest.raises(DatasetError, match="'on_the_hub' is on the Hub: use --dataset llamafactory/alpaca_en"):
        scan("on_the_hub")


def test_tags_and_roles_of_an_entry_are_read(lf):
    """The OpenAI-style entry (role/content tags) becomes a conversation with its system turn."""
    report = scan("data/openai_demo.json")  # the file itself: its entry is found beside it
    where, row = next(iter_rows(lf / "openai_demo.json"))
    assert report.format == "sharegpt"
    assert to_messages("sharegpt", row, where) == [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What colour is the sky?"},
        {"role": "assistant", "content": "The sky is blue."},
    ]


def test_sharegpt_function_call_and_observation_turns_become_tool_calls(lf):
    rows = list(iter_rows(lf / "glaive_toolcall_en_demo.json"))
    where, row = rows[0]
    msgs = to_messages("sharegpt", row, where)
    assert msgs is not None
    assert msgs[3] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "type": "function",
                "function": {
                    "name": "search_recipes",
                    "arguments": {"ingredients": ["chicken", "bell peppers", "rice"]},
                },
            }
        ],
    }
    assert msgs[4]["role"] == "tool" and "Stir Fry" in msgs[4]["content"]
    # tools as a JSON string, without the type: function wrapper (row 1) and with it (row 2)
    for where, row in rows:
        tools = tools_of(row, where)
        assert tools and tools[0]["type"] == "function" and tools[0]["function"]["name"] in ("search_recipes", "add")


def test_tool_turns_render_through_hermes_and_are_refused_by_plain_chatml(lf, tiny_model):
    where, row = next(iter_rows(lf / "glaive_toolcall_en_demo.json"))
    coder = coder_for(str(tiny_model), "sharegpt", "hermes")
    assert coder is not None
    done = encode_row("sharegpt", row, where, coder)
    assert done is not None
    rendered, encoded = done
    assert '<tool_call>\n{"name": "search_recipes", "arguments": {"ingredients": ' in rendered.text
    assert "<tool_response>" in rendered.text and '"name": "search_recipes", "description"' in rendered.text
    trained = "".join(rendered.text[a:b] for a, b in rendered.spans)
    assert "<tool_call>" in trained and "<tool_response>" not in trained
    own = coder_for(str(tiny_model), "sharegpt", "")  # the tiny model's ChatML drops tool calls
    assert own is not None
    with pytest.raises(DatasetError, match="turn 4 calls a tool.*--chat-template hermes"):
        encode_row("sharegpt", row, where, own)


def test_text_parts_written_with_value_are_read(tmp_path):
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "value": "What is 2 plus 2?"}]},
            {"role": "assistant", "content": [{"type": "text", "value": "4"}]},
        ]
    }
    path = tmp_path / "parts.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert scan(str(path)).sample == "user: What is 2 plus 2?\nassistant: 4"


def test_a_text_file_is_one_row_per_non_empty_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("The first line.\n\n  \nThe second line.\n")
    report = scan(str(path))
    assert (report.format, report.rows, report.sample) == ("text", 2, "The first line.")


def test_a_system_column_becomes_the_system_turn(tmp_path):
    row = {
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
        "system": "Be brief.",
    }
    assert to_messages("sharegpt", row, "x")[0] == {"role": "system", "content": "Be brief."}  # type: ignore[index]


@pytest.mark.parametrize(
    "row, said",
    [
        ({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, "preference (chosen/rejected) data, which --method dpo"),
        ({"chosen": [{"role": "user", "content": "2+2?"}], "rejected": []}, "preference (chosen/rejected) data"),
        (
            {"prompt": "2+2?", "completion": "5", "label": False},
            "KTO (replies labelled true/false) data, which --method kto",
        ),
        ({"prompt": "2+2?", "completions": ["4"], "labels": [True]}, "stepwise supervision data"),
        (
            {
                "conversations": [{"from": "human", "value": "2+2?"}],
                "chosen": {"from": "gpt", "value": "4"},
                "rejected": {"from": "gpt", "value": "5"},
            },
            "preference (chosen/rejected) data, which --method dpo, orpo or simpo trains",
        ),
        (
            {"messages": [{"role": "user", "content": "<image>Who?"}], "images": ["1.jpg"]},
            "'images' column holds media",
        ),
        ({"text": "a clip", "videos": ["1.mp4"]}, "'videos' column holds media, and mgtui trains text-only"),
        ({"text": "<image> a cat", "images": []}, "<image> in the text stands for media the row doesn't have"),
        ({"instruction": "2+2?", "output": "4", "system": "Be brief."}, "the 'system' column would be dropped"),
        ({"text": "hello", "tools": "[]" * 0 + '[{"name": "f"}]'}, "the 'tools' column would be dropped"),
    ],
)
def test_columns_that_change_the_meaning_are_refused_in_one_line(tmp_path, row, said):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DatasetError) as e:
        scan(str(path), method="sft")  # as `model-garden train` reads it by default
    assert said in str(e.value) and str(e.value).startswith(f"{path}:1: ") and "\n" not in str(e.value)


def test_registered_preference_kto_and_images_are_refused(lf):
    with pytest.raises(DatasetError, match="preference .chosen/rejected. data, which --method dpo, orpo or simpo"):
        scan("dpo_en_demo", method="sft")
    assert scan("dpo_en_demo", method="dpo").format in ("sharegpt_preference", "alpaca_preference")
    with pytest.raises(DatasetError, match="KTO .* which --method kto trains"):
        scan("kto_en_demo", method="sft")
    with pytest.raises(DatasetError, match="'images' column holds media"):
        scan("mllm_demo")


def test_skipped_rows_are_said_with_their_numbers_and_why(tmp_path):
    rows = [{"text": "one"}, {"text": ""}, {"text": "three"}, {"text": " "}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert scan(str(path)).skipped_line == "2 of 4 rows skipped, not trained: empty text (rows 2, 4)"


def test_dry_run_reads_the_data_as_a_run_does(tmp_path, capsys):
    from mgtui.cli import main

    bad = tmp_path / "pref.jsonl"
    bad.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    assert main(["train", "--dataset", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "preference (chosen/rejected) data" in err
    good = tmp_path / "t.txt"
    good.write_text("a line\n\nanother\n")
    assert main(["train", "--dataset", str(good), "--dry-run"]) == 0
    assert "text · 2 rows to train" in capsys.readouterr().err
