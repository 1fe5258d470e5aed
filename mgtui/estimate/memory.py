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
    method: str = "sft"  # sft, or a preference method (dpo, orpo, simpo, kto)

    @property
    def sequences(self) -> int:
        """Sequences in one forward: TRL's preference collators put a pair's chosen and rejected in
        one batch (dpo_trainer.py: DataCollatorForPreference, input_ids = chosen + rejected), and
        KTO each reply with its KL sequence (kto_trainer.py: KL_input_ids)."""
        return self.batch_size * (1 if self.method == "sft" else 2)

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
    peak_at: str = "backward"  # the step's fullest moment: "loss" (Unsloth's fused loss) or "backward"

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
    tokens = inp.sequences * inp.seq_len

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
    if inp.backend == "unsloth":
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
    overhead = torch_total * frac
    parts = [c.cuda_context_gib * GIB, base, lora, back_grads, optim, back_acts, logits, evaluation, overhead]
    breakdown = {k: v / GIB for k, v in zip(TERMS, parts)}
    return Estimate(
        breakdown=breakdown,
        peak_gib=sum(breakdown.values()),
        cpu_ram_gib=cpu_ram / GIB,
        gpu_gib=gpu_gib,
        checkpointing=mode,
        trainable_params=trainable,
        notes=tuple(notes),
        unreliable="; ".join((*arch.unmodelled, *unmodelled_method(inp.method))) or None,
        loss_chunks=chunks,
        loss_chunk_tokens=chunk_tokens,
        loss_target_gib=target / GIB,
        peak_at=peak_at,
    )


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


def unmodelled_method(method: str) -> tuple[str, ...]:
    """What the estimate leaves out of a preference method (its sequences are counted, two per
    example): no GPU run has measured these yet, so the estimate says it is unreliable."""
    if method == "dpo":
        return ("DPO's reference forward (no gradients, adapter disabled) and its unchunked logits are not measured",)
    if method in ("orpo", "simpo"):
        return (f"{method.upper()}'s unchunked logits for chosen and rejected are not measured (no reference model)",)
    if method == "kto":
        return ("KTO's KL batch and reference forwards (no gradients) are not measured",)
    return ()
