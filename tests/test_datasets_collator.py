"""One rendering path: what the inspector shows is what TRL's trainer feeds the model. The engine's
examples go through SFTTrainer's own preparation (labels from the masks, the cut at max_length)
and its data collator; the inspector's ids and labels, from the tokenizers library alone, must be
the same token for token, for rows of every format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mgtui.data.inspect import inspect_rows
from mgtui.settings import resolve

LF = Path(__file__).parent / "data" / "llamafactory"


def rows_of_every_format() -> dict[str, list[dict]]:
    q = [f"What is {i} plus {i}?" for i in range(3)]
    a = [f"{2 * i}." for i in range(3)]
    return {
        "text": [{"text": f"Q: {x}\nA: {y}"} for x, y in zip(q, a)],
        "messages": [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": x},
                    {"role": "assistant", "content": y},
                ]
            }
            for x, y in zip(q, a)
        ],  # fmt: skip
        "sharegpt": [
            {"conversations": [{"from": "human", "value": x}, {"from": "gpt", "value": y}]} for x, y in zip(q, a)
        ],
        "alpaca": [{"instruction": x, "input": "", "output": y} for x, y in zip(q, a)],
        "prompt_completion": [{"prompt": x, "completion": " " + y} for x, y in zip(q, a)],
        "chat_prompt_completion": [
            {"prompt": [{"role": "user", "content": x}], "completion": [{"role": "assistant", "content": y}]}
            for x, y in zip(q, a)
        ],
    }


def trainer_batch(res, tokenizer, model_dir: Path):
    """The batch SFTTrainer's collator makes of the engine's examples, as the engine builds them."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from mgtui.train.datasets import build_datasets

    train, _, report, _ = build_datasets(res, tokenizer, lambda p: None)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=SFTConfig(output_dir=str(model_dir.parent / "out"), max_length=res["max_seq_length"], use_cpu=True,
                       report_to=[], per_device_train_batch_size=8),
        train_dataset=train,
        processing_class=tokenizer,
    )  # fmt: skip
    examples = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    return trainer.data_collator(examples), report


@pytest.mark.parametrize("responses_only", [False, True])
def test_the_inspector_shows_what_the_trainers_collator_gives(tmp_path, tiny_model, responses_only):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cases = {f"{fmt}.jsonl": (fmt, rows) for fmt, rows in rows_of_every_format().items()}
    shutil.copy(LF / "glaive_toolcall_en_demo.json", tmp_path)
    cases["glaive_toolcall_en_demo.json"] = ("sharegpt", [])
    for name, (fmt, rows) in cases.items():
        cut = 40  # the Alpaca prompt alone is 61 tokens, the tools' system turn about 350: masked, they need more
        cut = (512 if "glaive" in name else 100) if responses_only else cut
        path = tmp_path / name
        if rows:
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        template = "hermes" if "glaive" in name else ""
        res = resolve([{"dataset": str(path), "base_model": str(tiny_model), "max_seq_length": cut,
                        "train_on_responses_only": responses_only, "chat_template": template, "eval_split": 0.0}])  # fmt: skip
        batch, report = trainer_batch(res, tokenizer, tiny_model)
        shown = inspect_rows(str(path), "auto", str(tiny_model), template, cut, responses_only)
        assert report["format"] == fmt == shown.format, name
        for n, row in enumerate(shown.rows):
            width = len(row.ids)
            assert batch["input_ids"][n][:width].tolist() == row.ids, (name, n)
            assert batch["labels"][n][:width].tolist() == row.labels, (name, n)
            assert set(batch["labels"][n][width:].tolist()) <= {-100}, (name, n)
