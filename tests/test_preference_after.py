"""After a preference run: the quick look (--eval-prompts), chat and the merged export work on a
DPO run's adapter as on an SFT run's (test_after_training.py's checks, on a few DPO steps)."""

from __future__ import annotations

import json

from engine_helpers import events, run_in_process, settings
from test_after_training import QUESTION, logits
from test_preference import preference_rows, write

from mgtui.cli import main


def test_a_dpo_run_answers_chats_and_exports_merged(tmp_path, tiny_model, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mgtui.train.generate import answer, load

    data = write(tmp_path / "pairs.jsonl", preference_rows(16, chat=True))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 11 plus 5?\nName a colour.\n")
    res = settings(tiny_model, data, tmp_path / "run", method="dpo", max_steps=3, eval_prompts=str(prompts))
    code, run_dir = run_in_process(res)
    assert code == 0, (run_dir / "train.log").read_text()[-2000:]
    rows = [json.loads(x) for x in (run_dir / "answers.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["What is 11 plus 5?", "Name a colour."]
    assert all(r["tuned"] and r["base"] is not None for r in rows)
    assert any(e["type"] == "answers" for e in events(run_dir))

    m = load(run_dir, device="cpu")  # what the chat process loads
    assert answer(m, QUESTION, "tuned", max_new_tokens=8)[0] and answer(m, QUESTION, "base", max_new_tokens=8)[0]

    target = tmp_path / "out"
    capsys.readouterr()  # the in-process trainer's own prints
    assert main(["export", str(run_dir), "--merged", "--to", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)  # --to DIR holds the merged model itself
    merged = AutoModelForCausalLM.from_pretrained(str(target)).eval()
    tok = AutoTokenizer.from_pretrained(str(target))
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(run_dir)).eval()
    expected, got = logits(tuned, tok), logits(merged, tok)
    assert float((expected - got).abs().max()) < 0.05 * float(expected.abs().max())  # bf16's rounding
