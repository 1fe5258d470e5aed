"""A tiny Llama and its tokenizer, built locally (no download): the demo's model and the tests'.

The tokenizer is a byte-level BPE trained on the bundled demo data, with a ChatML template.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..data.scan import BUILTIN, iter_rows, plain_render
from ..data.templates import NAMED_TEMPLATES
from ..demo_model import TINY_LLAMA_CONFIG, builtin_model_dir

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def build_tiny_llama(target: Path | None = None, seed: int = 0) -> Path:
    """Build (once) and return a directory loadable with from_pretrained."""
    target = Path(target or builtin_model_dir())
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    cfg = dict(TINY_LLAMA_CONFIG)
    vocab = cfg["vocab_size"]
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
    fast.model_max_length = cfg["max_position_embeddings"]

    torch.manual_seed(seed)
    cfg.pop("model_type")
    config = LlamaConfig(
        **cfg,
        bos_token_id=int(fast.convert_tokens_to_ids("<|endoftext|>")),  # type: ignore[arg-type]
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    tmp = target.with_name(target.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    fast.save_pretrained(tmp)
    (tmp / "mgtui.json").write_text(json.dumps({"built_by": "mgtui", "what": "tiny random Llama for the demo"}))
    if target.exists():  # another process built it meanwhile
        return target
    os.replace(tmp, target)
    return target
