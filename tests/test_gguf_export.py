"""GGUF export end to end, on a real tokenizer (tests/real_tokenizer.py): a run of the tiny Llama on
Qwen2's tokenizer, exported by `model-garden export` in its own process with llama.cpp's converter
(unpacked from the pinned llama-cpp-python sdist) and its quantizer (llama-cpp-python's binding),
read back with gguf, loaded by llama.cpp itself, and compared with the merged model in transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import run_in_process, settings, write_dataset
from real_tokenizer import END_OF_TURN, MACHINE_CACHE

from mgtui.data.templates import saved_template

STEPS = 6  # an adapter to merge; its answers need not be good (a 152k-token head learns slowly)
PROMPTS = [
    [{"role": "user", "content": "What is 11 plus 5?"}],
    [{"role": "user", "content": "Name a colour."}],
]
TEXTS = ["Hello world, what's 11+5?", "  spaces\tand tabs\n\nnew lines", "naïve café 東京 🙂", "<|im_start|>user\nHi"]


@pytest.fixture(scope="module")
def qwen2_run(tmp_path_factory: pytest.TempPathFactory, real_tokenizer_model: Path) -> Path:
    base = tmp_path_factory.mktemp("gguf")
    data = write_dataset(base / "data.jsonl", "messages", n=64)
    res = settings(real_tokenizer_model, data, base / "qwen2-run", max_steps=STEPS, max_seq_length=96)
    code, run_dir = run_in_process(res)
    assert code == 0, (run_dir / "train.log").read_text()[-2000:]
    return run_dir


def export(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`model-garden export` as a user runs it, finding the converter where a first export on this
    machine left it (the user's cache), with no clone and no llama.cpp on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("LLAMA_CPP_DIR", "XDG_CACHE_HOME")}
    env |= {"XDG_CACHE_HOME": str(MACHINE_CACHE.parent), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "mgtui", "export", str(run_dir), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def fields(path: Path) -> tuple[dict[str, object], dict[str, tuple[list[int], str]]]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    keys = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.") or "_id" in k}
    keys |= {k: reader.fields[k].contents() for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre")}
    tensors = {t.name: ([int(d) for d in t.shape], t.tensor_type.name) for t in reader.tensors}
    return keys, tensors


def expected_tensors(config: dict[str, int]) -> dict[str, list[int]]:
    """llama.cpp's names and shapes (innermost first) for a Llama with tied embeddings."""
    h, ff, kv = config["hidden_size"], config["intermediate_size"], config["num_key_value_heads"]
    head = h // config["num_attention_heads"]
    layer = {
        "attn_norm": [h],
        "attn_q": [h, h],
        "attn_k": [h, kv * head],
        "attn_v": [h, kv * head],
        "attn_output": [h, h],
        "ffn_norm": [h],
        "ffn_gate": [h, ff],
        "ffn_up": [h, ff],
        "ffn_down": [ff, h],
    }
    shapes = {"token_embd.weight": [h, config["vocab_size"]], "output_norm.weight": [h]}
    for i in range(config["num_hidden_layers"]):
        shapes |= {f"blk.{i}.{name}.weight": shape for name, shape in layer.items()}
    return shapes  # no output.weight: the head is the embeddings


def greedy_transformers(model_dir: Path, messages: list[dict[str, str]], n: int) -> tuple[list[int], list[int]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=tok.eos_token_id)
    return ids[0].tolist(), out[0, ids.shape[1] :].tolist()


def greedy_llama_cpp(llm, prompt: list[int], n: int) -> list[int]:
    """Greedy tokens as llama.cpp's completion makes them, ending at the first end-of-generation
    token (llama_cpp/llama.py, create_completion: llama_vocab_is_eog), which is kept, as
    transformers keeps its eos."""
    import llama_cpp

    out: list[int] = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0):
        out.append(token)
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) == n:
            break
    return out


