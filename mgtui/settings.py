"""The one settings model.

Every setting is declared once, in SETTINGS. The CLI flags, the form fields, the preset
format, the estimator's inputs and the trainer's arguments are all derived from it.
Pure: no Textual, no torch.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, cast

from .data.scan import FORMATS, check_split, column_map
from .data.templates import unknown_template
from .reward_spec import parse_rewards, parse_weights
from .setting_types import SettingName, SettingValues
from .units import comma_list

GROUPS = (
    "Model and data",
    "Training method",
    "LoRA",
    "Precision and memory",
    "Optimization and schedule",
    "Output and logging",
    "Advanced: multi-GPU",
)

# GRPO's loss types as TRL 1.14 names them (trl/trainer/grpo_config.py, GRPOConfig.loss_type's help);
# luspo is left out: it needs sequence-level importance sampling, which mgtui doesn't set.
GRPO_LOSSES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo")

ALL_TARGET_MODULES = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

METHODS = ("sft", "dpo", "orpo", "simpo", "kto", "grpo")
PAIRED = ("dpo", "orpo", "simpo")  # trained on chosen/rejected pairs; kto on labelled single replies
PREFERENCE = (*PAIRED, "kto")
# DPO's loss types as TRL 1.14 names them (trl/trainer/dpo_config.py, DPOConfig.loss_type's help).
DPO_LOSSES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm",
)  # fmt: skip


class SettingError(ValueError):
    """A user's value is wrong. `name` is the setting; str() is one line for the user."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    group: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    # Stored in presets. Actions such as --resume are per-run, not part of a recipe.
    in_preset: bool = True
    # A file or directory chosen by the user: written to a preset only when they save it.
    path: bool = False
    # What --resume does with a changed value (runs/resume.py): "fixed" is refused (the checkpoint
    # or the data order holds the old one), "may" is honoured and said, "" is not compared.
    on_resume: str = "fixed"
    # The training methods that read this setting (None: all). The form shows a row only for its
    # methods, and a value given for another method is refused.
    methods: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """What this setting accepts, in words, for error messages and help."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type is bool:
            return "true or false"
        kind = {int: "an integer", float: "a number", str: "text"}[self.type]
        if self.min is not None and self.max is not None:
            return f"{kind} from {_fmt(self.min)} to {_fmt(self.max)}"
        if self.min is not None:
            return f"{kind} ≥ {_fmt(self.min)}"
        return kind

    def parse(self, text: str) -> Any:
        """Turn typed text (a flag or a form field) into a checked value."""
        text = text.strip()
        if self.type is bool:
            low = text.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise SettingError(self.name, f"{self.flag}: {text!r} is not {self.allowed()}")
        if self.type in (int, float):
            try:
                value: Any = int(text) if self.type is int else float(text)
            except ValueError:
                raise SettingError(self.name, f"{self.flag}: {text!r} is not {self.allowed()}") from None
            return self.check(value)
        return self.check(text)

    def check(self, value: Any) -> Any:
        """Check an already-typed value (from TOML or code); return it normalised."""
        if self.type is bool:
            if not isinstance(value, bool):
                raise SettingError(self.name, f"{self.name}: expected true or false, got {value!r}")
            return value
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or isinstance(value, bool):
            raise SettingError(self.name, f"{self.name}: expected {self.allowed()}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingError(self.name, f"{self.flag}: {value!r} is not {self.allowed()}")
        if self.choices and value not in self.choices:
            raise SettingError(self.name, f"{self.flag}: {value!r} is not {self.allowed()}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):  # type: ignore[operator]
            raise SettingError(self.name, f"{self.flag}: {value!r} is not {self.allowed()}")
        return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


S = Setting
M, TM, L, P, OPT, OUT, ADV = GROUPS
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    S("base_model", str, "unsloth/llama-3.1-8b-bnb-4bit", "Hub name or local directory of the base model", M),
    S("dataset", str, "", "Training data: a .jsonl/.json/.csv/.parquet file, a saved dataset directory, or a Hub name", M, path=True),
    S("dataset_split", str, "train", "A Hub dataset's split, or a slice of it, as train[:2000]; dataset org/name:subset picks a subset", M),
    S("dataset_format", str, "auto", "How rows are read; auto detects it from the columns", M,
      choices=("auto", *FORMATS)),
    S("columns", str, "", "Your file's columns, named as a format reads them: prompt=question,completion=answer", M),
    S("chat_template", str, "", "Chat template for chat data when the tokenizer has none (chatml, llama-3, ...); empty uses the tokenizer's", M),
    S("max_seq_length", int, 2048, "Longest sequence in tokens; longer rows are truncated", M, min=16, max=1_048_576),
    S("eval_split", float, 0.0, "Fraction of rows held out for evaluation (0 = none)", M, min=0.0, max=0.5),
    S("packing", bool, False, "Pack several short rows into each sequence", M, methods=("sft",)),
    S("train_on_responses_only", bool, False, "Mask prompts out of the loss; learn only the assistant's replies", M,
      methods=("sft",)),
    S("trust_remote_code", bool, False, "Allow the model repository's own Python code to run", M, on_resume="may"),

    S("method", str, "sft", "sft imitates replies; dpo, orpo, simpo learn from chosen/rejected pairs; kto from replies labelled good or bad; grpo from rewards on its own samples", TM,
      choices=METHODS),
    S("adapter_from", str, "", "A finished run's directory whose adapter training starts from (SFT, then DPO); same base model", TM,
      path=True),
    S("beta", float, 0.1, "Preference strength: how far from the reference (DPO, KTO), the odds-ratio weight (ORPO), the reward scale (SimPO: 2-2.5)", TM,
      min=0.0, max=100.0, methods=PREFERENCE),
    S("dpo_loss_type", str, "sigmoid", "DPO's loss as TRL names it: sigmoid is the paper's; ipo, hinge, robust ... variants", TM,
      choices=DPO_LOSSES, methods=("dpo",)),
    S("simpo_gamma", float, 0.5, "SimPO's target margin between the chosen and rejected rewards", TM,
      min=0.0, max=100.0, methods=("simpo",)),
    S("desirable_weight", float, 1.0, "KTO's weight on rows labelled good; raise it when they are fewer than the bad ones", TM,
      min=0.0, max=100.0, methods=("kto",)),
    S("undesirable_weight", float, 1.0, "KTO's weight on rows labelled bad", TM,
      min=0.0, max=100.0, methods=("kto",)),
    S("max_prompt_length", int, 0, "Longest prompt in tokens, its start cut off (0: only max_seq_length cuts, from the end)", TM,
      min=0, max=1_048_576, methods=(*PREFERENCE, "grpo")),
    S("reward_funcs", str, "answer_match", "GRPO's rewards: built-ins (answer_match, format_match, length_penalty) and your file's, as rewards.py:correct,fmt", TM,
      methods=("grpo",)),
    S("reward_weights", str, "", "Each reward function's weight, comma-separated in the same order (empty: all 1)", TM,
      methods=("grpo",)),
    S("format_regex", str, r"(?s)<answer>.+</answer>", "format_match's pattern: 1 when the completion matches it, else 0", TM,
      methods=("grpo",)),
    S("num_generations", int, 8, "Completions sampled per prompt; rewards are compared within each group", TM,
      min=2, max=256, methods=("grpo",)),
    S("max_completion_length", int, 256, "Longest completion in tokens; longer ones are cut (the share cut is shown)", TM,
      min=1, max=1_048_576, methods=("grpo",)),
    S("temperature", float, 1.0, "Sampling temperature of the completions: higher, more varied", TM,
      min=0.01, max=10.0, methods=("grpo",)),
    S("kl_beta", float, 0.0, "KL penalty to the reference (0: none, TRL's default; DeepSeek-R1 used 0.001)", TM,
      min=0.0, max=100.0, methods=("grpo",)),
    S("grpo_loss_type", str, "dapo", "GRPO's loss as TRL names it: dapo (TRL's default), grpo, dr_grpo, bnpo, cispo, sapo", TM,
      choices=GRPO_LOSSES, methods=("grpo",)),

    S("lora_r", int, 16, "LoRA rank: adapter capacity (16 fast, 32 balanced, 64 highest)", L, min=1, max=1024),
    S("lora_alpha", int, 16, "LoRA scaling numerator; usually equal to the rank", L, min=1, max=4096),
    S("lora_dropout", float, 0.0, "Dropout on the LoRA path (0 is fastest with Unsloth)", L, min=0.0, max=0.9),
    S("use_rslora", bool, False, "Rank-stabilised LoRA (alpha/sqrt(r)); use it when lora_r >= 32", L),
    S("target_modules", str, ALL_TARGET_MODULES, "Comma-separated module names that get adapters", L),

    S("quality_mode", bool, False, "Accuracy over memory: 16-bit, checkpointing true, adamw_torch, RSLoRA when r >= 32", P, on_resume=""),
    S("load_in_8bit", bool, False, "Load the base weights in 8-bit (LLM.int8): ~2x the memory of 4-bit", P),
    S("load_in_16bit", bool, False, "Load the base weights in 16-bit (LoRA): ~4x the memory of 4-bit, best quality", P),
    S("full_finetuning", bool, False, "Train every weight, not LoRA adapters: 16-bit weights, and gradients and optimizer states for all of them", P),
    S("use_gradient_checkpointing", str, "unsloth", "unsloth: offload to RAM, least VRAM; true: standard; false: fastest, most VRAM", P,
      choices=("unsloth", "true", "false"), on_resume="may"),
    S("batch_size", int, 2, "Sequences per device per step", P, min=1, max=4096),
    S("gradient_accumulation_steps", int, 4, "Steps accumulated per optimizer update (effective batch = batch × this)", P, min=1, max=4096),
    S("max_gpu_memory", float, 0.0, "Cap the run at this many GB of GPU memory per process (0: no cap); past it, an out-of-memory with advice, not the whole card", P, min=0, max=4096, on_resume="may"),

    S("epochs", float, 3.0, "Passes over the dataset (ignored when max_steps > 0)", OPT, min=0.01, max=1000, on_resume="may"),
    S("max_steps", int, 0, "Stop after this many optimizer steps (0 = use epochs)", OPT, min=0, on_resume="may"),
    S("learning_rate", float, 2e-4, "Peak learning rate", OPT, min=1e-9, max=1.0),
    S("optim", str, "adamw_8bit", "adamw_8bit least memory; adamw_torch better convergence; fused fastest", OPT,
      choices=("adamw_8bit", "adamw_torch", "adamw_torch_fused", "paged_adamw_8bit")),
    S("lr_scheduler_type", str, "linear", "How the learning rate changes over training", OPT,
      choices=("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")),
    S("warmup_steps", int, 5, "Steps of linear warm-up from 0 to the learning rate", OPT, min=0),
    S("weight_decay", float, 0.01, "AdamW weight decay", OPT, min=0.0, max=1.0),
    S("seed", int, 3407, "Random seed for adapters, shuffling and dropout", OPT, min=0, max=2**32 - 1),

    S("output_dir", str, "outputs", "Run directory: adapter, checkpoints, event log, summary", OUT, path=True, on_resume=""),
    S("logging_steps", int, 1, "Log loss and learning rate every N steps", OUT, min=1, on_resume="may"),
    S("save_steps", int, 100, "Save a checkpoint every N steps (the adapter is always saved at the end)", OUT, min=1, on_resume="may"),
    S("save_total_limit", int, 0, "Keep only the newest N checkpoints (0: keep them all), as the HF Trainer does", OUT, min=0, on_resume="may"),
    S("eval_prompts", str, "", "A prompts file (a prompt per line, or JSONL) that base and tuned answer after training: answers.jsonl", OUT, path=True, on_resume="may"),
    S("report_to", str, "none", "Experiment tracker (its key comes from the environment, never from a preset)", OUT,
      choices=("none", "tensorboard", "wandb"), on_resume="may"),
    S("resume", bool, False, "Continue from the latest checkpoint in output_dir", OUT, in_preset=False, on_resume=""),

    S("gpus", str, "", "GPU indices to use, e.g. 0,1 (empty = all visible)", ADV, on_resume="may"),
    S("shard", str, "off", "off: each GPU holds the whole model (DDP); full: weights, gradients and optimizer states split across the GPUs (FSDP2), for a model larger than one card", ADV,
      choices=("off", "full")),
    S("nproc_per_node", int, 0, "Processes per node under torchrun (0 = one per selected GPU, 1 without GPUs)", ADV, min=0, max=64),
    S("nnodes", int, 1, "Number of nodes taking part", ADV, min=1, max=1024),
    S("node_rank", int, 0, "This node's rank among the nodes", ADV, min=0, max=1023, on_resume="may"),
    S("master_addr", str, "127.0.0.1", "Rendezvous address (node 0)", ADV, on_resume="may"),
    S("master_port", int, 29500, "Rendezvous port", ADV, min=1, max=65535, on_resume="may"),
)
# fmt: on
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS}

# Quality mode, exactly as the guide says. RSLoRA depends on the resolved rank.
QUALITY_KEYS = ("load_in_16bit", "use_gradient_checkpointing", "optim", "use_rslora")
PRECISION_KEYS = ("load_in_8bit", "load_in_16bit")
RSLORA_MIN_RANK = 32


def quality_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """What quality mode sets, given the other values."""
    out: dict[str, Any] = {
        "load_in_16bit": True,
        "use_gradient_checkpointing": "true",
        "optim": "adamw_torch",
    }
    if values["lora_r"] >= RSLORA_MIN_RANK:
        out["use_rslora"] = True
    return out


@dataclass
class Resolved:
    """Settings after defaults ← preset ← flags ← quality mode."""

    values: SettingValues
    explicit: set[str] = field(default_factory=set)
    quality_set: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, name: SettingName) -> Any:
        return self.values[name]

    def by_name(self, name: str) -> Any:
        """For code that walks the table (names as data): a literal name reads `res["name"]`,
        which the type checker holds to the table."""
        return cast(dict[str, Any], self.values)[name]

    @property
    def precision(self) -> int:
        return 16 if self.values["load_in_16bit"] else 8 if self.values["load_in_8bit"] else 4

    @property
    def effective_batch(self) -> int:
        return self.values["batch_size"] * self.values["gradient_accumulation_steps"]

    def world_size(self, gpu_count: int) -> int:
        """Processes in the run: per node (--nproc-per-node, else one per selected GPU, else 1)
        times the number of nodes."""
        per_node = self.values["nproc_per_node"]
        if not per_node:
            per_node = len(comma_list(self.values["gpus"])) or gpu_count
        return max(1, per_node) * self.values["nnodes"]

    @property
    def sharded(self) -> bool:
        """FSDP2: the model split across the run's processes (runs/launch.py starts it under torchrun)."""
        return self.values["shard"] != "off"

    def target_modules(self) -> list[str]:
        return comma_list(self.values["target_modules"])

    def preset_values(self, include_paths: bool = False) -> dict[str, Any]:
        """What a preset stores: every setting except per-run actions and what quality mode
        derives (quality_mode = true re-derives them). Paths only when the user asks."""
        return {
            s.name: self.by_name(s.name)
            for s in SETTINGS
            if s.in_preset and s.name not in self.quality_set and (include_paths or not s.path)
        }

    def command_line(self, program: str = "model-garden train") -> list[str]:
        """The shortest equivalent command line: what differs from the defaults, plus the
        explicit choices that quality mode would otherwise change."""
        args = program.split()
        for s in SETTINGS:
            v = self.by_name(s.name)
            pinned = self.values["quality_mode"] and s.name in QUALITY_KEYS and s.name in self.explicit
            if s.name in self.quality_set or (v == s.default and not pinned):
                continue
            if s.type is bool:
                args.append(s.flag if v else "--no-" + s.flag[2:])
            else:
                args += [s.flag, _fmt(v) if s.type is float else str(v)]
        return args


