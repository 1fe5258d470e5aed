"""Preference training (DPO, ORPO, SimPO, KTO): the rows as TRL's trainers take them, and the
trainer and its config for each method. Imported only in the training process.

The rows go through data/encode.py, the path the form, the pre-flight and the inspector share, so
DPO and KTO get token ids (their trainers' own tokenizing is skipped: it would add the tokenizer's
BOS to a chat template's text that has one). TRL's CPO and ORPO trainers (trl/experimental) take
text only, so they get the same rendering as text.

With LoRA there is no second copy of the model: DPO and KTO compute the reference with the adapter
disabled (trl/trainer/dpo_trainer.py, `_compute_loss`: `use_adapter(model, adapter_name=None)`),
or, for a run that starts from another run's adapter, with a frozen copy of that adapter named
"ref" (dpo_trainer.py, `__init__`: `model.add_adapter("ref", ...)`), so the reference is the SFT
model, as the DPO recipe wants. ORPO and SimPO have no reference.
"""

from __future__ import annotations

from typing import Any, Callable

from ..data.encode import encode_preferences, render_preference, transformers_coder
from ..data.scan import DatasetError
from ..data.templates import template_for
from ..data.tokens import length_stats
from ..settings import Resolved
from .backends import RuntimePlan, sft_kwargs
from .datasets import Skips, held_out, load_rows, rendered_batches

SFT_ONLY = ("packing",)  # SFTConfig's own arguments


def preference_examples(
    res: Resolved, fmt: str, rows: list[dict[str, Any]], tokenizer: Any, progress: Callable[[float], None]
) -> tuple[list[dict[str, Any]], list[int], str | None, bool]:
    """(examples for the method's trainer, each example's longest sequence in tokens, skipped line,
    whether the rows were chat, rendered by the template)."""
    coder = transformers_coder(
        tokenizer, template_for(fmt, res["chat_template"], getattr(tokenizer, "chat_template", None), res["base_model"])
    )
    method, cut = res["method"], res["max_prompt_length"]
    out: list[dict[str, Any]] = []
    lengths: list[int] = []
    skips = Skips(fmt)
    chat = False

    def render(row: dict[str, Any], n: int) -> Any:
        return render_preference(fmt, row, f"{res['dataset']}: row {n}", coder)

    for start, rendered in rendered_batches(rows, render, skips):
        chat = chat or any(r.replies[0].messages is not None for r in rendered)
        for ids in encode_preferences(rendered, coder):
            ids = ids.cut_prompt(cut)
            lengths.append(len(ids.prompt) + max(len(r) for r in ids.replies))
            if method == "kto":
                out.append({"prompt_ids": ids.prompt, "completion_ids": ids.replies[0], "label": bool(ids.label)})
            elif method == "dpo":
                out.append({"prompt_ids": ids.prompt, "chosen_ids": ids.replies[0], "rejected_ids": ids.replies[1]})
            else:
                prompt = ids.prompt_text if not cut else tokenizer.decode(ids.prompt)
                out.append({"prompt": prompt, "chosen": ids.reply_texts[0], "rejected": ids.reply_texts[1]})
        progress(min(start + 256, len(rows)) / len(rows))
    if not out:
        raise DatasetError(f"{res['dataset']}: all {len(rows)} rows are empty after formatting as {fmt}")
    return out, lengths, skips.line(len(rows)), chat


def build_preference_datasets(res: Resolved, tokenizer: Any, progress: Callable[[float], None]):
    """(train Dataset, eval Dataset or None, report dict, warnings), as build_datasets for SFT."""

    fmt, rows = load_rows(res)
    examples, lengths, skipped, chat = preference_examples(res, fmt, rows, tokenizer, progress)
    warnings = [skipped] if skipped else []
    report = {"rows": len(rows), "format": fmt, "chat": chat, "skipped_empty": len(rows) - len(examples)}
    report.update(length_stats(lengths, res["max_seq_length"]))
    if report["truncated"]:
        warnings.append(
            f"{report['truncated']} of {len(examples)} rows are longer than max_seq_length "
            f"{res['max_seq_length']} (prompt and reply) and will be truncated"
        )
    if res["method"] == "kto":
        good = sum(e["label"] for e in examples)
        report["desirable"], report["undesirable"] = good, len(examples) - good
    ds, eval_ds = held_out(examples, res, report, warnings)
    return ds, eval_ds, report, warnings


def method_kwargs(res: Resolved, plan: RuntimePlan, output_dir: str, has_eval: bool) -> dict[str, Any]:
    """The method's config arguments: the shared TrainingArguments of sft_kwargs, then its own."""
    kw = {k: v for k, v in sft_kwargs(res, plan, output_dir, has_eval).items() if k not in SFT_ONLY}
    method = res["method"]
    kw["beta"] = res["beta"]
    if method == "dpo":
        kw["loss_type"] = [res["dpo_loss_type"]]
    elif method == "simpo":
        # SimPO is CPO's "simpo" loss without CPO's behaviour-cloning term (cpo_config.py: cpo_alpha;
        # the SimPO paper's objective has none).
        kw.update(loss_type="simpo", simpo_gamma=res["simpo_gamma"], cpo_alpha=0.0)
    elif method == "kto":
        kw.update(desirable_weight=res["desirable_weight"], undesirable_weight=res["undesirable_weight"])
    if method in ("orpo", "simpo"):
        # Their batches hold chosen_input_ids and rejected_input_ids, not input_ids: the Trainer's
        # token count would find nothing to count.
        kw["include_num_input_tokens_seen"] = "no"
    return kw


def make_trainer(
    res: Resolved, model: Any, tokenizer: Any, args: dict[str, Any], train: Any, eval_: Any, callbacks: list
):
    """The TRL trainer for the method, on the model with its adapter already in place."""
    method = res["method"]
    common = dict(model=model, train_dataset=train, eval_dataset=eval_, processing_class=tokenizer, callbacks=callbacks)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        class Tokenized(DPOTrainer):
            def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
                return dataset  # ids from data/encode.py

        return Tokenized(args=DPOConfig(**args), **common)
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        class TokenizedKTO(KTOTrainer):
            def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
                # What KTOTrainer._prepare_dataset does after tokenizing (trl/trainer/kto_trainer.py,
                # "Add KL completions if needed"): each completion paired with the batch's previous
                # prompt, for the KL term.
                if not self.calculate_KL:
                    return dataset

                def rotate(examples):
                    examples["KL_completion_ids"] = [examples["completion_ids"][-1]] + examples["completion_ids"][:-1]
                    return examples

                return dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size)

        return TokenizedKTO(args=KTOConfig(**args), **common)
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer(args=ORPOConfig(**args), **common)
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return CPOTrainer(args=CPOConfig(**args), **common)
