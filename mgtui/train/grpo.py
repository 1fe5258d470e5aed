"""GRPO (online RL with reward functions): the prompts as TRL's GRPOTrainer takes them, its config,
and the trainer, which also publishes the sampled completions as events. Imported only in the
training process.

Prompts stay in the type the user gave (text, or chat turns that TRL renders with the tokenizer's
template and its generation prompt: trl/trainer/grpo_trainer.py, `_tokenize_prompts`); the row's
other columns reach the reward functions. The lengths come from data/encode.py's render_prompt, the
path the inspector shows. A prompt longer than max_seq_length - max_completion_length is skipped and
said: TRL 1.14 cuts no prompt, and the sequence would outgrow the length the run is sized for.

With LoRA there is no second copy of the model: with kl_beta > 0 TRL computes the reference with the
adapter disabled (grpo_trainer.py `_get_per_token_logps_and_entropies` under `use_adapter(...,
adapter_name=None)`); with kl_beta 0 (TRL's default) it computes no reference at all.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

from ..data.encode import encode_rows, render_prompt, transformers_coder
from ..data.scan import DatasetError
from ..data.templates import template_for
from ..data.tokens import length_stats
from ..reward_spec import parse_rewards, parse_weights
from ..settings import Resolved
from .backends import RuntimePlan, sft_kwargs
from .datasets import Skips, held_out, load_rows, rendered_batches
from .rewards import load_rewards

SFT_ONLY = ("packing", "max_length")  # SFTConfig's own arguments
SAMPLES_SHOWN = 16  # completions per `completions` event
TEXT_CUT = 2000


def build_grpo_datasets(res: Resolved, tokenizer: Any, progress: Callable[[float], None]):
    """(train Dataset, eval Dataset or None, report dict, warnings), as build_datasets for SFT."""
    fmt, rows = load_rows(res)
    template = template_for(fmt, res["chat_template"], getattr(tokenizer, "chat_template", None), res["base_model"])
    coder = transformers_coder(tokenizer, template)
    limit = res["max_seq_length"] - res["max_completion_length"]
    if res["max_prompt_length"]:
        limit = min(limit, res["max_prompt_length"])
    skips = Skips(fmt)
    examples: list[dict[str, Any]] = []
    lengths: list[int] = []
    too_long: list[int] = []
    chat = False

    def render(row: dict[str, Any], n: int) -> Any:
        rendered = render_prompt(row, f"{res['dataset']}: row {n}", coder)
        return None if rendered is None else (n, rendered, row)

    for start, batch in rendered_batches(rows, render, skips):
        for (n, rendered, row), enc in zip(batch, encode_rows([b[1] for b in batch], coder)):
            if len(enc.ids) > limit:
                too_long.append(n)
                continue
            chat = chat or rendered.messages is not None
            lengths.append(len(enc.ids))
            # the prompt as read (chat turns checked, or the text); the other columns as they are
            examples.append({**row, "prompt": rendered.messages if rendered.messages is not None else rendered.text})
        progress(min(start + 256, len(rows)) / len(rows))
    warnings = [w for w in [skips.line(len(rows))] if w]
    if too_long:
        shown = ", ".join(map(str, too_long[:5])) + (", …" if len(too_long) > 5 else "")
        said = (
            f"{len(too_long)} of {len(rows)} prompts are longer than {limit} tokens (max_seq_length "
            f"{res['max_seq_length']} less max_completion_length {res['max_completion_length']}"
            f"{', or max_prompt_length' if res['max_prompt_length'] else ''}) and are skipped, not trained "
            f"(rows {shown})"
        )
        if not examples:
            raise DatasetError(f"{res['dataset']}: {said}: nothing is left to train on")
        warnings.append(said)
    if not examples:
        raise DatasetError(f"{res['dataset']}: all {len(rows)} rows are empty after formatting as {fmt}")
    report = {
        "rows": len(rows),
        "format": fmt,
        "chat": chat,
        "skipped_empty": skips.count,
        "skipped_long": len(too_long),
    }
    report.update(length_stats(lengths, res["max_seq_length"]))  # none is cut: longer prompts were skipped
    if chat:  # TRL renders chat prompts with the tokenizer's own template: the one the inspector used
        tokenizer.chat_template = template
    ds, eval_ds = held_out(examples, res, report, warnings)
    return ds, eval_ds, report, warnings


def grpo_kwargs(res: Resolved, plan: RuntimePlan, output_dir: str, has_eval: bool) -> dict[str, Any]:
    """GRPOConfig's arguments: the shared TrainingArguments of sft_kwargs, then GRPO's own."""
    kw = {k: v for k, v in sft_kwargs(res, plan, output_dir, has_eval).items() if k not in SFT_ONLY}
    weights = parse_weights(res["reward_weights"], len(parse_rewards(res["reward_funcs"])))
    kw.update(
        num_generations=res["num_generations"],
        max_completion_length=res["max_completion_length"],
        temperature=res["temperature"],
        beta=res["kl_beta"],
        loss_type=res["grpo_loss_type"],
        reward_weights=weights,
        # The evaluation batch also holds whole groups (grpo_config.py __post_init__)
        per_device_eval_batch_size=res["num_generations"],
        log_completions=False,  # its table goes to the console and a parquet; ours is the `completions` event
        # The batch holds prompt_ids and completion_ids, not input_ids: nothing to count
        include_num_input_tokens_seen="no",
    )
    return kw


def generation_path(plan: RuntimePlan) -> str:
    """Which generate the run samples with, in words. Unsloth's fast generation is vLLM's, enabled
    by `fast_inference=True` at load and refused without vLLM (unsloth/models/loader.py: "Please
    install vLLM before enabling `fast_inference`"); mgtui doesn't install vLLM."""
    if plan.backend != "unsloth":
        return "completions sampled with Transformers' generate"
    if importlib.util.find_spec("vllm") is None:
        return (
            "completions sampled with Transformers' generate on Unsloth's model (Unsloth's fast generation "
            "needs vLLM, which isn't installed)"
        )
    return "completions sampled with Transformers' generate on Unsloth's model (vLLM is installed, but not used)"


def make_trainer(
    res: Resolved,
    model: Any,
    tokenizer: Any,
    args: dict[str, Any],
    train: Any,
    eval_: Any,
    callbacks: list,
    emit: Callable[..., Any],
):
    """TRL's GRPOTrainer on the model with its adapter in place, publishing its latest completions."""
    from trl import GRPOConfig, GRPOTrainer

    columns = [c for c in train.column_names if c != "prompt"]
    try:
        funcs = load_rewards(res["reward_funcs"], res.values, columns)
    except ValueError as e:
        raise DatasetError(f"--reward-funcs: {e}") from None

    class Published(GRPOTrainer):
        published = -1  # the step whose completions were last sent (the run's closing log repeats it)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            step = self.state.global_step
            training = self.model is not None and self.model.training
            if training and self.accelerator.is_main_process and self._logs["prompt"]:
                if step != self.published:
                    # the names and weights TRL itself keys its log buffer and sums the rewards by
                    weights = self.reward_weights.tolist()
                    emit("completions", step=step, samples=samples(self._logs, self.reward_func_names, weights))
                    self.published = step
            super().log(logs, start_time)

    return Published(
        model=model,
        reward_funcs=list[Any](funcs),
        args=GRPOConfig(**args),
        train_dataset=train,
        eval_dataset=eval_,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def samples(logs: dict[str, Any], names: list[str], weights: list[float]) -> list[dict[str, Any]]:
    """The latest completions of TRL's log buffer (grpo_trainer.py: `_logs`, the last generation
    batch), with each function's reward and their weighted sum, as TRL sums them (nansum)."""
    prompts, completions = list(logs["prompt"]), list(logs["completion"])
    advantages = list(logs["advantages"])
    per_func = {name: list(logs["rewards"].get(name, [])) for name in names}
    out = []
    start = max(0, len(prompts) - SAMPLES_SHOWN)
    for i in range(start, len(prompts)):
        rewards = {name: _number(values[i]) if i < len(values) else None for name, values in per_func.items()}
        total = sum(w * r for w, r in zip(weights, rewards.values()) if r is not None)
        out.append(
            {
                "prompt": _text(prompts[i]),
                "completion": _text(completions[i]),
                "reward": round(total, 4),
                "rewards": rewards,
                "advantage": _number(advantages[i]) if i < len(advantages) else None,
            }
        )
    return out


def _number(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return None if value != value else round(value, 4)  # NaN: a function that returned None


def _text(x: Any) -> str:
    text = str(x)  # TRL's log buffer holds texts, a chat prompt rendered (grpo_trainer.py: prompts_text)
    return text if len(text) <= TEXT_CUT else text[:TEXT_CUT] + "…"
