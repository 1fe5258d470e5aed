"""Peak GPU memory of a LoRA/QLoRA run, term by term. Pure arithmetic: no torch, no I/O.

All figures are GiB (2**30 bytes), the unit nvidia-smi's MiB adds up to; the UI calls them GB
as every GPU spec sheet does. The coefficients are priors taken from the libraries' code (cited
beside each); `Coefficients.load` replaces them with values fitted to measured peaks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Mapping

from ..units import GIB, comma_list
from .archs import Arch

TERMS = (
    "cuda_context",
    "base_weights",
    "lora_weights",
    "gradients",
    "optimizer_states",
    "activations",
    "logits_and_loss",
    "evaluation",
    "allocator_overhead",
)


@dataclass(frozen=True)
class Coefficients:
    # CUDA context + cuBLAS workspace, outside torch's reserved pool (torch 2.x, lazy module loading).
    cuda_context_gib: float = 0.5
    # bitsandbytes NF4: 4 bits + one absmax per 64-block; double quant stores absmax in 8 bits
    # with a float32 per 256 absmaxes: 0.5 + 1/64 + 4/(64*256) = 0.516 (0.5 + 4/64 = 0.5625 without).
    nf4_bytes_per_param: float = 0.516
    # LLM.int8: int8 weights + a float32 scale per output row (added exactly below); outliers are
    # decomposed from activations at run time, not stored.
    int8_bytes_per_param: float = 1.0
    # Trainable LoRA weights are float32 masters (mixed precision needs them for the optimizer).
    lora_bytes_per_param: float = 4.0
    grad_bytes_per_param: float = 4.0
    # torch AdamW: exp_avg + exp_avg_sq in float32.
    adamw_bytes_per_param: float = 8.0
    # bitsandbytes 8-bit Adam: two uint8 states + a float32 absmax per 256-block (blockwise);
    # tensors under min_8bit_size=4096 elements keep float32 states (8 bytes).
    adam8bit_bytes_per_param: float = 2.0 + 2 * 4 / 256
    adam8bit_min_size: int = 4096
    # One decoder layer's saved tensors per token, in 16-bit elements, as multiples of the
    # widths: hidden (norm inputs in fp32, residuals, q/k/v input), attention (q, rotated q,
    # SDPA output), kv (k, v), MLP (gate, up, act, down input). Fitted by the calibration sweep.
    act_hidden: float = 6.0
    act_q: float = 3.0
    act_kv: float = 2.0
    act_mlp: float = 4.0
    # Buffers the "unsloth" offload keeps on the GPU while the layer inputs travel to host RAM.
    offload_gpu_buffers: float = 2.0
    # Cross-entropy per (token x vocab) element, eager chain: bf16 logits + fp32 upcast + saved
    # log_softmax + its gradient = 14, 16 with Gemma's softcapping (unsloth_zoo fused_losses).
    ce_bytes_per_logit: float = 14.0
    ce_bytes_softcap: float = 16.0
    # Unsloth's fused CE loss chunks the logits to at most min(4 GiB, half the free memory)
    # (unsloth_zoo fused_losses/cross_entropy_loss.py: _CE_TARGET_GB_CAP, _free_target_gb).
    unsloth_ce_cap_gib: float = 4.0
    # TRL's SFTTrainer (Transformers backend; Unsloth pins loss_type "nll" and uses its own)
    # computes the loss from the hidden states 256 tokens at a time, each chunk checkpointed
    # (trl/trainer/sft_trainer.py: _CHUNKED_LM_HEAD_CHUNK_SIZE, _chunk): fp32 logits,
    # log-softmax, its exp and the gradient, 4 bytes each, never the full logits.
    trl_chunk_tokens: int = 256
    trl_chunk_bytes_per_logit: float = 16.0
    # peft's prepare_model_for_kbit_training (Transformers backend, 4/8-bit) casts every
    # parameter that is not quantized (embeddings, lm_head, norms) to float32.
    kbit_upcast_bytes_per_param: float = 4.0
    # 8-bit on Transformers: measured 35.7 GiB against 16.4 estimated without this term (Llama-3.1-8B,
    # H200, batch 2 x 2048, r32; calibration/nvidia-h200.jsonl); 1.6 covers it with 3% to spare.
    int8_saved_inputs_factor: float = 1.6
    # A MoE layer's router: float32 logits and their softmax per token and expert.
    router_bytes_per_expert: float = 8.0
    # Evaluation keeps no graph: logits (2) + fp32 upcast (4) + log_softmax (4).
    eval_bytes_per_logit: float = 10.0
    # Caching-allocator fragmentation, as a fraction of everything torch allocates.
    allocator_fraction: float = 0.06

    @classmethod
    def load(cls, path: Path) -> "Coefficients":
        data = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        return replace(cls(), **{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT = Coefficients()


@dataclass(frozen=True)
class Inputs:
    """What the estimate depends on, taken from the resolved settings."""

    precision: int = 4  # 4, 8 or 16
    batch_size: int = 2
    seq_len: int = 2048
    lora_r: int = 16
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    checkpointing: str = "unsloth"  # unsloth | true | false
    optim: str = "adamw_8bit"
    backend: str = "unsloth"  # unsloth | transformers
    eval: bool = False
    world_size: int = 1
    full: bool = False  # full fine-tuning: every parameter trains, no adapters

    @classmethod
    def from_settings(cls, values: Mapping, precision: int, backend: str = "unsloth", world_size: int = 1) -> "Inputs":
        return cls(
            precision=precision,
            batch_size=values["batch_size"],
            seq_len=values["max_seq_length"],
            lora_r=values["lora_r"],
            targets=tuple(comma_list(values["target_modules"])),
            checkpointing=values["use_gradient_checkpointing"],
            optim=values["optim"],
            backend=backend,
            eval=values["eval_split"] > 0,
            world_size=world_size,
            full=bool(values.get("full_finetuning", False)),
        )


@dataclass(frozen=True)
class Estimate:
    breakdown: dict[str, float]  # GiB per term, in TERMS order
    peak_gib: float
    cpu_ram_gib: float  # host RAM for the "unsloth" offload (pinned layer inputs)
    gpu_gib: float | None
    checkpointing: str  # the mode in effect after fall-backs
    trainable_params: int
    notes: tuple[str, ...] = ()
    unreliable: str | None = None  # what the estimate leaves out: no verdict is given then

    @property
    def fits(self) -> bool | None:
        if self.gpu_gib is None or self.unreliable:
            return None
        return self.peak_gib <= self.gpu_gib

    @property
    def state(self) -> str:
        """fits | tight (>= 90% of the GPU) | over | unknown (no GPU to compare with, or an
        architecture the estimate doesn't fully model)."""
        if self.gpu_gib is None or self.unreliable:
            return "unknown"
        ratio = self.peak_gib / self.gpu_gib
        return "over" if ratio > 1 else "tight" if ratio >= 0.9 else "fits"


def estimate(arch: Arch, inp: Inputs, gpu_gib: float | None = None, c: Coefficients = DEFAULT) -> Estimate:
    notes: list[str] = []
    h, L = arch.hidden, arch.layers
    tokens = inp.batch_size * inp.seq_len

    # Base weights: the layers' Linears are quantized; embeddings, lm_head, norms and a MoE's fused
    # experts and routers stay 16-bit (float32 on the Transformers backend, where peft upcasts
    # every unquantized parameter for k-bit training).
    linear = L * arch.layer_linear_params
    upcast = inp.backend != "unsloth" and inp.precision in (4, 8)
    # Unsloth quantizes a MoE's fused experts to NF4 itself in 4-bit (unsloth_zoo
    # temporary_patches/moe_utils_bnb4bit.py; gpt-oss' are unfused into Linear4bit); nothing does in 8-bit.
    experts_nf4 = inp.backend == "unsloth" and inp.precision == 4
    unquantized = arch.embed_params + arch.small_params + arch.router_params
    unquantized += 0 if experts_nf4 else arch.expert_params
    sixteen = (c.kbit_upcast_bytes_per_param if upcast else 2) * unquantized
    if experts_nf4:
        sixteen += arch.expert_params * c.nf4_bytes_per_param
    if inp.precision == 4:
        # a dynamic quant's 16-bit layers (from its config) cost 2 bytes, not NF4's half byte
        base = (linear - arch.kept_16bit) * c.nf4_bytes_per_param + 2 * arch.kept_16bit + sixteen
    elif inp.precision == 8:
        rows = L * sum(d_out for _, d_out in arch.linears().values())
        base = linear * c.int8_bytes_per_param + 4 * rows + sixteen
    else:
        base = 2 * linear + sixteen

    # LoRA: A is r x d_in, B is d_out x r, per targeted module per layer.
    shapes = [(inp.lora_r * d_in, d_out * inp.lora_r) for d_in, d_out in arch.targeted(list(inp.targets)).values()]
    per_layer = sum(a + b for a, b in shapes)
    trainable = L * per_layer + arch.expert_lora_params(inp.lora_r, set(inp.targets), inp.backend)
    lora = trainable * c.lora_bytes_per_param
    if inp.full:  # every weight trains; they are the base weights above, so no adapter term
        trainable, lora = arch.params, 0.0
        shapes = []
        notes.append("full fine-tuning: gradients and optimizer states of every parameter, counted in float32")
    grads = trainable * c.grad_bytes_per_param
    if inp.world_size > 1:  # DDP's gradient buckets hold a second copy of the gradients
        grads *= 2
    if inp.optim in ("adamw_8bit", "paged_adamw_8bit"):
        small = L * sum(n for pair in shapes for n in pair if n < c.adam8bit_min_size)
        optim = (trainable - small) * c.adam8bit_bytes_per_param + small * c.adamw_bytes_per_param
    else:
        optim = trainable * c.adamw_bytes_per_param

    # Activations. One layer's working set (what it saves for backward, all of it at once while
    # it is recomputed), plus a 16-bit copy of its widest weight when it is dequantized on the fly.
    per_token = 2 * (c.act_hidden * h + c.act_q * arch.q_dim + c.act_kv * arch.kv_dim + c.act_mlp * arch.mlp_width)
    per_token += c.router_bytes_per_expert * arch.experts  # router logits and weights, float32
    per_token += 2 * inp.lora_r * len(shapes)
    layer_set = tokens * per_token
    if inp.precision != 16:
        layer_set += 2 * max(d_in * d_out for d_in, d_out in arch.linears().values())
    layer_input = 2 * tokens * h
    mode = inp.checkpointing
    if mode == "unsloth" and inp.backend != "unsloth":
        mode = "true"
        notes.append("checkpointing 'unsloth' needs the Unsloth backend: standard checkpointing is used")
    if mode == "unsloth" and inp.seq_len < 512:
        mode = "true"  # unsloth/models/_utils.py: offloading is not worth it below 512 tokens
        notes.append("max_seq_length < 512: Unsloth uses standard checkpointing instead of offloading")
    cpu_ram = 0.0
    if mode == "false":
        acts = L * layer_set
    elif mode == "true":
        acts = L * layer_input + layer_set
    else:
        acts = c.offload_gpu_buffers * layer_input + layer_set
        cpu_ram = L * layer_input
    if inp.backend != "unsloth" and inp.precision == 8:
        # bitsandbytes' 8-bit matmul keeps its input on ctx, outside save_for_backward, so
        # non-reentrant checkpointing never frees it; the inputs are float32 after peft's
        # upcast norms (bitsandbytes/autograd/_functions.py: ctx.tensors). Every layer's
        # q/k/v, o, gate/up and down inputs stay: 4h + 2q + 4h + 4i bytes a token, times the
        # measured factor. The engine now checkpoints 8-bit reentrantly, which should free
        # them; the term stays until a GPU run has measured that.
        held = tokens * (8 * h + 2 * arch.q_dim + 4 * arch.intermediate)
        acts += L * held * c.int8_saved_inputs_factor
        notes.append(
            "8-bit on Transformers + PEFT: counted as measured before the reentrant-checkpointing "
            "fix (bitsandbytes keeps every layer's inputs); expect less"
        )

    # Logits and loss.
    logit_bytes = c.ce_bytes_softcap if arch.softcap else c.ce_bytes_per_logit
    full_logits = tokens * arch.vocab * logit_bytes
    static = base + lora + grads + optim
    if inp.backend == "unsloth":
        cap = c.unsloth_ce_cap_gib * GIB
        if gpu_gib is not None:  # it chunks to half of what is free once everything else is in
            rest = c.cuda_context_gib * GIB + (static + acts) * (1 + c.allocator_fraction)
            cap = min(cap, max(gpu_gib * GIB - rest, 0) / 2)
        logits = min(full_logits, max(cap, arch.vocab * logit_bytes))
    else:
        chunk = min(tokens, c.trl_chunk_tokens)
        logits = chunk * arch.vocab * c.trl_chunk_bytes_per_logit
        if upcast:  # each chunk casts the float32 lm_head to the hidden states' 16-bit dtype
            logits += 2 * arch.vocab * h

    # Evaluation runs after the optimizer states exist, with no graph: it only adds to the peak
    # when its logits exceed what training's backward needed.
    evaluation = 0.0
    if inp.eval:
        # Both backends chunk the loss in evaluation as in training.
        eval_logits = min(tokens * arch.vocab * c.eval_bytes_per_logit, logits)
        evaluation = max(0.0, (layer_set + eval_logits) - (acts + logits + grads))

    torch_total = static + acts + logits + evaluation
    overhead = torch_total * c.allocator_fraction
    parts = [c.cuda_context_gib * GIB, base, lora, grads, optim, acts, logits, evaluation, overhead]
    breakdown = {k: v / GIB for k, v in zip(TERMS, parts)}
    return Estimate(
        breakdown=breakdown,
        peak_gib=sum(breakdown.values()),
        cpu_ram_gib=cpu_ram / GIB,
        gpu_gib=gpu_gib,
        checkpointing=mode,
        trainable_params=trainable,
        notes=tuple(notes),
        unreliable="; ".join(arch.unmodelled) or None,
    )
