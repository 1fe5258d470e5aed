"""The preference methods' and GRPO's memory terms, as TRL 1.14 computes them (the sources are cited in
mgtui/estimate/memory.py): full float32 logits for chosen and rejected, the reference forward without
gradients, KTO's KL batch, ORPO and SimPO without a reference; GRPO's generation KV cache, its
completion logits, and the advisor's GRPO steps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mgtui.estimate import lookup, plan
from mgtui.estimate.advisor import COMPLETION_STEP, GENERATIONS_STEP, advise, apply_changes
from mgtui.estimate.memory import (
    DEFAULT,
    Coefficients,
    Inputs,
    estimate,
    unsloth_grpo_chunk,
    unsloth_grpo_moments,
    unsloth_kv_positions,
)
from mgtui.settings import resolve
from mgtui.units import GIB

LLAMA8B = lookup("unsloth/llama-3.1-8b").arch
V, H, L = LLAMA8B.vocab, LLAMA8B.hidden, LLAMA8B.layers
BYTES = {
    "dpo": DEFAULT.dpo_bytes_per_logit,
    "kto": DEFAULT.kto_bytes_per_logit,
    "orpo": DEFAULT.orpo_bytes_per_logit,
    "simpo": DEFAULT.simpo_bytes_per_logit,
}
PAIRED = ("dpo", "orpo", "simpo")


def at_the_loss(est) -> float:
    """What the step holds at its fullest moment beside weights and optimizer states."""
    return est.breakdown["gradients"] + est.breakdown["activations"] + est.breakdown["logits_and_loss"]


@pytest.mark.parametrize("method", ["dpo", "orpo", "simpo", "kto"])
def test_the_loss_holds_every_logit_of_the_forward_with_gradients(method):
    """Unsloth's offload keeps two layer inputs on the GPU, the final norm two more (8 bytes a token and
    hidden unit); on top, the method's bytes per logit over chosen + rejected (KTO: its replies only)."""
    inp = Inputs(batch_size=2, seq_len=2048, method=method)
    est = estimate(LLAMA8B, inp, 80.0)
    tokens = (2 if method in PAIRED else 1) * 2 * 2048
    assert est.peak_at == "loss" and est.loss_chunks == 0  # not Unsloth's fused loss: TRL's own
    assert at_the_loss(est) == pytest.approx((8 * tokens * H + BYTES[method] * tokens * V) / GIB)
    assert est.unreliable is None and est.state == "fits"


def test_dpo_exceeds_sft_by_the_reference_and_the_doubled_full_logits():
    sft = Inputs(batch_size=2, seq_len=2048, backend="transformers", checkpointing="true")
    dpo = replace(sft, method="dpo")
    a, b = estimate(LLAMA8B, sft, 80.0), estimate(LLAMA8B, dpo, 80.0)
    logits = 2 * 2 * 2048 * V  # chosen and rejected, every position
    # policy and reference float32 logits (8 bytes), the metrics' copy (2), and twice the activations
    assert b.breakdown["activations"] == pytest.approx(2 * a.breakdown["activations"], rel=0.05)
    extra = b.peak_gib - a.peak_gib
    assert extra > (10 * logits - 256 * V * 16) / GIB  # SFT's loss is TRL's 256-token chunks
    assert extra < (10 * logits + 2 * a.breakdown["activations"] * GIB + 2 * V * H) * 1.1 / GIB


def test_the_reference_forward_is_counted_for_dpo_and_kto_only():
    """With the logits' bytes set to nothing, what remains at the loss is DPO's and KTO's reference
    forward: the policy's float32 logits kept while the reference's are made (6 bytes converting)."""
    none = Coefficients(dpo_bytes_per_logit=0, kto_bytes_per_logit=0, orpo_bytes_per_logit=0, simpo_bytes_per_logit=0)
    for method in ("dpo", "kto", "orpo", "simpo"):
        inp = Inputs(batch_size=2, seq_len=2048, method=method)
        est = estimate(LLAMA8B, inp, 80.0, none)
        tokens = (2 if method in PAIRED else 1) * 2 * 2048
        if method in ("dpo", "kto"):
            assert est.peak_at == "loss"
            assert at_the_loss(est) == pytest.approx((8 * tokens * H + (4 + 6) * tokens * V) / GIB)
        else:  # nothing at the loss beyond what backward holds anyway
            assert est.peak_at == "backward" and est.breakdown["logits_and_loss"] == 0
    notes = {m: " ".join(estimate(LLAMA8B, Inputs(method=m), 80.0).notes) for m in ("dpo", "kto", "orpo", "simpo")}
    assert "reference forward" in notes["dpo"] and "KL batch" in notes["kto"]
    assert "no reference model" in notes["orpo"] and "no reference model" in notes["simpo"]


