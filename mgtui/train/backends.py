"""The one mapping from mgtui settings to the libraries' arguments, and the two backends.

Every setting reaches its library argument here and nowhere else. Device limits (no CUDA: no
4/8-bit, no 8-bit optimizers, no Unsloth) are applied here too, as reported substitutions.
Imported only in the training process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backend_choice import DEMO_ON_CUDA, choose_backend, unsloth_available
from ..cuda_check import bf16_capable
from ..settings import Resolved


@dataclass
class RuntimePlan:
    """What will actually run, after fitting the settings to this machine."""

    backend: str  # "unsloth" | "transformers"
    device: str  # "cuda" | "cpu"
    precision: int  # 4 | 8 | 16 | 32
    checkpointing: str | bool  # "unsloth" | True | False, as the libraries take it
    optim: str
    world_size: int = 1
    substitutions: list[str] = field(default_factory=list)  # "setting: was → now (why)"
    # Mixed precision on CUDA: bf16 where every card has it in hardware, else fp16. On the
    # Unsloth backend it is the dtype Unsloth loaded the model in (see adopt_model_dtype).
    bf16: bool = False
    sharded: bool = False  # FSDP2 over the run's processes (shard = full, more than one process)


def plan_for(
    res: Resolved,
    cuda: bool,
    world_size: int = 1,
    capabilities: list[tuple[int, int]] | None = None,
    unsloth_broken: str | None = None,
) -> RuntimePlan:
    """`capabilities`: the compute capability of every GPU the run uses (CUDA only);
    `unsloth_broken`: why importing Unsloth failed, if it did."""
    subs: list[str] = []
    backend, why = choose_backend(cuda, world_size, res["base_model"], res.sharded)
    if backend == "unsloth" and unsloth_broken:
        backend, why = "transformers", f"Unsloth failed to import: {unsloth_broken}"
    if cuda and why and (unsloth_available() or why == DEMO_ON_CUDA):
        subs.append(f"backend: unsloth → transformers+peft ({why})")
    precision = res.precision
    if cuda and why == DEMO_ON_CUDA and precision in (4, 8):
        subs.append(f"precision: {precision}-bit → 16-bit ({DEMO_ON_CUDA})")
        precision = 16
    optim = res["optim"]
    modes: dict[str, str | bool] = {"unsloth": "unsloth", "true": True, "false": False}
    gc = modes[res["use_gradient_checkpointing"]]
    if not cuda:
        if precision in (4, 8):
            subs.append(f"precision: {precision}-bit → 32-bit (bitsandbytes {precision}-bit loading needs a CUDA GPU)")
        elif precision == 16:
            subs.append("precision: 16-bit → 32-bit (CPU training runs in float32)")
        precision = 32
        if optim in ("adamw_8bit", "paged_adamw_8bit"):
            subs.append(f"optim: {optim} → adamw_torch (bitsandbytes 8-bit optimizers need a CUDA GPU)")
            optim = "adamw_torch"
    if gc == "unsloth" and backend != "unsloth":
        subs.append("use_gradient_checkpointing: unsloth → true (offloaded checkpointing needs the Unsloth backend)")
        gc = True
    if res.sharded and world_size == 1:
        subs.append("shard: full → off (one process: nothing to shard the model over)")
    return RuntimePlan(
        backend,
        "cuda" if cuda else "cpu",
        precision,
        gc,
        optim,
        world_size,
        subs,
        bf16=cuda and bf16_capable(list(capabilities or [])),
        sharded=res.sharded and world_size > 1,
    )


def adopt_model_dtype(plan: RuntimePlan, model: Any) -> None:
    """Unsloth picks the model's dtype itself (fp16 below compute capability 8) and its trainer
    refuses bf16 flags on a float16 model: train in the dtype it chose."""
    cfg = getattr(model, "config", None)
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    if dtype is None:
        dtype = model.get_input_embeddings().weight.dtype
    plan.bf16 = str(dtype).endswith("bfloat16")


def model_kwargs(res: Resolved, plan: RuntimePlan, device_map: Any) -> dict[str, Any]:
    """from_pretrained arguments for the Transformers backend."""
    import torch

    kw: dict[str, Any] = {"trust_remote_code": res["trust_remote_code"]}
    if plan.device == "cpu":
        kw["dtype"] = torch.float32
        return kw
    dtype = torch.bfloat16 if plan.bf16 else torch.float16
    kw["dtype"] = dtype
    kw["device_map"] = device_map
    if plan.precision in (4, 8):
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
                # FSDP shards parameters of one float dtype: the 4-bit blocks are stored in the
                # compute dtype, as PEFT's and TRL's FSDP-QLoRA guides do (bnb Params4bit.quant_storage)
                **({"bnb_4bit_quant_storage": dtype} if plan.sharded else {}),
            )
            if plan.precision == 4
            else BitsAndBytesConfig(load_in_8bit=True)
        )
    return kw


def unsloth_kwargs(res: Resolved, plan: RuntimePlan, local_rank: int = 0) -> dict[str, Any]:
    """FastLanguageModel.from_pretrained arguments. The whole model goes on the run's own GPU:
    Unsloth's default planner would split it across visible cards or refuse (DeviceMapInfeasible),
    where a model too big for one card should be a plain out-of-memory with advice."""
    return {
        "model_name": res["base_model"],
        "max_seq_length": res["max_seq_length"],
        "dtype": None,  # Unsloth picks bf16 where supported
        "load_in_4bit": plan.precision == 4,
        "load_in_8bit": plan.precision == 8,
        "full_finetuning": res["full_finetuning"],
        "trust_remote_code": res["trust_remote_code"],
        "device_map": {"": local_rank},
    }


def lora_kwargs(res: Resolved) -> dict[str, Any]:
    """LoRA arguments, shared by peft.LoraConfig and Unsloth's get_peft_model."""
    return {
        "r": res["lora_r"],
        "lora_alpha": res["lora_alpha"],
        "lora_dropout": res["lora_dropout"],
        "target_modules": res.target_modules(),
        "use_rslora": res["use_rslora"],
        "bias": "none",
    }