def apply_layer(values: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """Lay explicit values over `values`. A precision flag in a later layer replaces the
    precision of an earlier one (a preset's 16-bit, say), so only one layer can conflict."""
    for key in PRECISION_KEYS:
        if layer.get(key) is True:
            for other in PRECISION_KEYS:
                if other != key and other not in layer:
                    values[other] = False
    values.update(layer)


def resolve(layers: Iterable[Mapping[str, Any]] = (), explicit: Iterable[str] | None = None) -> Resolved:
    """Defaults, then each layer in order, then quality mode on what nobody set.

    `explicit` names the keys that count as set by the user; by default, every key of every layer.
    Raises SettingError for conflicts."""
    values = dict(DEFAULTS)
    keys: set[str] = set()
    for layer in layers:
        for name, v in layer.items():
            if name not in BY_NAME:
                raise SettingError(name, f"unknown setting {name!r}")
            BY_NAME[name].check(v)
        apply_layer(values, layer)
        keys.update(layer)
    chosen = set(keys if explicit is None else explicit)
    res = Resolved(values=cast(SettingValues, values), explicit=chosen)
    if values["quality_mode"]:
        for name, v in quality_values(values).items():
            # An explicit precision choice of either kind is the user's, so 16-bit yields to 8-bit.
            taken = name in chosen or (name == "load_in_16bit" and "load_in_8bit" in chosen and values["load_in_8bit"])
            if not taken and values[name] != v:
                values[name] = v
                res.quality_set[name] = v
            elif not taken:
                res.quality_set[name] = v
    validate(res)
    return res


def validate(res: Resolved) -> None:
    """Cross-setting checks (each setting's own range is checked when parsed)."""
    v = res.values
    if v["load_in_8bit"] and v["load_in_16bit"]:
        raise SettingError(
            "load_in_8bit", "--load-in-8bit and --load-in-16bit exclude each other: pick one (4-bit is the default)"
        )
    if res.precision != 4:
        quant = prequantized_4bit(v["base_model"])
        if quant:
            flag = "--load-in-16bit" if res.precision == 16 else "--load-in-8bit"
            why = " (set by --quality-mode)" if "load_in_16bit" in res.quality_set else ""
            hint = f"; use {quant!r} instead" if quant != v["base_model"] else "; use its 16-bit original"
            raise SettingError(
                "base_model",
                f"{flag}{why}: {v['base_model']!r} is a pre-quantized 4-bit checkpoint{hint}",
            )
    if v["full_finetuning"] and res.precision != 16:
        raise SettingError(
            "full_finetuning", "--full-finetuning trains the weights themselves, in 16-bit: add --load-in-16bit"
        )
    if not res.target_modules():
        raise SettingError("target_modules", "--target-modules: give at least one module name")
    if v["lora_r"] >= RSLORA_MIN_RANK and not v["use_rslora"]:
        res.warnings.append(f"lora_r = {v['lora_r']} without --use-rslora: the guide recommends RSLoRA for ranks >= 32")
    warmup = warmup_warning(v["warmup_steps"], v["max_steps"])
    if warmup:
        res.warnings.append(warmup)
    if v["node_rank"] >= v["nnodes"]:
        raise SettingError("node_rank", f"--node-rank: {v['node_rank']} must be below --nnodes ({v['nnodes']})")
    if v["gpus"]:
        parts = [p.strip() for p in v["gpus"].split(",")]
        if not all(p.isdigit() for p in parts):
            raise SettingError("gpus", f"--gpus: {v['gpus']!r} is not a comma-separated list of GPU indices")
    try:
        column_map(v["columns"])
    except ValueError as e:
        raise SettingError("columns", f"--columns: {e}") from None
    try:
        check_split(v["dataset_split"])
    except ValueError as e:
        raise SettingError("dataset_split", f"--dataset-split: {e}") from None
    problem = unknown_template(v["chat_template"])
    if problem:
        raise SettingError("chat_template", problem)
    if res.sharded and v["method"] != "sft":
        raise SettingError(
            "shard", f"--shard full trains SFT only for now; --method {v['method']} runs unsharded (--shard off)"
        )
    if res.sharded and v["eval_prompts"]:
        raise SettingError(
            "eval_prompts",
            "--eval-prompts with --shard full: the quick look answers on one process, and a sharded "
            "model is split across all of them; chat with the run (model-garden chat) instead",
        )
    for s in SETTINGS:
        if s.methods and v["method"] not in s.methods and s.name in res.explicit and res.by_name(s.name) != s.default:
            # A warning, not a refusal: a preset saved for one method carries the others' values.
            res.warnings.append(
                f"{s.flag} is a setting of {', '.join(s.methods)} training; this run trains {v['method']}: ignored"
            )
    if v["method"] == "kto" and v["batch_size"] < 2:
        # TRL's KTOTrainer estimates its KL term from the batch's other replies (trl/trainer/kto_trainer.py:
        # "Actual (not effective) batch size must be > 1").
        raise SettingError(
            "batch_size", "--method kto: --batch-size must be 2 or more (KTO's KL term pairs replies within a batch)"
        )
    if v["method"] == "grpo":
        grpo_problem(res)
    if v["adapter_from"] and v["full_finetuning"]:
        raise SettingError("adapter_from", "--adapter-from continues a LoRA adapter; it can't start a full fine-tuning")
    for name in ("base_model", "dataset"):
        problem = hub_name_problem(v[name], name == "dataset")
        if problem:
            raise SettingError(name, f"--{name.replace('_', '-')} {v[name]!r}: {problem}")


def grpo_problem(res: "Resolved") -> None:
    """GRPO's settings that TRL would refuse after the model loads, or a reward spec that names nothing."""
    v = res.values
    try:
        refs = parse_rewards(v["reward_funcs"])
    except ValueError as e:
        raise SettingError("reward_funcs", f"--reward-funcs: {e}") from None
    try:
        parse_weights(v["reward_weights"], len(refs))
    except ValueError as e:
        raise SettingError("reward_weights", f"--reward-weights: {e}") from None
    if any(r.name == "format_match" and r.file is None for r in refs):
        try:
            re.compile(v["format_regex"])
        except re.error as e:
            raise SettingError("format_regex", f"--format-regex: {e}") from None
    if v["max_completion_length"] >= v["max_seq_length"]:
        raise SettingError(
            "max_completion_length",
            f"--max-completion-length {v['max_completion_length']} leaves no room for the prompt in "
            f"--max-seq-length {v['max_seq_length']} (the prompt and its completion together)",
        )
    # trl/trainer/grpo_config.py __post_init__: the generation batch (per-device batch x processes x
    # accumulation steps) holds whole groups of num_generations completions.
    world = res.world_size(1)
    per_step = v["batch_size"] * v["gradient_accumulation_steps"] * world
    if per_step % v["num_generations"]:
        raise SettingError(
            "num_generations",
            f"--num-generations {v['num_generations']} must divide the completions per optimizer step "
            f"(batch_size {v['batch_size']} x gradient_accumulation_steps {v['gradient_accumulation_steps']}"
            f"{f' x {world} GPUs' if world > 1 else ''} = {per_step}): each prompt's completions are compared together",
        )


def warmup_warning(warmup_steps: int, steps: int) -> str | None:
    """Warm-up as long as the run: the learning rate never reaches its peak."""
    if steps <= 0 or warmup_steps <= steps:
        return None
    return (
        f"warmup_steps = {warmup_steps} is longer than the run ({steps} steps): "
        "the learning rate never reaches its peak; lower --warmup-steps"
    )


def hub_name_problem(value: str, dataset: bool) -> str | None:
    """A value that will be asked of the Hub (not a local path, not a built-in) that the Hub's own
    library would refuse as a name, after the engine has started: said where it is typed."""
    from .hub_cache import repo_id_problem

    if not value or value.startswith(("builtin:", "/", "./", "../", "~")) or Path(value).expanduser().exists():
        return None
    if dataset:
        from .data.scan import DatasetError, hub_dataset, resolve_source

        try:
            if resolve_source(value) is not None:
                return None
        except DatasetError:
            return None  # a file that isn't there: the dataset check names it
        value = hub_dataset(value)[0]
    return repo_id_problem(value)


def prequantized_4bit(base_model: str) -> str | None:
    """If `base_model` is a pre-quantized 4-bit checkpoint, the name of its 16-bit original
    when that is obvious (else the name itself); None when it is not pre-quantized."""
    name = base_model.rstrip("/")
    for suffix in ("-unsloth-bnb-4bit", "-bnb-4bit"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    cfg = Path(base_model) / "config.json"
    if cfg.is_file():
        try:
            q = json.loads(cfg.read_text()).get("quantization_config") or {}
        except (OSError, ValueError):
            return None
        if q.get("load_in_4bit") or q.get("bits") == 4 or q.get("_load_in_4bit"):
            return base_model
    return None
