"""The settings' names and types, for the type checker: generated from the table in
mgtui/settings.py (tests/test_settings.py fails, printing this file anew, when they differ)."""

from __future__ import annotations

from typing import Literal, TypedDict

SettingName = Literal[
    "base_model",
    "dataset",
    "dataset_split",
    "dataset_format",
    "columns",
    "chat_template",
    "max_seq_length",
    "eval_split",
    "packing",
    "train_on_responses_only",
    "trust_remote_code",
    "method",
    "adapter_from",
    "beta",
    "dpo_loss_type",
    "simpo_gamma",
    "desirable_weight",
    "undesirable_weight",
    "max_prompt_length",
    "reward_funcs",
    "reward_weights",
    "format_regex",
    "num_generations",
    "max_completion_length",
    "temperature",
    "kl_beta",
    "grpo_loss_type",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "use_rslora",
    "target_modules",
    "quality_mode",
    "load_in_8bit",
    "load_in_16bit",
    "full_finetuning",
    "use_gradient_checkpointing",
    "batch_size",
    "gradient_accumulation_steps",
    "max_gpu_memory",
    "epochs",
    "max_steps",
    "learning_rate",
    "optim",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "seed",
    "output_dir",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "eval_prompts",
    "report_to",
    "resume",
    "gpus",
    "shard",
    "nproc_per_node",
    "nnodes",
    "node_rank",
    "master_addr",
    "master_port",
]


class SettingValues(TypedDict):
    base_model: str
    dataset: str
    dataset_split: str
    dataset_format: str
    columns: str
    chat_template: str
    max_seq_length: int
    eval_split: float
    packing: bool
    train_on_responses_only: bool
    trust_remote_code: bool
    method: str
    adapter_from: str
    beta: float
    dpo_loss_type: str
    simpo_gamma: float
    desirable_weight: float
    undesirable_weight: float
    max_prompt_length: int
    reward_funcs: str
    reward_weights: str
    format_regex: str
    num_generations: int
    max_completion_length: int
    temperature: float
    kl_beta: float
    grpo_loss_type: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    use_rslora: bool
    target_modules: str
    quality_mode: bool
    load_in_8bit: bool
    load_in_16bit: bool
    full_finetuning: bool
    use_gradient_checkpointing: str
    batch_size: int
    gradient_accumulation_steps: int
    max_gpu_memory: float
    epochs: float
    max_steps: int
    learning_rate: float
    optim: str
    lr_scheduler_type: str
    warmup_steps: int
    weight_decay: float
    seed: int
    output_dir: str
    logging_steps: int
    save_steps: int
    save_total_limit: int
    eval_prompts: str
    report_to: str
    resume: bool
    gpus: str
    shard: str
    nproc_per_node: int
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
