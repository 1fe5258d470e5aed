"""Unsloth's fused cross-entropy loss in the estimate, as unsloth_zoo 2026.10.7 computes it
(fused_losses/cross_entropy_loss.py, "CE" below): its chunk count, the card sizes where it changes,
its timing against backward, and the note when the installed Unsloth is another version."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from import_probe import heavy_after

from mgtui.estimate import lookup, memory, plan
from mgtui.estimate.memory import Inputs, estimate, unsloth_loss_chunks
from mgtui.settings import resolve
from mgtui.units import GIB

LLAMA8B = lookup("unsloth/llama-3.1-8b").arch
V, H = LLAMA8B.vocab, LLAMA8B.hidden


def source_rule(tokens: int, vocab: int, target_gb: float, fixed_gb: float) -> int:
    """CE:227-269 (_get_chunk_multiplier and get_chunk_size) transcribed, in the library's own GiB floats."""
    if 0.0 < fixed_gb < target_gb:
        target_gb = target_gb - fixed_gb
    multiplier = (vocab * 16.0 / 1024 / 1024 / 1024) / target_gb
    multiplier = multiplier / 4
    exact = tokens * multiplier * 4
    if exact <= 1.0 + 1e-9:
        return 1
    return min(math.ceil(exact / 4 - 1e-9) * 4, tokens)


@pytest.mark.parametrize("tokens", [512, 1024, 2048, 4096, 8192, 16384, 262144])
@pytest.mark.parametrize("target_gb", [0.05, 0.3, 1.0, 2.5, 4.0])
def test_the_chunk_count_is_the_sources(tokens, target_gb):
    fixed = 2 * tokens * H  # grad_inputs, 16-bit (CE:342, 364-365)
    got = unsloth_loss_chunks(tokens, V, target_gb * GIB, fixed)
    assert got == source_rule(tokens, V, target_gb, fixed / GIB)
    assert got == 1 or got % 4 == 0 or got == tokens  # one chunk, or a multiple of 4 (CE:266-269)


def test_two_by_2048_tokens_is_four_chunks_of_1024_on_every_card_from_12_to_141_gb():
    res = resolve([{"base_model": "unsloth/llama-3.1-8b-bnb-4bit"}])
    found = lookup(res["base_model"])
    for gpu in range(12, 142):
        est = plan(res, found, float(gpu)).estimate
        assert (est.loss_chunks, est.loss_chunk_tokens) == (4, 1024), gpu
    one = estimate(LLAMA8B, Inputs(batch_size=1), 80.0)
    assert (one.loss_chunks, one.loss_chunk_tokens) == (1, 2048)  # 7.83 GiB sized / 4 GiB target <= 1


GUIDE = [
    {"base_model": "unsloth/llama-3.1-8b-bnb-4bit"},  # the guide's default
    {"base_model": "unsloth/llama-3.1-8b-bnb-4bit", "batch_size": 1},
    {"base_model": "unsloth/llama-3.1-8b-bnb-4bit", "max_seq_length": 4096},
    {"base_model": "unsloth/llama-3.1-8b", "load_in_8bit": True, "lora_r": 32, "optim": "adamw_torch"},
    {"base_model": "unsloth/llama-3.1-8b", "quality_mode": True, "lora_r": 64},
]


