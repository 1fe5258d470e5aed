"""Model architectures for the estimator: read from a config.json (local, HF cache, Hub) or
from a built-in catalog of popular models. Pure: json and pathlib only (the Hub fetch imports
huggingface_hub lazily, and only when online)."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..demo_model import BUILTIN_MODEL, TINY_LLAMA_CONFIG
from ..hub_cache import hf_cache_file, hub_config

# Model types whose layers are Llama-shaped (attention + gated MLP) and that we count exactly.
_FOUR_NORMS = {"gemma2", "gemma3_text"}  # pre/post norms around attention and MLP
_QK_NORM = {"qwen3", "qwen3_moe", "gemma3_text"}
_QKV_BIAS = {"qwen2", "qwen2_moe"}
_DENSE = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3"}
# Mixture-of-Experts families, counted as transformers 5 builds them: the routed experts are fused
# 3-D parameters (every expert resident), the router a parameter, shared experts plain Linears.
_MOE = {"qwen3_moe", "mixtral", "gpt_oss", "qwen2_moe"}


@dataclass(frozen=True)
class Arch:
    name: str
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    attention_bias: bool = False
    softcap: bool = False  # Gemma 2's final logit softcapping costs 2 more bytes per logit
    experts: int = 0  # routed experts per layer (0: a dense model)
    experts_active: int = 0  # experts each token goes through (num_experts_per_tok)
    expert_intermediate: int = 0  # one expert's MLP width
    shared_intermediate: int = 0  # the shared expert's MLP width (Qwen2-MoE), 0 if none
    expert_bias: bool = False  # gpt-oss: biases on the experts and the router, and attention sinks
    unmodelled: tuple[str, ...] = ()  # what the config holds that this count leaves out: unreliable
    kept_16bit: int = 0  # layer Linear parameters a bnb checkpoint keeps unquantized (Unsloth's dynamic quants)

    @property
    def mlp_width(self) -> int:
        """The MLP width one token's activations go through: the dense MLP, or its active experts."""
        if not self.experts:
            return self.intermediate
        return self.experts_active * self.expert_intermediate + self.shared_intermediate

    @property
    def expert_params(self) -> int:
        """The routed experts' gate, up and down (and gpt-oss' biases), all layers: fused 3-D
        parameters, which transformers' bitsandbytes loading (it replaces Linears) leaves in 16-bit."""
        if not self.experts:
            return 0
        e, h, i = self.experts, self.hidden, self.expert_intermediate
        return self.layers * (e * 3 * h * i + (e * (2 * i + h) if self.expert_bias else 0))

    @property
    def router_params(self) -> int:
        """Routers (a parameter, never quantized), gpt-oss' router bias and attention sinks, and
        the shared expert's one-output gate."""
        if not self.experts:
            return 0
        per_layer = self.experts * self.hidden
        if self.expert_bias:
            per_layer += self.experts + self.heads
        if self.shared_intermediate:
            per_layer += self.hidden
        return self.layers * per_layer

    def expert_lora_params(self, r: int, targets: set[str], backend: str) -> int:
        """LoRA on the fused experts, all layers. Unsloth adds them as PEFT target_parameters at
        rank r when gate/up/down are targeted (unsloth/models/_utils.py get_moe_target_parameters);
        plain PEFT maps Qwen-style experts itself, at rank 2r on gate_up
        (peft/utils/transformers_weight_conversion.py), and leaves Mixtral's and gpt-oss' alone."""
        if not self.experts:
            return 0
        e, h, i = self.experts, self.hidden, self.expert_intermediate
        gate_up, down = bool(targets & {"gate_proj", "up_proj"}), "down_proj" in targets
        if backend != "unsloth":
            if self.model_type not in ("qwen3_moe", "qwen2_moe"):
                return 0
            return self.layers * e * ((2 * r * (h + 2 * i) if gate_up else 0) + (r * (i + h) if down else 0))
        return self.layers * e * ((r * (h + 2 * i) if gate_up else 0) + (r * (i + h) if down else 0))

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """Per-layer linear modules: name -> (d_in, d_out), named as PEFT targets them. In a MoE
        layer the MLP Linears are the shared expert's (none without one): fused experts are no
        Linear, so bitsandbytes doesn't quantize them and a LoRA target name doesn't reach them."""
        h, i = self.hidden, self.intermediate
        if self.experts:
            attention = {
                "q_proj": (h, self.q_dim),
                "k_proj": (h, self.kv_dim),
                "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h),
            }
            s = self.shared_intermediate
            return attention | ({"gate_proj": (h, s), "up_proj": (h, s), "down_proj": (s, h)} if s else {})
        if self.model_type == "phi3":  # fused projections
            return {
                "qkv_proj": (h, self.q_dim + 2 * self.kv_dim),
                "o_proj": (self.q_dim, h),
                "gate_up_proj": (h, 2 * i),
                "down_proj": (i, h),
            }
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def targeted(self, targets: list[str]) -> dict[str, tuple[int, int]]:
        """The per-layer linears that LoRA targets; q/k/v and gate/up map onto Phi-3's fused ones."""
        fused = {"qkv_proj": {"q_proj", "k_proj", "v_proj"}, "gate_up_proj": {"gate_proj", "up_proj"}}
        want = set(targets)
        return {n: s for n, s in self.linears().items() if n in want or want & fused.get(n, set())}

    @property
    def layer_linear_params(self) -> int:
        return sum(a * b for a, b in self.linears().values())

    @property
    def embed_params(self) -> int:
        """Embedding plus an untied lm_head: kept in 16-bit under 4- and 8-bit loading."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def small_params(self) -> int:
        """Norms and biases: tiny, kept in 16/32-bit."""
        norms = (4 if self.model_type in _FOUR_NORMS else 2) * self.hidden
        if self.model_type in _QK_NORM:
            norms += 2 * self.head_dim
        bias = 0
        if self.model_type in _QKV_BIAS:
            bias = self.q_dim + 2 * self.kv_dim
        elif self.attention_bias:
            bias = self.q_dim + 2 * self.kv_dim + self.hidden
        return self.layers * (norms + bias) + self.hidden

    @property
    def params(self) -> int:
        return (
            self.layers * self.layer_linear_params
            + self.expert_params
            + self.router_params
            + self.embed_params
            + self.small_params
        )


def from_config(cfg: dict[str, Any], name: str = "") -> Arch:
    """An Arch from a Hugging Face config dict. Raises KeyError/ValueError when it isn't one we know."""
    if "text_config" in cfg and "hidden_size" not in cfg:  # multimodal wrapper: the language model
        outer: dict[str, Any] = {k: cfg[k] for k in ("vision_config", "quantization_config") if k in cfg}
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", cfg.get("model_type")), **outer}
    h, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    model_type = str(cfg.get("model_type", "llama"))
    if model_type == "gemma3":
        model_type = "gemma3_text"
    experts = int(cfg.get("num_experts") or cfg.get("num_local_experts") or cfg.get("n_routed_experts") or 0)
    arch = Arch(
        name=name or cfg.get("_name_or_path", model_type),
        model_type=model_type,
        hidden=h,
        intermediate=int(cfg["intermediate_size"]),
        layers=int(cfg["num_hidden_layers"]),
        heads=heads,
        kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or h // heads),
        vocab=int(cfg["vocab_size"]),
        tied=bool(cfg.get("tie_word_embeddings", model_type.startswith("gemma"))),
        attention_bias=bool(cfg.get("attention_bias", False)),
        softcap=bool(cfg.get("final_logit_softcapping")),
        experts=experts if model_type in _MOE else 0,
        experts_active=int(cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or 0),
        expert_intermediate=int(cfg.get("moe_intermediate_size") or cfg["intermediate_size"]),
        shared_intermediate=int(cfg.get("shared_expert_intermediate_size") or 0),
        expert_bias=model_type == "gpt_oss",
        unmodelled=unmodelled(cfg, model_type, experts),
    )
    skipped = (cfg.get("quantization_config") or {}).get("llm_int8_skip_modules") or []
    return replace(arch, kept_16bit=kept_16bit(arch, skipped)) if skipped else arch