def test_an_f16_gguf_holds_the_runs_tokenizer_template_and_names_and_llama_cpp_answers_as_transformers(
    qwen2_run, real_tokenizer_model, tmp_path
):
    import json

    from llama_cpp import Llama
    from transformers import AutoTokenizer

    out = tmp_path / "exported"
    done = export(qwen2_run, "--merged", "--gguf", "f16", "--to", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    gguf_file = out / "qwen2-run-f16.gguf"
    assert done.stdout.split() == [str(out), str(gguf_file)]  # the merged model is the folder itself
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]  # nothing left beside it

    tok = AutoTokenizer.from_pretrained(str(out))
    keys, tensors = fields(gguf_file)
    assert keys["tokenizer.ggml.model"] == "gpt2" and keys["tokenizer.ggml.pre"] == "qwen2"  # Qwen2's BPE, recognised
    assert keys["tokenizer.chat_template"] == saved_template(qwen2_run)  # the template the run trained with
    assert keys["tokenizer.ggml.eos_token_id"] == tok.convert_tokens_to_ids(END_OF_TURN) == tok.eos_token_id
    assert keys["general.name"] == "qwen2-run" and keys["general.finetune"] == "qwen2-run"
    assert keys["general.basename"] == keys["general.base_model.0.name"] == real_tokenizer_model.name
    assert "general.version" not in keys  # none made up from a folder's name
    config = json.loads((out / "config.json").read_text())
    assert {name: shape for name, (shape, _) in tensors.items()} == expected_tensors(config)
    assert tensors["blk.0.attn_q.weight"][1] == "F16" and tensors["blk.0.attn_norm.weight"][1] == "F32"

    llm = Llama(model_path=str(gguf_file), n_ctx=512, n_threads=1, verbose=False)
    assert llm.token_eos() == tok.eos_token_id
    rendered = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in PROMPTS]
    for text in TEXTS + rendered:
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok(text, add_special_tokens=False).input_ids

    for messages in PROMPTS:
        prompt, expected = greedy_transformers(out, messages, 24)
        assert greedy_llama_cpp(llm, prompt, 24) == expected
        answer = llm.create_chat_completion(messages, max_tokens=24, temperature=0.0, top_k=1)["choices"][0]
        # llama.cpp renders the GGUF's template and stops at its end of turn, where transformers stops
        assert answer["message"]["content"] == tok.decode(expected, skip_special_tokens=True)
        assert answer["finish_reason"] == ("stop" if expected[-1] == tok.eos_token_id else "length")
    # Six steps don't teach a random model to end its answers, so its end of turn is made the likeliest
    # token: llama.cpp ends the answer there, at the token every trained turn ended with.
    trained = tok.apply_chat_template([*PROMPTS[0], {"role": "assistant", "content": "16"}], tokenize=False)
    assert trained.endswith(f"16{END_OF_TURN}\n")
    forced = llm.create_chat_completion(PROMPTS[0], max_tokens=24, temperature=0.0, logit_bias={tok.eos_token_id: 100})
    assert forced["choices"][0] | {"index": 0} == {
        "index": 0,
        "message": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert forced["usage"]["completion_tokens"] == 0  # the end of turn ends it and is not part of the answer


def test_a_quantized_gguf_alone_is_named_by_the_run_and_loads_in_llama_cpp(qwen2_run, real_tokenizer_model, tmp_path):
    from llama_cpp import Llama

    out = tmp_path / "q"
    done = export(qwen2_run, "--gguf", "q4_0", "--to", str(out))  # llama.cpp's quantizer, from llama-cpp-python
    assert done.returncode == 0, done.stderr[-3000:]
    gguf_file = out / "qwen2-run-q4_0.gguf"
    assert done.stdout.split() == [str(gguf_file)]
    assert [p.name for p in out.iterdir()] == [gguf_file.name]  # the scratch merge is gone
    keys, tensors = fields(gguf_file)
    assert keys["general.name"] == "qwen2-run" and "general.version" not in keys  # not the scratch folder's
    assert keys["general.file_type"] == 2  # LLAMA_FTYPE_MOSTLY_Q4_0
    assert tensors["blk.1.ffn_up.weight"][1] == "Q4_0" and tensors["output_norm.weight"][1] == "F32"
    llm = Llama(model_path=str(gguf_file), n_ctx=256, n_threads=1, verbose=False)
    answer = llm.create_chat_completion(PROMPTS[0], max_tokens=24, temperature=0.0, top_k=1)["choices"][0]
    assert answer["finish_reason"] in ("stop", "length") and llm.token_eos() == keys["tokenizer.ggml.eos_token_id"]