@pytest.mark.parametrize("values", GUIDE, ids=["default", "batch-1", "seq-4096", "8bit-r32", "quality-r64"])
def test_card_size_moves_the_peak_only_where_the_library_changes_its_chunks(values):
    """Walking cards from 6 to 141 GB: the target is half of what is free once, capped at 4 GiB
    (CE:195, CE:221-224, tiled_mlp.py:93-94), the chunk count follows it, and the peak is the same
    on every card where the chunk count is, never lower on a bigger card."""
    res = resolve([values])
    found = lookup(res["base_model"])
    rows = [(gpu, plan(res, found, float(gpu)).estimate) for gpu in range(6, 142)]
    inp = Inputs.from_settings(res.values, res.precision)
    tokens = inp.batch_size * inp.seq_len
    used = set()
    for gpu, est in rows:
        assert est.loss_target_gib <= 4.0
        if 0 < est.loss_target_gib < 4.0 - 1e-9:  # half of (card - what the first loss call finds in use)
            used.add(round(gpu - 2 * est.loss_target_gib, 6))
        if est.loss_target_gib > 0:
            assert est.loss_chunks == source_rule(tokens, V, est.loss_target_gib, 2 * tokens * H / GIB), gpu
        else:  # nothing free: the library raises (CE:235-236), the estimate says over
            assert est.state == "over" and est.loss_chunks == tokens
        assert est.loss_chunk_tokens == -(-tokens // est.loss_chunks)
    assert len(used) <= 1  # one amount in use at the first loss call, whatever the card
    for (_, a), (gpu, b) in zip(rows, rows[1:]):
        assert b.peak_gib >= a.peak_gib - 1e-9, gpu
        if b.loss_chunks == a.loss_chunks:
            assert b.peak_gib == pytest.approx(a.peak_gib, abs=1e-9), gpu
    assert rows[-1][1].loss_chunks in (1, 4)  # a big card: the 4 GiB target


def test_the_peak_is_the_larger_of_the_loss_and_backward_not_their_sum():
    """The gradient is taken inside forward, chunk by chunk (CE:420-487); only grad_inputs survives
    (CE:592), so the chunk's logits are gone when backward recomputes the layers."""
    default = estimate(LLAMA8B, Inputs(), 80.0)  # 4 chunks of 1024: backward's recompute is fuller
    assert default.peak_at == "backward" and default.breakdown["logits_and_loss"] == 0
    one = estimate(LLAMA8B, Inputs(batch_size=1), 80.0)  # 1 chunk of 2048: the loss is fuller
    chunk = 2048 * V * 4 / GIB
    assert one.peak_at == "loss" and 0 < one.breakdown["logits_and_loss"] < chunk
    # the loss term is what the loss moment adds above backward's working set
    backward = one.breakdown["gradients"] + one.breakdown["activations"]
    assert one.breakdown["logits_and_loss"] + backward < chunk + backward


def test_gradients_are_counted_where_they_live():
    """The Trainer sets them to None after each step (transformers/trainer.py:1879): with one
    micro-batch a step, backward's first layer holds every checkpointed input and one layer's
    gradients; with accumulation every gradient stays through the later micro-batches."""
    inp = Inputs(precision=16, lora_r=64, checkpointing="true", optim="adamw_torch")
    one, four = estimate(LLAMA8B, inp, 80.0), estimate(LLAMA8B, replace(inp, grad_accum=4), 80.0)
    every = one.trainable_params * 4 / GIB
    assert one.breakdown["gradients"] == pytest.approx(every / LLAMA8B.layers)
    assert four.breakdown["gradients"] == pytest.approx(every)
    assert four.peak_gib > one.peak_gib


def test_a_trainable_lm_head_makes_more_chunks():
    """Full fine-tuning trains lm_head: its gradient, twice (CE:366-367), is fixed memory the target loses."""
    inp = Inputs(precision=16, full=True, optim="adamw_torch", batch_size=4, seq_len=4096)
    lora = estimate(LLAMA8B, replace(inp, full=False), None)
    full = estimate(LLAMA8B, inp, None)
    fixed = 2 * 16384 * H + 2 * 2 * V * H
    assert full.loss_chunks == source_rule(16384, V, 4.0, fixed / GIB) > lora.loss_chunks


def test_another_unsloth_version_is_named_in_the_notes(monkeypatch):
    monkeypatch.setattr(memory, "installed_unsloth", lambda: {"unsloth": "2026.11.2", "unsloth_zoo": "2026.11.1"})
    est = estimate(LLAMA8B, Inputs(), 24.0)
    assert any("2026.10.7" in n and "unsloth_zoo 2026.11.1" in n for n in est.notes)
    assert not any("2026.10.7" in n for n in estimate(LLAMA8B, Inputs(backend="transformers"), 24.0).notes)
    monkeypatch.setattr(memory, "installed_unsloth", lambda: {"unsloth": "2026.10.7", "unsloth_zoo": "2026.10.7"})
    assert not any("2026.10.7" in n for n in estimate(LLAMA8B, Inputs(), 24.0).notes)


def test_reading_the_version_imports_nothing_heavy():
    code = (
        "from mgtui.estimate import lookup\n"
        "from mgtui.estimate.memory import Inputs, estimate, installed_unsloth\n"
        "estimate(lookup('unsloth/llama-3.1-8b').arch, Inputs(), 24.0)\n"
        "assert isinstance(installed_unsloth(), dict)"
    )
    assert heavy_after(code) == []