def kept_16bit(arch: Arch, skipped: list[str]) -> int:
    """Parameters of the layer Linears that a bitsandbytes checkpoint's llm_int8_skip_modules keeps
    in 16-bit ("model.layers.3.mlp.down_proj", or a whole "model.layers.3.mlp")."""
    linears = arch.linears()
    total = 0
    for name in skipped:
        parts = str(name).split(".")
        if "layers" not in parts:
            continue  # lm_head, vision parts: already 16-bit, or not counted
        leaf = parts[-1]
        if leaf in linears:
            total += linears[leaf][0] * linears[leaf][1]
        elif leaf in ("mlp", "self_attn"):
            group = ("gate_proj", "up_proj", "down_proj") if leaf == "mlp" else ("q_proj", "k_proj", "v_proj", "o_proj")
            total += sum(linears[n][0] * linears[n][1] for n in group if n in linears)
    return total


def untrainable(cfg: dict[str, Any], name: str) -> str | None:
    """Why mgtui can't fine-tune this checkpoint (one line, with what to use instead), or None."""
    if "vision_config" in cfg:
        return (
            f"--base-model {name}: a vision-language model (vision_config); mgtui fine-tunes text-only "
            "causal language models: use its text-only variant"
        )
    quant = cfg.get("quantization_config") or {}
    method = str(quant.get("quant_method", "")).lower()
    if method and method != "bitsandbytes":
        return (
            f"--base-model {name}: its weights are pre-quantized as {method}; mgtui trains 16-bit checkpoints "
            "and bitsandbytes 4/8-bit ones: use a BF16 or -bnb-4bit upload of the same model"
        )
    return None