def test_kto_counts_its_replies_with_gradients_and_its_kl_batch_without():
    kto = Inputs(batch_size=2, seq_len=2048, method="kto")
    assert kto.sequences == 2  # the KL sequences keep no activations
    sft = estimate(LLAMA8B, replace(kto, method="sft"), 80.0)
    assert estimate(LLAMA8B, kto, 80.0).breakdown["activations"] == pytest.approx(sft.breakdown["activations"])


def test_full_finetuning_counts_the_reference_model_in_float32():
    """No adapter to disable: TRL loads the checkpoint again, in float32 (trl/trainer/utils.py create_model_from_path),
    for DPO and KTO, and for GRPO only with kl_beta > 0. Weights only, no gradients or optimizer states: about two
    more sets of 16-bit base weights; its forward holds autocast's 16-bit casts of its Linears and head."""
    copy = 4 * LLAMA8B.params / GIB
    sft = estimate(LLAMA8B, Inputs(precision=16, full=True), 141.0)
    for method in ("dpo", "kto"):
        full = estimate(LLAMA8B, Inputs(precision=16, full=True, method=method), 141.0)
        assert full.breakdown["base_weights"] - sft.breakdown["base_weights"] == pytest.approx(copy)
        assert copy == pytest.approx(2 * sft.breakdown["base_weights"], rel=0.01)
        for k in ("gradients", "optimizer_states"):  # nothing trains in the reference
            assert full.breakdown[k] <= sft.breakdown[k] + 1e-9
        assert full.unreliable is None and full.state in ("fits", "tight") and "reference" in " ".join(full.notes)
        lora = estimate(LLAMA8B, Inputs(precision=16, method=method), 141.0)
        assert lora.breakdown["base_weights"] == pytest.approx(sft.breakdown["base_weights"])
    assert estimate(LLAMA8B, Inputs(precision=16, full=True, method="dpo"), 80.0).state == "over"
    orpo = estimate(LLAMA8B, Inputs(precision=16, full=True, method="orpo"), 141.0)
    assert orpo.breakdown["base_weights"] == pytest.approx(sft.breakdown["base_weights"])  # no reference
    for backend in ("unsloth", "transformers"):
        g = dict(precision=16, full=True, method="grpo", grad_accum=4, backend=backend)
        none, kl = estimate(LLAMA8B, Inputs(**g), 141.0), estimate(LLAMA8B, Inputs(**g, kl_beta=0.04), 141.0)
        assert kl.breakdown["base_weights"] - none.breakdown["base_weights"] == pytest.approx(copy)
        assert kl.unreliable is None and kl.fits is not None and "float32 reference model" in " ".join(kl.notes)


def test_grpo_on_unsloth_gives_a_verdict():
    """Unsloth's GRPO (its hidden-state chunked loss and its own decoding buffers) is counted: a verdict on both
    backends, over on a card too small."""
    for backend in ("unsloth", "transformers"):
        est = estimate(LLAMA8B, Inputs(method="grpo", grad_accum=4, backend=backend), 80.0)
        assert est.unreliable is None and est.state == "fits"
        assert estimate(LLAMA8B, Inputs(method="grpo", grad_accum=4, backend=backend), 8.0).state == "over"
    notes = " ".join(estimate(LLAMA8B, Inputs(method="grpo", grad_accum=4), 80.0).notes)
    assert "GRPO on Unsloth" in notes and "chunks of 64 completion tokens" in notes


def test_unsloth_grpo_chunks_are_the_completion_over_max_4_or_the_sequence_over_4096():
    """unsloth_zoo: rows x max(4, seq_len // 4096) chunks over rows x completion positions."""
    for prompt, completion, chunk in [(1536, 256, 64), (4096, 4096, 1024), (256, 16384, 4096), (4096, 16384, 3277)]:
        inp = Inputs(method="grpo", seq_len=prompt + completion, max_completion_length=completion)
        assert inp.prompt_len == prompt and unsloth_grpo_chunk(inp) == chunk