def sft_kwargs(res: Resolved, plan: RuntimePlan, output_dir: str, has_eval: bool) -> dict[str, Any]:
    """SFTConfig (TrainingArguments) arguments."""
    mixed = plan.device == "cuda" and plan.precision != 32
    kw: dict[str, Any] = {
        "output_dir": output_dir,
        "per_device_train_batch_size": res["batch_size"],
        "per_device_eval_batch_size": res["batch_size"],
        "gradient_accumulation_steps": res["gradient_accumulation_steps"],
        "num_train_epochs": res["epochs"],
        "max_steps": res["max_steps"] if res["max_steps"] > 0 else -1,
        "learning_rate": res["learning_rate"],
        "optim": plan.optim,
        "lr_scheduler_type": res["lr_scheduler_type"],
        "warmup_steps": res["warmup_steps"],
        "weight_decay": res["weight_decay"],
        "seed": res["seed"],
        "data_seed": res["seed"],
        "logging_steps": res["logging_steps"],
        "save_strategy": "steps",
        "save_steps": res["save_steps"],
        "save_total_limit": res["save_total_limit"] or None,
        "report_to": [] if res["report_to"] == "none" else [res["report_to"]],
        "max_length": res["max_seq_length"],
        "packing": res["packing"],
        "bf16": mixed and plan.bf16,
        "fp16": mixed and not plan.bf16,
        # TRL defaults this to True, and Trainer.train() then re-enables checkpointing on any
        # model, Unsloth's included: say it on both backends.
        "gradient_checkpointing": bool(plan.checkpointing),
        "use_cpu": plan.device == "cpu",
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_pin_memory": plan.device == "cuda",
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": res["save_steps"] if has_eval else None,
        "ddp_find_unused_parameters": False if plan.world_size > 1 and not plan.sharded else None,
        "ddp_backend": "gloo" if plan.world_size > 1 and plan.device == "cpu" else None,
    }
    if plan.sharded:
        kw.update(fsdp_kwargs(plan))
    if plan.backend == "transformers" and plan.checkpointing:  # Unsloth sets up its own
        # bitsandbytes' 8-bit matmul keeps its input on ctx, where non-reentrant checkpointing
        # can't free it (34 GiB instead of ~16 on Llama-3.1-8B, H200); reentrant checkpointing runs
        # the first forward without a graph, so nothing is kept. peft's prepare_model_for_kbit_training
        # makes the inputs require grad, as reentrant checkpointing needs.
        kw["gradient_checkpointing_kwargs"] = {"use_reentrant": plan.precision == 8}
    return kw