def config_path(base_model: str) -> tuple[str, Path | None]:
    """Where a model's config.json is on this machine, and what that place is called: a config file
    named directly, a local model directory, or the HF cache (None when it isn't there)."""
    local = Path(base_model).expanduser()
    if local.is_file() and local.name.endswith(".json"):
        return "config file", local
    if local.is_dir():
        return "local config", local / "config.json"
    return "HF cache", hf_cache_file(base_model, "config.json")


def local_config(base_model: str) -> dict[str, Any] | None:
    """The model's config.json from its local directory or the HF cache, without the network."""
    path = config_path(base_model)[1]
    try:
        return json.loads(path.read_text()) if path is not None and path.is_file() else None
    except (OSError, ValueError):
        return None


def unmodelled(cfg: dict[str, Any], model_type: str, experts: int) -> tuple[str, ...]:
    """What in this config the estimate leaves out. Any reason makes the estimate unreliable."""
    why: list[str] = []
    if model_type not in _DENSE | _MOE:
        why.append(f"model_type {model_type!r} is not modelled (counted as a Llama-shaped decoder)")
    elif experts and model_type not in _MOE:
        why.append(f"{model_type} has experts in a layout this estimator doesn't know")
    if "vision_config" in cfg:
        why.append("a vision tower (vision_config) and image tokens are not counted")
    if model_type in _MOE and (cfg.get("mlp_only_layers") or int(cfg.get("decoder_sparse_step") or 1) != 1):
        why.append("dense MLP layers between the expert layers are not counted")
    if cfg.get("q_lora_rank") or cfg.get("kv_lora_rank"):
        why.append("multi-head latent attention is not modelled")
    quant = cfg.get("quantization_config") or {}
    method = str(quant.get("quant_method", "")).lower()
    if method and method != "bitsandbytes":
        why.append(f"its weights are pre-quantized as {method}, a format this estimator doesn't count")
    return tuple(why)


