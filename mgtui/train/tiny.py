"""A tiny Llama and its tokenizer, built locally (no download): the demo's model and the tests'.

The tokenizer is a byte-level BPE trained on the bundled demo data, with a ChatML template.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..data.scan import BUILTIN, iter_rows, plain_render
from ..data.templates import NAMED_TEMPLATES
from ..demo_model import TINY_LLAMA_CONFIG, builtin_model_dir

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def build_tiny_llama(target: Path | None = None, seed: int = 0) -> Path:
    """Build (once) and return a directory loadable with from_pretrained."""
    target = Path(target or builtin_model_dir())
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    vocab = TINY_LLAMA_CONFIG["vocab_size"]
    texts = [t for where, row in iter_rows(BUILTIN["builtin:demo-chat"]) if (t := plain_render("messages", row, where))]
    texts += ["Below is an instruction that describes a task. ### Instruction: ### Input: ### Response:"] * 4
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<pad>", unk_token=None
    )
    fast.chat_template = NAMED_TEMPLATES["chatml"]
    return write_tiny_llama(fast, target, dict(TINY_LLAMA_CONFIG), seed, "tiny random Llama for the demo")


def write_tiny_llama(tokenizer: Any, target: Path, config: dict[str, Any], seed: int, what: str) -> Path:
    """A random Llama of `config` with `tokenizer`, written whole (a partial folder, then a rename)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(config)
    tokenizer.model_max_length = cfg["max_position_embeddings"]
    torch.manual_seed(seed)
    cfg.pop("model_type")
    bos = tokenizer.bos_token or "<|endoftext|>"
    llama = LlamaConfig(
        **cfg,
        bos_token_id=int(tokenizer.convert_tokens_to_ids(bos)),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(llama)
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "mgtui.json").write_text(json.dumps({"built_by": "mgtui", "what": what}))
    try:
        os.replace(tmp, target)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target
