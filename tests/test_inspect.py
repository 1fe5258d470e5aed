"""The inspector: `model-garden inspect` in the terminal, and f3 on the form (driven with Pilot,
with snapshots at 80x24 and 120x40). The row-to-tokens path itself is checked against TRL's
collator in test_datasets_collator.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_helpers import NO_GPU, settle, wait_until

from mgtui.data.inspect import inspect_rows
from mgtui.tui.app import MgApp

SIZES = [(80, 24), (120, 40)]
ROWS = [
    {"messages": [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "What colour is the sky?"},
                  {"role": "assistant", "content": "Blue."}]},
    {"messages": [{"role": "user", "content": "Say nothing."}, {"role": "assistant", "content": ""}]},
    {"messages": [{"role": "user", "content": "What is 2 plus 2? " * 4}, {"role": "assistant", "content": "Four."}]},
]  # fmt: skip
DROPS_SYSTEM = (
    "{% for m in messages %}{% if m['role'] != 'system' %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] "
    "+ '<|im_end|>\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture
def chat(tmp_path: Path) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_trained_tokens_the_cut_and_the_warnings(chat, tiny_model):
    view = inspect_rows(str(chat), "auto", str(tiny_model), "", 24, True)
    assert [r.number for r in view.rows] == [1, 3] and "row 2" in (view.skipped or "")
    first = view.rows[0]
    trained = "".join(p.text for p in first.pieces if p.trained)
    assert trained == "Blue.<|im_end|>\n" and first.labels.count(-100) == len(first.ids) - first.trained
    assert any(p.special and p.text == "<|im_end|>" for p in first.pieces)
    third = view.rows[1]  # its question fills the 24 tokens: nothing of its answer is seen
    assert len(third.ids) == 24 and any(p.cut for p in third.pieces)
    assert third.warnings == ["every label is -100: this row trains nothing (the trainer drops it)"]
    dropped = inspect_rows(str(chat), "auto", str(tiny_model), DROPS_SYSTEM, 512, True)
    assert "the chat template dropped this row's system prompt" in dropped.rows[0].warnings
    zephyr = inspect_rows(str(chat), "auto", str(tiny_model), "zephyr", 512, True)  # its own EOS token
    assert zephyr.warnings == [] and not zephyr.rows[0].warnings  # eos_token is what zephyr writes
    no_eos = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    plain = inspect_rows(str(chat), "auto", str(tiny_model), no_eos, 512, True)
    assert "a trained reply ends without EOS (<|im_end|>): the model won't learn to stop" in plain.rows[0].warnings


def test_model_garden_inspect_prints_the_row(chat, tiny_model, capsys):
    from mgtui.cli import main

    args = ["inspect", "--base-model", str(tiny_model), "--dataset", str(chat), "--train-on-responses-only"]
    assert main([*args, "--row", "1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "row 1 (1 of 2) · messages · 35 tokens · 6 trained (17%) · file 16% trained"
    assert "<|im_start|>assistant\n⟦Blue.<|im_end|>\n⟧" in out
    assert main([*args, "--row", "1", "--ids"]) == 0
    assert '   -100  "<|im_start|>"' in capsys.readouterr().out
    assert main([*args, "--row", "2"]) == 2
    assert capsys.readouterr().err == (
        "model-garden inspect: error: --row 2: not a row the trainer gets: it is skipped (empty after formatting)\n"
    )


async def open_inspector(pilot) -> None:
    await settle(pilot)
    await pilot.press("f3")
    await wait_until(pilot, lambda: getattr(pilot.app.screen, "ready", False), "the inspector's first row")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_inspector_snapshot(snap_compare, chat, tiny_model, size):
    app = MgApp({"base_model": str(tiny_model), "dataset": str(chat), "train_on_responses_only": True,
                 "max_seq_length": 24}, None, NO_GPU, offer_runs=False)  # fmt: skip
    assert snap_compare(app, terminal_size=size, run_before=open_inspector)


async def test_inspector_keys(chat, tiny_model):
    app = MgApp({"base_model": str(tiny_model), "dataset": str(chat), "train_on_responses_only": True},
                None, NO_GPU, offer_runs=False)  # fmt: skip
    async with app.run_test(size=(80, 24)) as pilot:
        await open_inspector(pilot)
        screen = app.screen
        head = lambda: str(screen.query_one("#inspect-head").render())  # noqa: E731
        assert head().startswith("row 1 (1 of 2)")
        await pilot.press("n")
        await wait_until(pilot, lambda: head().startswith("row 3 (2 of 2)"), "the next row")
        await pilot.press("p")
        await wait_until(pilot, lambda: head().startswith("row 1"), "the previous row")
        await pilot.press("r")
        assert "pos      id   label  text" in str(screen.query_one("#inspect-body").render())
        await pilot.press("g")
        await wait_until(pilot, lambda: app.focused is not None and app.focused.id == "inspect-jump", "the jump field")
        await pilot.press("3", "enter")
        await wait_until(pilot, lambda: head().startswith("row 3"), "row 3")
        await pilot.press("escape")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "FormScreen", "the form")


PAIRS = [
    {"prompt": [{"role": "user", "content": "What colour is the sky?"}], "chosen": [{"role": "assistant", "content": "Blue."}],
     "rejected": [{"role": "assistant", "content": "Green, surely."}]},
]  # fmt: skip


def test_model_garden_inspect_shows_chosen_and_rejected(tmp_path, tiny_model, capsys):
    from mgtui.cli import main

    pairs, kto = tmp_path / "pairs.jsonl", tmp_path / "kto.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    kto.write_text(json.dumps({"prompt": "Hi", "completion": " go away", "label": False}) + "\n")
    assert main(["inspect", "--base-model", str(tiny_model), "--dataset", str(pairs), "--method", "dpo"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "row 1 (1 of 1) · preference · prompt 14 tokens · chosen 6 trained · rejected 11 trained"
    assert out[out.index("── chosen ──") + 1] == "⟦Blue.<|im_end|>"  # every reply token, as DPO's loss
    assert out[out.index("── rejected ──") + 1] == "⟦Green, surely.<|im_end|>"
    assert "<|im_start|>assistant" in out[out.index("── prompt ──") : out.index("── chosen ──")]
    args = ["inspect", "--base-model", str(tiny_model), "--dataset", str(pairs), "--method", "dpo"]
    assert main([*args, "--max-prompt-length", "12", "--max-seq-length", "16"]) == 0
    out = capsys.readouterr().out
    assert "prompt 12 tokens · chosen 4 trained · rejected 4 trained" in out  # 16 in all
    assert "\n✂ max-prompt-length: the trainer sees nothing above\n" in out and "✂ max-seq-length" in out
    assert main(["inspect", "--base-model", str(tiny_model), "--dataset", str(kto), "--method", "kto"]) == 0
    out = capsys.readouterr().out
    assert "── reply (undesirable) ──\n⟦ go away" in out and "reply (undesirable) 7 trained" in out


async def test_inspector_stacks_chosen_over_rejected(tmp_path, tiny_model):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    app = MgApp({"base_model": str(tiny_model), "dataset": str(pairs), "method": "dpo"}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_inspector(pilot)
        body = str(app.screen.query_one("#inspect-body").render())
        assert body.index("── prompt ──") < body.index("── chosen ──\nBlue.") < body.index("── rejected ──\nGreen")
        assert str(app.screen.query_one("#inspect-head").render()).endswith("chosen 6 trained · rejected 11 trained")
        await pilot.press("r")
        assert str(app.screen.query_one("#inspect-body").render()).count("pos      id   label  text") == 3