def _c(
    model_type: str,
    h: int,
    i: int,
    layers: int,
    heads: int,
    kv: int,
    vocab: int,
    tied: bool,
    head_dim: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    cfg = dict(
        model_type=model_type,
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
        tie_word_embeddings=tied,
    )
    if head_dim:
        cfg["head_dim"] = head_dim
    return cfg | extra


# The catalog: real configs' shape fields (from each model's config.json), keyed by a
# regular expression over the normalised model name. Order matters: specific before general.
# fmt: off
CATALOG: list[tuple[str, str, dict[str, Any]]] = [
    ("llama-3.2-1b", r"llama-?3\.2-1b", _c("llama", 2048, 8192, 16, 32, 8, 128256, True, 64)),
    ("llama-3.2-3b", r"llama-?3\.2-3b", _c("llama", 3072, 8192, 28, 24, 8, 128256, True, 128)),
    ("llama-3.1-8b", r"llama-?3(\.[01])?-8b", _c("llama", 4096, 14336, 32, 32, 8, 128256, False)),
    ("llama-3.x-70b", r"llama-?3(\.[0-3])?-70b", _c("llama", 8192, 28672, 80, 64, 8, 128256, False)),
    ("qwen2.5-0.5b", r"qwen2\.5-0\.5b", _c("qwen2", 896, 4864, 24, 14, 2, 151936, True)),
    ("qwen2.5-1.5b", r"qwen2\.5-1\.5b", _c("qwen2", 1536, 8960, 28, 12, 2, 151936, True)),
    ("qwen2.5-3b", r"qwen2\.5-3b", _c("qwen2", 2048, 11008, 36, 16, 2, 151936, True)),
    ("qwen2.5-7b", r"qwen2\.5-7b", _c("qwen2", 3584, 18944, 28, 28, 4, 152064, False)),
    ("qwen2.5-14b", r"qwen2\.5-14b", _c("qwen2", 5120, 13824, 48, 40, 8, 152064, False)),
    ("qwen2.5-32b", r"qwen2\.5-32b", _c("qwen2", 5120, 27648, 64, 40, 8, 152064, False)),
    ("qwen2.5-72b", r"qwen2\.5-72b", _c("qwen2", 8192, 29568, 80, 64, 8, 152064, False)),
    # Mixture-of-Experts (every expert resident; the active ones in the activations)
    ("qwen3-30b-a3b", r"qwen3-30b-a3b", _c("qwen3_moe", 2048, 6144, 48, 32, 4, 151936, False, 128, moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8)),
    ("qwen3-235b-a22b", r"qwen3-235b-a22b", _c("qwen3_moe", 4096, 12288, 94, 64, 4, 151936, False, 128, moe_intermediate_size=1536, num_experts=128, num_experts_per_tok=8)),
    ("mixtral-8x7b", r"mixtral-8x7b", _c("mixtral", 4096, 14336, 32, 32, 8, 32000, False, num_local_experts=8, num_experts_per_tok=2)),
    ("mixtral-8x22b", r"mixtral-8x22b", _c("mixtral", 6144, 16384, 56, 48, 8, 32768, False, num_local_experts=8, num_experts_per_tok=2)),
    # openai's own uploads are MXFP4 (unreliable here, refused by train); BF16 and bnb uploads are not
    ("gpt-oss-20b-mxfp4", r"^gpt-oss-20b$", _c("gpt_oss", 2880, 2880, 24, 64, 8, 201088, False, 64, num_local_experts=32, num_experts_per_tok=4, attention_bias=True, quantization_config={"quant_method": "mxfp4"})),
    ("gpt-oss-20b", r"gpt-oss-20b", _c("gpt_oss", 2880, 2880, 24, 64, 8, 201088, False, 64, num_local_experts=32, num_experts_per_tok=4, attention_bias=True)),
    ("gpt-oss-120b-mxfp4", r"^gpt-oss-120b$", _c("gpt_oss", 2880, 2880, 36, 64, 8, 201088, False, 64, num_local_experts=128, num_experts_per_tok=4, attention_bias=True, quantization_config={"quant_method": "mxfp4"})),
    ("gpt-oss-120b", r"gpt-oss-120b", _c("gpt_oss", 2880, 2880, 36, 64, 8, 201088, False, 64, num_local_experts=128, num_experts_per_tok=4, attention_bias=True)),
    ("qwen3-0.6b", r"qwen3-0\.6b", _c("qwen3", 1024, 3072, 28, 16, 8, 151936, True, 128)),
    ("qwen3-1.7b", r"qwen3-1\.7b", _c("qwen3", 2048, 6144, 28, 16, 8, 151936, True, 128)),
    ("qwen3-4b", r"qwen3-4b", _c("qwen3", 2560, 9728, 36, 32, 8, 151936, True, 128)),
    ("qwen3-8b", r"qwen3-8b", _c("qwen3", 4096, 12288, 36, 32, 8, 151936, False, 128)),
    ("qwen3-14b", r"qwen3-14b", _c("qwen3", 5120, 17408, 40, 40, 8, 151936, False, 128)),
    ("qwen3-32b", r"qwen3-32b", _c("qwen3", 5120, 25600, 64, 64, 8, 151936, False, 128)),
    ("mistral-nemo-12b", r"mistral-nemo|nemo-(base|instruct)?-?2407|nemo-12b", _c("mistral", 5120, 14336, 40, 32, 8, 131072, False, 128)),
    ("mistral-small-22b", r"mistral-small(-instruct)?-(2409|22b)", _c("mistral", 6144, 16384, 56, 48, 8, 32768, False, 128)),
    ("mistral-7b", r"mistral-7b", _c("mistral", 4096, 14336, 32, 32, 8, 32768, False)),
    ("gemma-2-2b", r"gemma-?2-2b", _c("gemma2", 2304, 9216, 26, 8, 4, 256000, True, 256, final_logit_softcapping=30.0)),
    ("gemma-2-9b", r"gemma-?2-9b", _c("gemma2", 3584, 14336, 42, 16, 8, 256000, True, 256, final_logit_softcapping=30.0)),
    ("gemma-2-27b", r"gemma-?2-27b", _c("gemma2", 4608, 36864, 46, 32, 16, 256000, True, 128, final_logit_softcapping=30.0)),
    # Gemma 3 4B+ are multimodal; the catalog holds the language model (the ~0.4B vision tower is not counted).
    ("gemma-3-1b", r"gemma-?3-1b", _c("gemma3_text", 1152, 6912, 26, 4, 1, 262144, True, 256)),
    ("gemma-3-4b", r"gemma-?3-4b", _c("gemma3_text", 2560, 10240, 34, 8, 4, 262208, True, 256)),
    ("gemma-3-12b", r"gemma-?3-12b", _c("gemma3_text", 3840, 15360, 48, 16, 8, 262208, True, 256)),
    ("gemma-3-27b", r"gemma-?3-27b", _c("gemma3_text", 5376, 21504, 62, 32, 16, 262208, True, 128)),
    ("phi-3.5-mini", r"phi-?3(\.5)?-mini", _c("phi3", 3072, 8192, 32, 32, 32, 32064, False)),
    ("phi-4", r"phi-?4(?!-mini)", _c("phi3", 5120, 17920, 40, 40, 10, 100352, False)),
    ("tinyllama-1.1b", r"tinyllama", _c("llama", 2048, 5632, 22, 32, 4, 32000, False)),
]
# fmt: on


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace("meta-llama-", "llama-")


def from_catalog(name: str) -> tuple[str, dict[str, Any]] | None:
    key = _normalise(name.rsplit("/", 1)[-1])
    for label, pattern, cfg in CATALOG:
        if re.search(pattern, key):
            return label, cfg
    return None


@dataclass(frozen=True)
class Lookup:
    arch: Arch | None
    source: str  # "local config", "HF cache", "Hub", "catalog: llama-3.1-8b", or why unknown
    max_positions: int | None = None


UNKNOWN = "unknown architecture: give a local path or a config.json"


@functools.lru_cache(maxsize=64)
def lookup(base_model: str, online: bool = True) -> Lookup:
    """Local directory, then HF cache, then the Hub (config only), then the catalog."""
    if base_model == BUILTIN_MODEL:
        return Lookup(from_config(TINY_LLAMA_CONFIG, "tiny-llama"), "built-in demo model", 512)
    local = Path(base_model).expanduser()
    source, path = config_path(base_model)
    if path is not None and path.is_file():
        try:
            cfg = json.loads(path.read_text())
            return Lookup(from_config(cfg, base_model), source, cfg.get("max_position_embeddings"))
        except (OSError, ValueError, KeyError, TypeError):
            return Lookup(None, f"{path}: not a config.json this estimator understands")
    if online and not local.exists():
        path = hub_config(base_model)
        if path is not None:
            try:
                cfg = json.loads(path.read_text())
                return Lookup(from_config(cfg, base_model), "Hub", cfg.get("max_position_embeddings"))
            except (OSError, ValueError, KeyError, TypeError):
                pass
    hit = from_catalog(base_model)
    if hit:
        label, cfg = hit
        return Lookup(from_config(cfg, label), f"catalog: {label}", None)
    return Lookup(None, UNKNOWN)
