"""Peak GPU memory of a LoRA/QLoRA run, term by term. Pure arithmetic: no torch, no I/O beyond
one cached read of the installed Unsloth's version from its package metadata (nothing imported).

All figures are GiB (2**30 bytes), the unit nvidia-smi's MiB adds up to; the UI calls them GB
as every GPU spec sheet does. The coefficients are priors taken from the libraries' code (cited
beside each); `Coefficients.load` replaces them with values fitted to measured peaks.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
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
    # CUDA context, cuBLAS workspace and kernels: the process's memory outside torch's reserved pool.
    # Measured NVML minus torch's peak reserved on the four stored H200 rows: 0.74-0.81 GiB, the same
    # range on both backends (calibration/nvidia-h200.jsonl); the largest is charged.
    cuda_context_gib: float = 0.81
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
    # Unsloth's fused cross-entropy (unsloth_zoo 2026.10.7, fused_losses/cross_entropy_loss.py, "CE" below;
    # called from unsloth/models/llama.py:1955-1970 with target_gb=None, at every length in training:
    # the <= 1024-token branch at llama.py:1920-1922 leaves RETURN_LOGITS False). The chunk count is
    # read from the source (unsloth_loss_chunks); the bytes a chunk holds are bounded by measurement.
    # CE:195 _CE_TARGET_GB_CAP: the target is at most 4 GiB ...
    unsloth_ce_target_cap_gib: float = 4.0
    # ... else half of what is free (unsloth_zoo/tiled_mlp.py:93-94, `free * 0.5`, via CE:198-218).
    unsloth_ce_free_fraction: float = 0.5
    # CE:191 _CE_BYTES_PER_LOGIT: the bytes per logit the chunk count is sized with (eager chain).
    unsloth_ce_sizing_bytes: float = 16.0
    # What a chunk really holds per logit: the compiled grad_and_value (CE:420-498) keeps the 16-bit
    # logits and their gradient, 2 + 2. Measured bound: the stored H200 runs leave at most 0.93 GiB
    # (4-bit) and 0.61 GiB (16-bit) for a 1024-token chunk, 7.6 and 5.0 bytes a logit.
    unsloth_ce_bytes_per_logit: float = 4.0
    unsloth_ce_bytes_softcap: float = 6.0  # Gemma's tanh softcapping keeps one more 16-bit copy (a prior)
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
    # Preference methods and GRPO (TRL 1.14) take the model's whole logits, not SFT's chunked loss. Under
    # bf16/fp16 mixed precision accelerate wraps the model's forward in convert_outputs_to_fp32
    # (accelerate/accelerator.py:1824-1835, utils/operations.py:889-931), so TRL sees float32 logits
    # (4 bytes) made from the 16-bit ones (2 more while both exist); Unsloth's forward returns full
    # logits when no labels are passed (unsloth/models/llama.py:1914-1985). TRL's log-prob kernel
    # saves the logits it reads and allocates one gradient of their size in backward
    # (trl/kernels/logprob_entropy.py:165-210); its slice's backward another (8 bytes in backward).
    # Bytes per logit at each method's fullest moment, counted over the tokens given to its forward:
    # DPO: policy 4 + reference 4 (ref_outputs lives to the end of _compute_loss) + the metrics' copy of
    # the chosen half's completion logits (trl/trainer/dpo_trainer.py:1663-1667, chosen_logits[mask]: 2 over
    # both halves), or the reference's conversion, 2 + 4: 10 either way (dpo_trainer.py:1364-1434).
    dpo_bytes_per_logit: float = 10.0
    # KTO: policy 4 + reference 4 + index_select copies of the chosen and rejected rows (4, kto_trainer.py
    # :1646-1647) + the masked copy of one group's completion logits (bounded by 4, :1650-1652).
    kto_bytes_per_logit: float = 16.0
    # ORPO: logits 4 + the chosen half's contiguous copy (2) and log_softmax (2) for its NLL
    # (trl/experimental/orpo/orpo_trainer.py:774-795); backward: the kernel's gradient and the slices'
    # full-size gradients on top of the log_softmax kept for the NLL: 10.
    orpo_bytes_per_logit: float = 10.0
    # SimPO (CPO's "simpo" loss, cpo_alpha 0: no NLL, cpo_trainer.py:837-838): 4 + 2 converting, 8 in backward.
    simpo_bytes_per_logit: float = 8.0
    # GRPO's training forward keeps logits for the completion tokens only (logits_to_keep, grpo_trainer.py
    # :1562-1579), read by the same kernel: 4 + 2 converting, 8 in backward.
    grpo_bytes_per_logit: float = 8.0
    # A forward without gradients (the reference's, KTO's KL batch, GRPO's scoring) converts its
    # 16-bit logits to float32: 2 + 4 while both exist.
    nograd_bytes_per_logit: float = 6.0
    # GRPO on Unsloth: the loss is unsloth_zoo's grpo_accumulated_loss (unsloth_zoo/rl_replacements.py, "Z",
    # Z:2130) on the hidden states, the lm_head applied to the completion positions in chunks by
    # chunked_hidden_states_selective_log_softmax (Z:142-275, torch.compile'd: Z:141). Each chunk casts its
    # 16-bit logits to float32 (Z:251) for logsumexp, which keeps that float32 input for backward: every chunk's,
    # 4 bytes a completion logit, until the loss's backward (an eager bound; compiled, the partitioner may keep
    # the 16-bit ones, 2: not measured, the larger is counted).
    unsloth_grpo_saved_bytes_per_logit: float = 4.0
    # One chunk's working set on top: its backward (logsumexp's exp, gather's scatter, their sum, the division
    # by the temperature: float32 each) is the larger of forward's and backward's.
    unsloth_grpo_chunk_bytes_per_logit: float = 12.0
    # A forward without gradients through the same function: 16-bit logits, float32 copy, logsumexp's exp.
    unsloth_grpo_nograd_bytes_per_logit: float = 10.0
    # Unsloth's decoding KV buffer grows this many positions at a time (unsloth/models/llama.py:255).
    unsloth_kv_increment: int = 512
    # Caching-allocator fragmentation: torch's peak reserved over its peak allocated, measured per
    # backend on the stored H200 rows: Transformers 4-bit 6.4% (8-bit: 2.1%, kept at 6.4%),
    # Unsloth 16-bit 4.9% (also charged for 8-bit, unmeasured), Unsloth 4-bit 1.2%.
    allocator_fraction: float = 0.064
    allocator_fraction_unsloth: float = 0.049
    allocator_fraction_unsloth_4bit: float = 0.012

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
    grad_accum: int = 1  # micro-batches per optimizer step: after the first, gradients stay
    sharded: bool = False  # FSDP2 over world_size processes (shard = full)
    method: str = "sft"  # sft, a preference method (dpo, orpo, simpo, kto), or grpo
    # GRPO (TRL's GRPOConfig): batch_size counts completions; the generation batch is batch_size x
    # gradient_accumulation_steps completions (grpo_config.py:1085-1087, steps_per_generation).
    num_generations: int = 8
    max_completion_length: int = 256
    max_prompt_length: int = 0  # 0: the prompt is bounded by seq_len only
    kl_beta: float = 0.0  # > 0: reference log-probs (the adapter disabled) are computed too

    @property
    def sequences(self) -> int:
        """Sequences in one forward with gradients: TRL's paired collators put a pair's chosen and
        rejected in one batch (dpo_trainer.py:355-357, input_ids = prompt + chosen|rejected; ORPO and
        CPO's concatenated_forward the same). KTO's KL sequences go through their own forwards without
        gradients (kto_trainer.py:1403-1446), and GRPO's batch is completions."""
        return self.batch_size * (2 if self.method in ("dpo", "orpo", "simpo") else 1)

    @property
    def prompt_len(self) -> int:
        """GRPO: the longest prompt the engine keeps (train/grpo.py skips longer ones): max_seq_length
        less max_completion_length, or max_prompt_length when that is smaller."""
        room = max(self.seq_len - self.max_completion_length, 1)
        return min(self.max_prompt_length, room) if self.max_prompt_length else room

    @property
    def train_len(self) -> int:
        """Tokens a training sequence holds: max_seq_length, or GRPO's prompt + completion."""
        return self.prompt_len + self.max_completion_length if self.method == "grpo" else self.seq_len

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
            grad_accum=int(values.get("gradient_accumulation_steps", 1)),
            sharded=values.get("shard", "off") != "off" and world_size > 1,
            method=str(values.get("method", "sft")),
            num_generations=int(values.get("num_generations", 8)),
            max_completion_length=int(values.get("max_completion_length", 256)),
            max_prompt_length=int(values.get("max_prompt_length", 0)),
            kl_beta=float(values.get("kl_beta", 0.0)),
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
    loss_chunks: int = 0  # Unsloth's fused loss: the chunk count it will choose (0: another backend)
    loss_chunk_tokens: int = 0  # and the tokens in its largest chunk
    loss_target_gib: float = 0.0  # the memory target it sizes them for (before the fixed part)
    # the step's fullest moment: "loss" (Unsloth's fused loss, or a preference method's / GRPO's
    # logits), "backward", or "generation" (GRPO sampling its completions)
    peak_at: str = "backward"

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
    tokens = inp.sequences * inp.train_len

    # Base weights: the layers' Linears are quantized; embeddings, lm_head, norms and a MoE's fused
    # experts and routers stay 16-bit (float32 on the Transformers backend, where peft upcasts
    # every unquantized parameter for k-bit training).
    linear = L * arch.layer_linear_params
    # (not when sharded: the engine leaves prepare_model_for_kbit_training out, backends.load_model)
    upcast = inp.backend != "unsloth" and inp.precision in (4, 8) and not inp.sharded
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
    # DDP's gradient buckets hold a second copy of the gradients, allocated once and kept.
    bucket = grads if inp.world_size > 1 and not inp.sharded else 0.0
    if inp.optim in ("adamw_8bit", "paged_adamw_8bit"):
        small = L * sum(n for pair in shapes for n in pair if n < c.adam8bit_min_size)
        optim = (trainable - small) * c.adam8bit_bytes_per_param + small * c.adamw_bytes_per_param
    else:
        optim = trainable * c.adamw_bytes_per_param
    gathered = exchange = 0.0
    if inp.sharded:
        base, lora, grads, optim, gathered, exchange = shard_over(inp.world_size, base, lora, grads, optim, sixteen, L)
        base += gathered
        notes.append(
            f"sharded over {inp.world_size} GPUs (FSDP2): weights, gradients and optimizer states split; "
            f"{gathered / GIB:.2f} GB of weights gathered whole at a time, "
            f"{exchange / GIB:.2f} GB of one layer's gradients before they are reduced"
        )

    ref_weights = reference_weights(arch, inp)
    if ref_weights:  # weights only: no gradients, no optimizer states
        base += ref_weights
        notes.append(
            f"{inp.method.upper()} with full fine-tuning: TRL loads the model again as the reference, in float32 "
            f"({ref_weights / GIB:.2f} GB, counted in the base weights)"
        )

    # Activations. One layer's working set (what it saves for backward, all of it at once while
    # it is recomputed), plus a 16-bit copy of its widest weight when it is dequantized on the fly.
    per_token = 2 * (c.act_hidden * h + c.act_q * arch.q_dim + c.act_kv * arch.kv_dim + c.act_mlp * arch.mlp_width)
    per_token += c.router_bytes_per_expert * arch.experts  # router logits and weights, float32
    per_token += 2 * inp.lora_r * len(shapes)
    dequant = 2 * max(d_in * d_out for d_in, d_out in arch.linears().values()) if inp.precision != 16 else 0
    layer_set = tokens * per_token + dequant
    layer_input = 2 * tokens * h
    mode = inp.checkpointing
    if mode == "unsloth" and inp.backend != "unsloth":
        mode = "true"
        notes.append("checkpointing 'unsloth' needs the Unsloth backend: standard checkpointing is used")
    if mode == "unsloth" and inp.seq_len < 512:
        mode = "true"  # unsloth/models/_utils.py: offloading is not worth it below 512 tokens
        notes.append("max_seq_length < 512: Unsloth uses standard checkpointing instead of offloading")
    # What each layer keeps on the GPU from its forward until its backward (kept), what stays for
    # the whole step (const), and what backward adds while it recomputes one layer (working).
    cpu_ram = 0.0
    if mode == "false":
        kept, const, working = layer_set, 0.0, 0.0
    elif mode == "true":
        kept, const, working = float(layer_input), 0.0, layer_set
    else:
        kept, const, working = 0.0, c.offload_gpu_buffers * layer_input, layer_set
        cpu_ram = L * layer_input
    if inp.backend != "unsloth" and inp.precision == 8:
        # bitsandbytes' 8-bit matmul keeps its input on ctx, outside save_for_backward, so
        # non-reentrant checkpointing never frees it; the inputs are float32 after peft's
        # upcast norms (bitsandbytes/autograd/_functions.py: ctx.tensors). Every layer's
        # q/k/v, o, gate/up and down inputs stay: 4h + 2q + 4h + 4i bytes a token, times the
        # measured factor. The engine now checkpoints 8-bit reentrantly, which should free
        # them; the term stays until a GPU run has measured that.
        held = tokens * (8 * h + 2 * arch.q_dim + 4 * arch.intermediate)
        kept += held * c.int8_saved_inputs_factor
        notes.append(
            "8-bit on Transformers + PEFT: counted as measured before the reentrant-checkpointing "
            "fix (bitsandbytes keeps every layer's inputs); expect less"
        )

    # Gradients where they live: the Trainer sets them to None after each optimizer step
    # (transformers/trainer.py:1593, 1879 model.zero_grad(); unsloth_zoo/fast_grad_params.py:96
    # set_to_none=True), so the first micro-batch's forward runs without them and its backward
    # makes them layer by layer while it frees the inputs kept for that layer. With accumulation
    # the later micro-batches run with every gradient in place.
    per_layer_grads = grads / L
    if inp.grad_accum > 1:
        back_grads, back_acts = grads, L * kept + const + working
    elif L * kept + per_layer_grads >= kept + grads:  # backward's first layer is its fullest
        back_grads, back_acts = per_layer_grads, L * kept + const + working
    else:  # its last layer: one kept input left, every gradient made
        back_grads, back_acts = grads, kept + const + working
    back_grads += bucket + exchange
    backward = back_grads + back_acts
    # At the loss: every kept input, the final norm's input and output; the first micro-batch's
    # forward has no gradient yet, a later one's (with accumulation) every one.
    first_at_loss = L * kept + const + 2 * layer_input + bucket
    at_loss = first_at_loss + (grads if inp.grad_accum > 1 else 0.0)

    frac = c.allocator_fraction
    if inp.backend == "unsloth":
        frac = c.allocator_fraction_unsloth_4bit if inp.precision == 4 else c.allocator_fraction_unsloth
    chunks = chunk_tokens = 0
    target = 0.0
    peak_at = "backward"
    eval_logits = 0.0
    generation = 0.0
    if inp.method != "sft":
        # TRL's preference trainers and GRPO take the model's whole logits (no labels: Unsloth's forward
        # returns them too, and Unsloth leaves the preference losses to TRL; GRPO on Unsloth is its own,
        # unsloth_grpo_moments): counted at
        # the loss, on top of every kept input, against backward's fullest layer.
        loss, eval_logits, generation = method_moments(arch, inp, c, at_loss, (per_token, dequant), upcast, notes)
        logits = max(0.0, loss - backward)
        if loss > backward:
            peak_at = "loss"
    elif inp.backend == "unsloth":
        # Unsloth's fused loss (unsloth_zoo fused_losses/cross_entropy_loss.py, "CE"). The gradient is
        # taken inside forward (CE:420-487 torch.func.grad_and_value per chunk) and only grad_inputs
        # (and the lm_head gradient) survive it (CE:592): the chunk's logits are gone before backward
        # recomputes the layers, so the step's peak is the larger of the two moments, not their sum.
        grad_input = 2 * tokens * h  # CE:342 empty_like(hidden_states), 16-bit
        # CE:345-348: a trainable lm_head's gradient, 16-bit (UNSLOTH_CE_FP32_HEAD_GRAD off, CE:43);
        # each chunk's own head gradient comes on top while it is added (CE:439-454).
        head = 2 * arch.vocab * h if inp.full else 0
        fixed = grad_input + 2 * head  # CE:361-369: what no chunk count shrinks
        target = c.unsloth_ce_target_cap_gib * GIB
        if gpu_gib is not None:
            # Read once, at the first loss call (CE:221-224 functools.cache; CE:370 after grad_inputs
            # exists): the first step's forward, before any optimizer state or gradient.
            first = (base + lora + first_at_loss + grad_input + head) * (1 + frac)
            free = gpu_gib * GIB - c.cuda_context_gib * GIB - first
            target = min(target, c.unsloth_ce_free_fraction * max(free, 0.0))
        chunks = unsloth_loss_chunks(tokens, arch.vocab, target, fixed, c.unsloth_ce_sizing_bytes)
        chunk_tokens = -(-tokens // chunks)  # torch.chunk (CE:387-388; CHUNK_ALIGN_ROWS is 0 by default)
        per_logit = c.unsloth_ce_bytes_softcap if arch.softcap else c.unsloth_ce_bytes_per_logit
        loss = at_loss + grad_input + 2 * head + chunk_tokens * arch.vocab * per_logit
        logits = max(0.0, loss - backward)
        if loss > backward:
            peak_at = "loss"
        # Evaluation: no gradient (CE:753), so no grad_inputs and nothing fixed (CE:364).
        eval_chunk = -(-tokens // unsloth_loss_chunks(tokens, arch.vocab, target, 0, c.unsloth_ce_sizing_bytes))
        eval_logits = eval_chunk * arch.vocab * per_logit
        notes.extend(_unsloth_version_note())
    else:
        # TRL's chunks are checkpointed (trl/trainer/sft_trainer.py:212) and recomputed inside backward:
        # counted on top of backward's working set, where the stored Transformers rows measure it.
        chunk = min(tokens, c.trl_chunk_tokens)
        logits = chunk * arch.vocab * c.trl_chunk_bytes_per_logit
        if upcast:  # each chunk casts the float32 lm_head to the hidden states' 16-bit dtype
            logits += 2 * arch.vocab * h
        eval_logits = min(tokens * arch.vocab * c.eval_bytes_per_logit, logits)
    step = backward + logits

    # Evaluation runs after an optimizer step (no gradients) with no graph: it only adds to the peak
    # when one layer's forward and its loss exceed what training needed.
    evaluation = max(0.0, (bucket + layer_set + eval_logits) - step) if inp.eval else 0.0

    torch_total = base + lora + optim + step + evaluation
    parts = [c.cuda_context_gib * GIB, base, lora, back_grads, optim, back_acts, logits, evaluation]
    if generation:
        generation += base + lora + optim
    if generation > torch_total:
        # GRPO samples its completions before the step's forward, gradients None (set_to_none after the
        # last step): the KV cache and the prefill are shown as activations, nothing as gradients or logits.
        parts = [c.cuda_context_gib * GIB, base, lora, 0.0, optim, generation - base - lora - optim, 0.0, 0.0]
        notes.append(
            f"GRPO: the peak is at generation; the training step needs {(torch_total * (1 + frac)) / GIB:.2f} GB"
        )
        torch_total, peak_at = generation, "generation"
    elif inp.method == "grpo":
        notes.append(f"GRPO: the peak is the training step; generation needs {(generation * (1 + frac)) / GIB:.2f} GB")
    overhead = torch_total * frac
    parts.append(overhead)
    breakdown = {k: v / GIB for k, v in zip(TERMS, parts)}
    return Estimate(
        breakdown=breakdown,
        peak_gib=sum(breakdown.values()),
        cpu_ram_gib=cpu_ram / GIB,
        gpu_gib=gpu_gib,
        checkpointing=mode,
        trainable_params=trainable,
        notes=tuple(notes),
        unreliable="; ".join((*arch.unmodelled, *unmodelled_method(inp))) or None,
        loss_chunks=chunks,
        loss_chunk_tokens=chunk_tokens,
        loss_target_gib=target / GIB,
        peak_at=peak_at,
    )


def reference_model(inp: Inputs) -> bool:
    """Whether TRL loads a second model as the reference: only when there is no adapter to disable (full
    fine-tuning) and the method uses one (DPO, KTO; GRPO with kl_beta > 0, grpo_trainer.py:979-995)."""
    return inp.full and (inp.method in ("dpo", "kto") or inp.method == "grpo" and inp.kl_beta > 0)


def reference_weights(arch: Arch, inp: Inputs) -> float:
    """Bytes of that second model. mgtui's engine passes no ref_model and no model_init_kwargs (train/preference.py
    and train/grpo.py make_trainer), so TRL loads the checkpoint again with create_model_from_path
    (dpo_trainer.py:919-935, kto_trainer.py:922-938, grpo_trainer.py:986-995), in float32 (trl/trainer/utils.py:1292:
    dtype defaults to "float32", whatever the policy's 16-bit) and on the GPU (utils.py:1305 device_map "auto"; under
    DDP None, then accelerator.prepare_model(..., evaluation_mode=True) places it, dpo_trainer.py:976). No gradients,
    no optimizer states; FSDP shards it like the policy (prepare_fsdp, dpo_trainer.py:974)."""
    if not reference_model(inp):
        return 0.0
    return 4.0 * arch.params / (inp.world_size if inp.sharded else 1)


def reference_autocast_cache(arch: Arch, inp: Inputs) -> float:
    """The reference's forward runs under accelerate's autocast (prepare_model wraps its forward, accelerator.py
    :1824-1830), which caches the 16-bit cast of every float32 leaf weight that requires grad (from_pretrained's
    parameters do) until the outermost autocast exits, no_grad or not (torch's cached_cast skips only inference
    mode): by the reference's lm_head every Linear's and the head's 16-bit copy is held."""
    if not reference_model(inp):
        return 0.0
    return 2.0 * (arch.layers * arch.layer_linear_params + arch.vocab * arch.hidden)


def shard_over(
    n: int, base: float, lora: float, grads: float, optim: float, unlayered: float, layers: int
) -> tuple[float, float, float, float, float, float]:
    """FSDP2 (torch.distributed.fsdp.fully_shard, one unit per decoder layer and one for the rest, as
    accelerate's transformer auto-wrap makes them): each rank keeps 1/n of every parameter, of its
    gradient (reduce-scattered) and of its optimizer state. Forward and backward all-gather one unit's
    parameters whole, and prefetch the next unit's (FSDP2's default), so two units are whole at
    once: two decoder layers, or the embeddings and head with a layer. Backward holds one layer's
    gradients whole until they are reduce-scattered. Returns the per-rank base, lora, gradients and
    optimizer states, what is gathered whole, and the gradient exchange buffer."""
    layer = (base - unlayered + lora) / layers  # one decoder layer's weights, whole
    gathered = layer + max(layer, unlayered)
    exchange = grads / layers
    return base / n, lora / n, grads / n, optim / n, gathered, exchange


def unsloth_loss_chunks(tokens: int, vocab: int, target: float, fixed: float, sizing: float = 16.0) -> int:
    """How many chunks Unsloth's fused loss splits `tokens` rows into, for a target and the bytes no
    chunk count shrinks (unsloth_zoo fused_losses/cross_entropy_loss.py:227-269, "CE")."""
    if target <= 0:  # CE:235-236 raises: nothing is free; the estimate is over the card anyway
        return tokens
    if 0 < fixed < target:  # CE:240-241
        target -= fixed
    exact = tokens * vocab * sizing / target  # CE:244-245 and CE:262-265
    if exact <= 1.0 + 1e-9:  # CE:266-267
        return 1
    return min(math.ceil(exact / 4 - 1e-9) * 4, tokens)  # CE:268-269: rounded up to a multiple of 4


# The Unsloth whose source the loss term follows (unsloth_zoo, and unsloth/models/llama.py).
UNSLOTH_READ = "2026.10.7"


@functools.lru_cache(maxsize=1)
def installed_unsloth() -> dict[str, str]:
    """unsloth's and unsloth_zoo's installed versions, from their `<name>-<version>.dist-info` folders on
    sys.path (where importlib.metadata finds them, without its import cost): nothing is imported."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            name, _, version = n.removesuffix(".dist-info").partition("-")
            if n.endswith(".dist-info") and name.lower() in ("unsloth", "unsloth_zoo"):
                found.setdefault(name.lower(), version)
    return found


def _unsloth_version_note() -> list[str]:
    other = {k: v for k, v in installed_unsloth().items() if v != UNSLOTH_READ}
    if not other:
        return []
    have = ", ".join(f"{k} {v}" for k, v in sorted(other.items()))
    return [f"Unsloth's fused loss is counted as {UNSLOTH_READ} computes it; installed here: {have}"]


def method_moments(
    arch: Arch, inp: Inputs, c: Coefficients, at_loss: float, layer: tuple[float, int], upcast: bool, notes: list[str]
) -> tuple[float, float, float]:
    """A preference method's or GRPO's fullest moment at the loss (bytes, like `at_loss`, which it
    includes), its evaluation logits, and GRPO's generation moment before the weights and optimizer
    states (0 for the others)."""
    V = arch.vocab
    cast = 2 * V * arch.hidden if upcast else 0  # autocast's 16-bit copy of a float32 lm_head, kept for backward
    if inp.method == "grpo":
        return _grpo_moments(arch, inp, c, at_loss, layer, cast, notes)
    per_token, dequant = layer  # one layer's working set: per token, and its dequantized widest weight
    per_logit = {
        "dpo": c.dpo_bytes_per_logit,
        "kto": c.kto_bytes_per_logit,
        "orpo": c.orpo_bytes_per_logit,
        "simpo": c.simpo_bytes_per_logit,
    }[inp.method]
    logit_tokens = inp.sequences * inp.seq_len
    head = logit_tokens * V * per_logit + cast
    ref = 0.0
    if inp.method in ("dpo", "kto"):
        # The reference forward (no gradients: trl/trainer/dpo_trainer.py:1395-1407, kto_trainer.py:1518-1531;
        # with LoRA the adapter disabled, use_adapter(model, adapter_name=None), no second model) runs
        # after the policy's, whose logits (4 bytes) and kept inputs stay: one layer's forward at a time,
        # then its own logits. KTO's KL batch (kto_trainer.py:1403-1446: policy, then reference, both
        # without gradients, batch_size prompts each paired with another reply) is the same size again.
        # Full fine-tuning: the reference is the second model (reference_weights), its forward under autocast
        # holding a 16-bit copy of its weights (reference_autocast_cache); its layers' float32 residual stream is
        # not counted beyond the 16-bit working set.
        layer_set = logit_tokens * per_token + dequant
        ref = logit_tokens * V * 4 + cast + max(layer_set, logit_tokens * V * c.nograd_bytes_per_logit)
        ref += reference_autocast_cache(arch, inp)
        notes.append(
            f"{inp.method.upper()}: the reference forward without gradients "
            + (
                "(the float32 reference model, its 16-bit weight casts held by autocast)"
                if inp.full
                else "(adapter disabled)"
            )
            + (" and the KL batch's policy and reference forwards" if inp.method == "kto" else "")
            + f"; full logits of {logit_tokens} tokens, {logit_tokens * V * per_logit / GIB:.2f} GB at the loss"
        )
    else:
        notes.append(
            f"{inp.method.upper()}: no reference model; chosen and rejected in one forward, full logits of "
            f"{logit_tokens} tokens, {logit_tokens * V * per_logit / GIB:.2f} GB at the loss"
        )
    # Evaluation runs the same loss without gradients (prediction_step -> compute_loss under no_grad).
    return at_loss + max(head, ref), logit_tokens * V * per_logit, 0.0


def _grpo_moments(
    arch: Arch, inp: Inputs, c: Coefficients, at_loss: float, layer: tuple[float, int], cast: float, notes: list[str]
) -> tuple[float, float, float]:
    """GRPO as TRL's GRPOTrainer (trl/trainer/grpo_trainer.py, "G") runs it with transformers' generate, or as
    Unsloth patches it (unsloth_grpo_moments)."""
    V = arch.vocab
    per_token, dequant = layer
    P, C = inp.prompt_len, inp.max_completion_length
    # G:1633-1641: one generation every steps_per_generation (= gradient_accumulation_steps) micro-batches,
    # of batch_size x steps_per_generation completions, all sampled in one generate call (G:1905-1951,
    # left-padded prompts; the sampler repeats each prompt num_generations times, so num_generations
    # sets how many prompts, not how many completions).
    completions = inp.batch_size * inp.grad_accum
    # transformers' DynamicCache: k and v per layer, kv width, 16-bit, for prompt + completion tokens.
    kv = float(arch.layers * 2 * arch.kv_dim * 2 * completions * (P + C))
    # The prefill: one layer's forward over every prompt token at a time (no gradients: bounded by what
    # a layer saves); each decoding step's last-token logits, 16-bit, float32 and the processed scores.
    prefill = completions * P * per_token + dequant
    step_logits = completions * V * (2 + 4 + 4)
    # Per-token log-probs kept from scoring to the loss, float32 over the generation batch: the
    # reference's when kl_beta > 0 (G:2772-2797), the old policy's only when num_iterations > 1 or
    # generation is misaligned with accumulation (G:2704-2719; TRL's default num_iterations 1: none).
    stored = completions * C * 4 * (1 if inp.kl_beta > 0 else 0)
    # Full fine-tuning with kl_beta > 0: the reference is a second model (reference_weights), whose scoring
    # forward holds autocast's 16-bit casts of its weights.
    ref_cache = reference_autocast_cache(arch, inp)
    if inp.backend == "unsloth":
        kv, head, scoring = unsloth_grpo_moments(arch, inp, c, layer, completions, notes)
    else:
        logit_tokens = inp.batch_size * C  # G:1562-1579: logits for the completion tokens only
        head = logit_tokens * V * c.grpo_bytes_per_logit + cast
        # The reference scoring, per_device_train_batch_size completions at a time (G:2567, G:1511-1516),
        # no gradients; before the step's forward, nothing kept.
        scoring = inp.batch_size * (P + C) * per_token + dequant + logit_tokens * V * c.nograd_bytes_per_logit
    generation = kv + max(prefill, step_logits)
    if inp.kl_beta > 0:
        scoring += stored + ref_cache
        notes.append(
            f"GRPO kl_beta {inp.kl_beta:g}: reference log-probs scored "
            + ("with the float32 reference model" if inp.full else "with the adapter disabled (no second model)")
        )
    else:
        scoring = 0.0
    notes.append(
        f"GRPO: {completions} completions generated at once (batch {inp.batch_size} x accumulation {inp.grad_accum}), "
        f"KV cache {kv / GIB:.2f} GB for {P} + {C} tokens each; training on {inp.batch_size} at a time"
    )
    loss = at_loss + stored + max(head, scoring)
    return loss, 0.0, generation
    # Evaluation (0 above): it generates per_device_eval_batch_size completions, fewer than the
    # training's generation batch, and keeps no graph.


def unsloth_grpo_chunk(inp: Inputs) -> int:
    """Completion positions in one chunk of Unsloth's GRPO log-softmax (unsloth_zoo/rl_replacements.py, "Z").
    The chunk count is rows x multiplier: Z:2686 (packed rows, the default), Z:3117 (padded rows), Z:2832
    (shared prompts); the multiplier is max(4, seq_len // 4096) over the padded prompt + completion (Z:680
    autotune_batch_and_chunks, or Z:2404 with unsloth_grpo_mini_batch), as mgtui sets neither
    unsloth_logit_chunk_multiplier nor unsloth_grpo_mini_batch (unsloth/models/rl.py:577-594; unsloth_num_chunks
    is read by nothing, Z:2304). So a chunk is a row's completion over the multiplier, whatever the batch
    (UNSLOTH_GRPO_MAX_ROWS_PER_CHUNK, Z:162-168, can only cap it lower: not read here)."""
    multiplier = max(4, inp.train_len // 4096)
    return -(-inp.max_completion_length // multiplier)


def unsloth_kv_positions(P: int, C: int, inc: int) -> tuple[int, int]:
    """Positions per sequence Unsloth's decoding holds at its fullest, as (cache positions, the attention
    scratch's positions). Unsloth's generate (unsloth/models/llama.py:2721, on the model TRL generates with
    after FastLanguageModel.for_inference, unsloth/models/rl.py:258-297) prefills through its training forward,
    whose K and V (P positions) stay referenced through the first decoding step, while each layer copies them
    into its own buffer of P + 1 + inc positions (llama.py:696-704) beside an attention scratch of the same
    length (llama.py:717-721); buffer and scratch grow by inc positions (llama.py:724-736) up to P + C."""
    final = P + 1 + inc * max(1, -(-C // inc))
    return max(P + (P + 1 + inc), final), final


def unsloth_grpo_moments(
    arch: Arch, inp: Inputs, c: Coefficients, layer: tuple[float, int], completions: int, notes: list[str]
) -> tuple[float, float, float]:
    """GRPO on Unsloth, without vLLM (mgtui doesn't install it: generation is Unsloth's generate). Returns the
    generation KV cache, the loss's head term and the reference scoring (before its stored log-probs), bytes.

    The loss (unsloth/models/rl_replacements.py:3674-3976 compute_loss -> Z:2130 grpo_accumulated_loss): one
    forward over the micro-batch's rows with the Unsloth checkpointing of SFT (counted in at_loss), returning the
    final hidden states, not logits (UNSLOTH_RETURN_HIDDEN_STATES, Z:2338). The completion positions' hidden states
    are gathered into a copy (Z:2707) and the lm_head applied chunk by chunk (unsloth_grpo_chunk): every chunk's
    float32 logits kept for backward (unsloth_grpo_saved_bytes_per_logit), one chunk's working set on top. The
    first time a length is packed (and whenever a batch is longer than any verified), Unsloth checks the packed
    forward against each row alone, without gradients, with the packed graph still held (Z:2736-2767): one
    row's prompt + completion logits in a single chunk (chunks = 1, Z:2763), and the shared-prompt forward's
    check over the micro-batch's tokens (Z:2872-2877); counted for micro-batches of two rows or more (Z:2682)."""
    V, h = arch.vocab, arch.hidden
    per_token, dequant = layer
    P, C = inp.prompt_len, inp.max_completion_length
    kv_positions, scratch_positions = unsloth_kv_positions(P, C, c.unsloth_kv_increment)
    kv = arch.layers * completions * (2 * arch.kv_dim * 2 * kv_positions + 2 * arch.heads * scratch_positions)
    chunk = unsloth_grpo_chunk(inp)
    completion_tokens = inp.batch_size * C
    tokens = inp.batch_size * (P + C)
    gathered = 2 * completion_tokens * h  # Z:2707 the completion positions' hidden states, 16-bit
    saved = completion_tokens * V * c.unsloth_grpo_saved_bytes_per_logit
    working = chunk * V * c.unsloth_grpo_chunk_bytes_per_logit
    check = 0.0
    if inp.batch_size >= 2:
        row = (P + C) * V * c.unsloth_grpo_nograd_bytes_per_logit
        check = max(tokens * per_token + dequant, row) + 2 * tokens * h
    head = gathered + saved + max(working, check)
    # The scoring forward (kl_beta > 0: the reference's log-probs; with kl_beta 0 and one iteration none runs,
    # compute_efficient, rl_replacements.py:2498-2501) is Unsloth's _get_per_token_logps_and_entropies
    # (rl_replacements.py:2481-2700), without gradients, the rows at once that autotune_batch_and_chunks finds room
    # for (80% of what is free, rl_replacements.py:2608-2616): the whole generation batch is counted, the most it takes.
    scoring_tokens = completions * (P + C)
    scoring = scoring_tokens * per_token + dequant + 2 * scoring_tokens * h
    scoring += chunk * V * c.unsloth_grpo_nograd_bytes_per_logit
    notes.append(
        f"GRPO on Unsloth: log-probs from the hidden states in chunks of {chunk} completion tokens "
        f"(max_completion_length / max(4, sequence // 4096)), {saved / GIB:.2f} GB of float32 logits kept for "
        "backward (an upper bound: compiled, it may keep 16-bit); decoding in Unsloth's KV buffers, grown "
        f"{c.unsloth_kv_increment} tokens at a time"
    )
    return kv, head, scoring


def unmodelled_method(inp: Inputs) -> tuple[str, ...]:
    """What the estimate can't count for a method: it says so, and gives no verdict. Nothing at present: GRPO on
    Unsloth and the full fine-tuning reference model are counted (unsloth_grpo_moments, reference_weights)."""
    return ()