def fsdp_kwargs(plan: RuntimePlan) -> dict[str, Any]:
    """FSDP2 through the Trainer's own support (accelerate's FullyShardedDataParallelPlugin, built
    from these in transformers' training_args.py, _process_fsdp_args). Checkpoints are sharded:
    each rank writes its part (DCP), so no rank gathers the model to save one. Checkpointing stays
    the model's own (gradient_checkpointing, non-reentrant): FSDP's activation_checkpointing would
    save an all-gather in backward, but its checkpoint_wrapper renames every layer's parameters
    (`_checkpoint_wrapped_module`), and the adapter would no longer be saved under PEFT's names."""
    return {
        "fsdp": True,
        "fsdp_config": {"version": 2, "reshard_after_forward": True, "state_dict_type": "SHARDED_STATE_DICT"},
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if plan.checkpointing else None,
    }


def allow_fsdp_on_cpu() -> None:
    """accelerate 1.15 turns FSDP on only for accelerator devices (state.py, AcceleratorState:
    the branch that sets DistributedType.FSDP lists MULTI_GPU, MULTI_XPU, ... but not MULTI_CPU), so
    on a CPU box a sharded run would silently train as DDP. FSDP2's fully_shard itself runs on
    CPU tensors over gloo: the Trainer's accelerator is given its FSDP plugin there too. Used for
    CPU runs only (the tests, and a CPU-only box), never on CUDA."""
    import transformers.trainer
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    if getattr(transformers.trainer.Accelerator, "mgtui_cpu_fsdp", False):
        return

    class CpuFsdpAccelerator(Accelerator):
        mgtui_cpu_fsdp = True

        def __init__(self, *args: Any, fsdp_plugin: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, fsdp_plugin=fsdp_plugin, **kwargs)
            if fsdp_plugin is not None and self.state.distributed_type == DistributedType.MULTI_CPU:
                self.state.distributed_type = DistributedType.FSDP
                self.state.fsdp_plugin = fsdp_plugin

    transformers.trainer.Accelerator = CpuFsdpAccelerator


def load_model(res: Resolved, plan: RuntimePlan, local_rank: int):
    """(model with LoRA adapters, tokenizer) for the chosen backend."""
    if plan.backend == "unsloth":
        from unsloth import FastLanguageModel

        kwargs = unsloth_kwargs(res, plan, local_rank)
        if res["adapter_from"]:
            # Given an adapter's directory, Unsloth loads its base, then the adapter, trainable
            # (unsloth/models/loader.py: PeftModel.from_pretrained(..., is_trainable = True)).
            kwargs["model_name"] = res["adapter_from"]
        model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
        adopt_model_dtype(plan, model)
        if res["full_finetuning"] or res["adapter_from"]:
            return model, tokenizer
        model = FastLanguageModel.get_peft_model(
            model, **lora_kwargs(res), use_gradient_checkpointing=plan.checkpointing, random_state=res["seed"]
        )
        return model, tokenizer

    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device_map = {"": local_rank} if plan.device == "cuda" else None
    tokenizer = AutoTokenizer.from_pretrained(res["base_model"], trust_remote_code=res["trust_remote_code"])
    model = AutoModelForCausalLM.from_pretrained(res["base_model"], **model_kwargs(res, plan, device_map))
    if res["full_finetuning"]:
        return model, tokenizer
    if plan.precision in (4, 8) and not plan.sharded:
        # (sharded: it would cast the norms to float32 beside the bf16-stored 4-bit blocks, and
        # FSDP's activation checkpointing takes the place of its gradient checkpointing)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(plan.checkpointing))
    if res["adapter_from"]:  # a finished run's adapter, trained further (its rank and modules are its own)
        from peft import PeftModel

        return PeftModel.from_pretrained(model, res["adapter_from"], is_trainable=True), tokenizer
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora_kwargs(res)))
    return model, tokenizer
