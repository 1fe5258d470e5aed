"""Model architectures for the estimator: read from a config.json (local, HF cache, Hub) or
from a built-in catalog of popular models. Pure: json and pathlib only (the Hub fetch imports
huggingface_hub lazily, and only when online)."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..demo_model import BUILTIN_MODEL, TINY_LLAMA_CONFIG
from ..hub_cache import hf_cache_file, hub_config

# Model types whose layers are Llama-shaped (attention + gated MLP) and that we count exactly.
_FOUR_NORMS = {"gemma2", "gemma3_text"}  # pre/post norms around attention and MLP
_QK_NORM = {"qwen3", "gemma3_text"}
_QKV_BIAS = {"qwen2"}


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

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """Per-layer linear modules: name -> (d_in, d_out), named as PEFT targets them."""
        h, i = self.hidden, self.intermediate
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
        return self.layers * self.layer_linear_params + self.embed_params + self.small_params


def from_config(cfg: dict[str, Any], name: str = "") -> Arch:
    """An Arch from a Hugging Face config dict. Raises KeyError/ValueError when it isn't one we know."""
    if "text_config" in cfg and "hidden_size" not in cfg:  # multimodal wrapper: the language model
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", cfg.get("model_type"))}
    h, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    model_type = str(cfg.get("model_type", "llama"))
    if model_type == "gemma3":
        model_type = "gemma3_text"
    return Arch(
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
    )


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
    candidates: list[tuple[str, Path | None]] = []
    local = Path(base_model).expanduser()
    if local.is_file() and local.name.endswith(".json"):
        candidates.append(("config file", local))
    elif local.is_dir():
        candidates.append(("local config", local / "config.json"))
    else:
        candidates.append(("HF cache", hf_cache_file(base_model, "config.json")))
    for source, path in candidates:
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