def test_unsloth_grpo_loss_keeps_every_completion_logit_and_one_chunks_working_set():
    """One row (no packed-versus-row check): the completion's hidden states copied (16-bit), 4 bytes a completion
    logit kept for backward, and one chunk's 12 bytes a logit; it grows with max_completion_length, and with
    the chunk where the multiplier stays 4."""

    def head(completion: int, prompt: int = 1024) -> float:
        inp = Inputs(method="grpo", batch_size=1, seq_len=prompt + completion, max_completion_length=completion)
        return unsloth_grpo_moments(LLAMA8B, inp, DEFAULT, (0.0, 0), 1, [])[1]

    for completion in (256, 1024, 2048):
        chunk = -(-completion // 4)
        assert head(completion) == 2 * completion * H + 4 * completion * V + 12 * chunk * V
    assert head(256) < head(1024) < head(2048)
    # past 16384 tokens of prompt + completion the multiplier grows: a smaller chunk for the same completion
    assert head(8192, prompt=12288) - head(8192, prompt=4096) == pytest.approx(12 * (1639 - 2048) * V)
    # two rows or more: the packed forward is checked row by row, one row's logits in a single chunk (10 bytes)
    two = Inputs(method="grpo", batch_size=2, seq_len=2048, max_completion_length=256)
    gen, loss_head, _ = unsloth_grpo_moments(LLAMA8B, two, DEFAULT, (0.0, 0), 2, [])
    assert loss_head >= 2048 * V * 10


def test_unsloth_decoding_buffers_grow_512_tokens_at_a_time_and_hold_the_prefill_once_more():
    """The prefill's K and V stay while every layer copies them into its buffer of P + 513 positions; the
    buffers then grow by 512: never less than transformers' DynamicCache."""
    kv_token = L * 2 * LLAMA8B.kv_dim * 2
    assert unsloth_kv_positions(1536, 256, 512) == (2 * 1536 + 513, 1536 + 513)
    assert unsloth_kv_positions(128, 1024, 512) == (128 + 1 + 1024, 128 + 1 + 1024)
    assert unsloth_kv_positions(128, 1025, 512)[0] == 128 + 1 + 1536
    for prompt, completion in [(1536, 256), (128, 1024), (256, 3000)]:
        kw = dict(grad_accum=4, max_prompt_length=prompt, max_completion_length=completion, seq_len=8192)
        u = estimate(LLAMA8B, grpo(**kw, backend="unsloth", checkpointing="unsloth"), 80.0)
        t = estimate(LLAMA8B, grpo(**kw), 80.0)
        positions, scratch = unsloth_kv_positions(prompt, completion, 512)
        kv = 8 * (positions * kv_token + L * 2 * LLAMA8B.heads * scratch)
        assert f"KV cache {kv / GIB:.2f} GB" in " ".join(u.notes)
        assert f"KV cache {8 * (prompt + completion) * kv_token / GIB:.2f} GB" in " ".join(t.notes)
        assert kv >= 8 * (prompt + completion) * kv_token


def grpo(**kw) -> Inputs:
    base = dict(batch_size=2, grad_accum=4, seq_len=2048, method="grpo", backend="transformers", checkpointing="true")
    return Inputs(**(base | kw))


def test_grpo_generation_holds_the_kv_cache_of_every_completion_of_the_step():
    """TRL generates batch_size x accumulation completions at once, each prompt + completion tokens: the
    KV cache grows linearly with the completion length and with the completions per step."""
    kv_token = L * 2 * LLAMA8B.kv_dim * 2  # k and v, 16-bit, every layer
    # the prompt held at 1536 tokens (else it is what max_seq_length leaves: train/grpo.py skips longer ones)
    a = estimate(LLAMA8B, grpo(max_completion_length=256, max_prompt_length=1536), 80.0)
    b = estimate(LLAMA8B, grpo(max_completion_length=512, max_prompt_length=1536), 80.0)
    assert a.peak_at == b.peak_at == "generation" and a.breakdown["gradients"] == 0
    assert b.breakdown["activations"] - a.breakdown["activations"] == pytest.approx(8 * 256 * kv_token / GIB)
    ests = [estimate(LLAMA8B, grpo(grad_accum=n), 80.0) for n in (4, 8, 16)]
    assert all(e.peak_at == "generation" for e in ests)
    acts = [e.breakdown["activations"] for e in ests]
    assert acts[2] - acts[1] == pytest.approx(2 * (acts[1] - acts[0]))  # linear in the completions
    # num_generations only groups them: the same completions per step, the same memory
    default, same = estimate(LLAMA8B, grpo(), 80.0), estimate(LLAMA8B, grpo(num_generations=4), 80.0)
    assert same.peak_gib == default.peak_gib
    # prompt and completion together are at most max_seq_length (2048)
    assert f"KV cache {8 * 2048 * kv_token / GIB:.2f} GB" in " ".join(default.notes)


def test_grpo_peak_is_the_larger_of_generation_and_the_training_step():
    gen = estimate(LLAMA8B, grpo(), 80.0)
    train = estimate(LLAMA8B, grpo(grad_accum=1, batch_size=8, max_prompt_length=256, max_completion_length=4096), 80.0)
    assert gen.peak_at == "generation" and "the training step needs" in " ".join(gen.notes)
    assert train.peak_at in ("loss", "backward") and "generation needs" in " ".join(train.notes)
    for est in (gen, train):
        other = float(next(n for n in est.notes if "needs" in n).split("needs ")[1].split(" GB")[0])
        assert other <= est.peak_gib - DEFAULT.cuda_context_gib + 0.01
    # the training step's logits: the completion tokens only, 8 bytes each at the loss
    assert train.breakdown["logits_and_loss"] > 0


def test_grpo_kl_beta_adds_the_reference_scoring():
    zero, kl = estimate(LLAMA8B, grpo(), 80.0), estimate(LLAMA8B, grpo(kl_beta=0.04), 80.0)
    assert "reference" in " ".join(kl.notes) and "reference" not in " ".join(zero.notes)
    assert kl.peak_gib >= zero.peak_gib
    assert kl.unreliable is None  # the adapter disabled, no second model


def test_old_callers_without_grpo_settings_still_build_inputs():
    res = resolve([{"base_model": "unsloth/llama-3.1-8b-bnb-4bit"}])
    values = {k: v for k, v in res.values.items() if k not in ("num_generations", "max_completion_length", "kl_beta")}
    inp = Inputs.from_settings(values, 4)
    assert (inp.num_generations, inp.max_completion_length, inp.kl_beta) == (8, 256, 0.0)


GRPO_RUN = {
    "base_model": "unsloth/llama-3.1-8b-bnb-4bit",
    "method": "grpo",
    "reward_funcs": "length_penalty",
    "batch_size": 8,
    "gradient_accumulation_steps": 2,
    "max_completion_length": 1024,
}


def test_the_advisor_offers_fewer_generations_and_shorter_completions_and_both_lower_the_peak():
    res = resolve([GRPO_RUN])
    arch = lookup(res["base_model"]).arch
    now = estimate(arch, Inputs.from_settings(res.values, res.precision, "transformers"), 10.0)
    steps = {s.number: s for s in advise(res, arch, 10.0, "transformers")}
    fewer, shorter = steps[GENERATIONS_STEP], steps[COMPLETION_STEP]
    assert fewer.changes == {"num_generations": 4, "batch_size": 4}  # the same 2 prompts per step
    assert shorter.changes == {"max_completion_length": 512, "max_seq_length": 1536}  # the same prompts
    for step in (fewer, shorter):
        assert step.estimate.peak_gib < now.peak_gib
        changed = apply_changes(res, step.changes)  # real setting names, accepted as typed in the form
        assert (
            changed.values["batch_size"]
            * changed.values["gradient_accumulation_steps"]
            % changed.values["num_generations"]
            == 0
        )
    combined = steps[0]
    assert combined.estimate.peak_gib < min(fewer.estimate.peak_gib, shorter.estimate.peak_gib)
    apply_changes(res, combined.changes)


def test_the_advisors_grpo_steps_lower_the_peak_on_unsloth_too():
    res = resolve([GRPO_RUN])
    arch = lookup(res["base_model"]).arch
    now = estimate(arch, Inputs.from_settings(res.values, res.precision, "unsloth"), 10.0)
    assert now.state == "over"
    steps = {s.number: s for s in advise(res, arch, 10.0, "unsloth")}
    for number in (GENERATIONS_STEP, COMPLETION_STEP):
        assert steps[number].estimate.peak_gib < now.peak_gib and steps[number].fits is not None
    assert steps[0].estimate.peak_gib < min(steps[n].estimate.peak_gib for n in (GENERATIONS_STEP, COMPLETION_STEP))


def test_fewer_generations_halves_the_accumulation_for_an_odd_batch_and_stops_at_two():
    odd = resolve([GRPO_RUN | {"batch_size": 1, "gradient_accumulation_steps": 8}])
    arch = lookup(odd["base_model"]).arch
    step = next(s for s in advise(odd, arch, 10.0, "transformers") if s.number == GENERATIONS_STEP)
    assert step.changes == {"num_generations": 4, "gradient_accumulation_steps": 4}
    two = resolve([GRPO_RUN | {"num_generations": 2}])
    assert all(s.number != GENERATIONS_STEP for s in advise(two, arch, 10.0, "transformers"))
    sft = resolve([{"base_model": "unsloth/llama-3.1-8b-bnb-4bit", "batch_size": 8}])
    assert all(s.number not in (GENERATIONS_STEP, COMPLETION_STEP) for s in advise(sft, arch, 5.0))


def test_a_preference_run_over_the_card_gets_the_guides_steps():
    res = resolve([{"base_model": "unsloth/llama-3.1-8b-bnb-4bit", "method": "dpo", "batch_size": 4}])
    p = plan(res, lookup(res["base_model"]), 24.0)
    assert p.estimate.state == "over" and p.steps
    assert min(s.estimate.peak_gib for s in p.steps) < p.estimate.peak_gib
    assert p.max_batch_size is not None
