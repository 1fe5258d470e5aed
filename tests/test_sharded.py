"""Sharded training (FSDP2 through the Trainer's own support) on the CPU over gloo with the tiny
model: two processes each hold half the model; the adapter comes out whole and loads with PEFT;
checkpoints are sharded, a stop is agreed by both ranks and a resume continues from the sharded
checkpoint, setting a torn one aside."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import events, losses, wait_for, write_dataset
from test_distributed import mg, train_args

from mgtui.runs import rundir
from mgtui.runs.launch import request_stop


def adapter_shapes(run_dir: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(run_dir / "adapter_model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def test_two_sharded_processes_train_to_a_whole_adapter_that_peft_loads(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=64)
    out = tmp_path / "sharded"
    done = mg(*train_args(tiny_model, data, out, 8), "--nproc-per-node", "2", "--shard", "full", "--save-steps", "4")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    evs = events(out)
    start = next(e for e in evs if e["type"] == "start")
    assert start["world_size"] == 2 and start["backend"] == "transformers"
    loss = losses(out)
    assert len(loss) == 8 and sum(loss[-3:]) / 3 < sum(loss[:3]) / 3  # it learns
    ckpt = out / "checkpoint-4"
    assert (ckpt / rundir.FSDP_MODEL / ".metadata").is_file()  # sharded: each rank wrote its part
    assert not (ckpt / "adapter_model.safetensors").exists() and rundir.checkpoint_problem(ckpt) is None

    single = tmp_path / "single"
    assert mg(*train_args(tiny_model, data, single, 2)).returncode == 0
    assert adapter_shapes(out) == adapter_shapes(single)  # whole, not one rank's half

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))
    trained = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert trained and all(torch.count_nonzero(p) > 0 for p in trained)


def test_a_sharded_run_stops_together_and_resumes_past_a_torn_checkpoint(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=240)
    out = tmp_path / "run"

    def args(steps: int) -> list[str]:
        flags = [*train_args(tiny_model, data, out, steps), "--nproc-per-node", "2", "--shard", "full"]
        flags[flags.index("--save-steps") + 1] = "2"
        return flags

    assert mg(*args(400), "--detach").returncode == 0
    wait_for(lambda: any(e["type"] == "log" and e["step"] >= 5 for e in events(out)), timeout=240)
    assert request_stop(out)  # SIGINT to rank 0; both ranks agree on the step
    wait_for(lambda: events(out)[-1]["type"] == "stopped", timeout=180)
    stopped_at = events(out)[-1]["steps"]
    assert (out / f"checkpoint-{stopped_at}" / rundir.FSDP_MODEL).is_dir()
    assert (out / "adapter_model.safetensors").is_file()
    wait_for(lambda: rundir.launcher_alive(out) is None, timeout=120)

    # the newest checkpoint torn (an engine killed while the ranks wrote it): set aside, kept
    newest = out / f"checkpoint-{stopped_at}"
    (newest / rundir.FSDP_OPTIMIZER / ".metadata").unlink()
    whole = rundir.latest_checkpoint(out)
    assert whole is not None and whole != newest
    before = len(events(out))
    resumed = mg(*args(stopped_at + 2), "--resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    new = events(out)[before:]
    assert any(e["type"] == "warning" and f"skipped {newest.name}" in e["message"] for e in new)
    assert list(out.glob(f"torn-{newest.name}-*"))
    logs = [e["step"] for e in new if e["type"] == "log"]
    assert logs[0] == int(whole.name.split("-")[1]) + 1 and logs[-1] == stopped_at + 2


def test_sharding_is_said_where_it_changes_what_runs():
    from mgtui.backend_choice import SHARDED, choose_backend
    from mgtui.settings import SettingError, resolve
    from mgtui.train.backends import plan_for, sft_kwargs

    assert choose_backend(True, 2, "unsloth/llama-3.1-8b", shard=True) == ("transformers", SHARDED)
    res = resolve([{"shard": "full", "use_gradient_checkpointing": "true"}])
    one = plan_for(res, cuda=False, world_size=1)
    assert not one.sharded and any("nothing to shard" in s for s in one.substitutions)
    two = plan_for(res, cuda=False, world_size=2)
    kw = sft_kwargs(res, two, "out", has_eval=False)
    assert kw["fsdp"] is True and kw["fsdp_config"]["version"] == 2
    assert kw["fsdp_config"]["state_dict_type"] == "SHARDED_STATE_DICT" and kw["gradient_checkpointing"] is True
    with pytest.raises(SettingError, match="--eval-prompts with --shard full"):
        resolve([{"shard": "full", "eval_prompts": "p.txt"}])


def sharded_plan(values: dict, gpus: int, gib: float, shard: str):
    from mgtui.estimate import lookup, plan
    from mgtui.settings import resolve

    res = resolve([{**values, "nproc_per_node": gpus, "shard": shard}])
    found = lookup(res["base_model"], online=False)
    assert found.arch is not None
    return plan(res, found, gib, f"{gpus} × {gib:g} GB", "transformers", gpu_count=gpus)


def test_a_70b_qlora_fits_two_48gb_cards_only_sharded_and_the_advice_says_so_first():
    from mgtui.tui.widgets.vram import render_plan

    model = {"base_model": "unsloth/Llama-3.3-70B-Instruct-bnb-4bit"}
    ddp = sharded_plan(model, 2, 48.0, "off")
    assert ddp.estimate is not None and ddp.estimate.state == "over"
    first = ddp.steps[0]
    assert first.changes == {"shard": "full"} and first.fits and "Shard the model over 2 GPUs" in first.title
    sharded = sharded_plan(model, 2, 48.0, "full")
    e = sharded.estimate
    assert e is not None and e.state == "fits" and e.peak_gib == pytest.approx(first.estimate.peak_gib)
    assert not sharded.steps and any("sharded over 2 GPUs" in n for n in e.notes)
    assert e.breakdown["base_weights"] < ddp.estimate.breakdown["base_weights"] * 0.6  # half, plus what is gathered
    assert "fits sharded over 2" in render_plan(sharded, 40).plain


def test_a_32b_in_16_bit_over_four_80gb_cards_holds_a_quarter_of_the_weights_and_two_layers_whole():
    from mgtui.estimate import lookup

    model = {"base_model": "Qwen/Qwen2.5-32B", "load_in_16bit": True, "optim": "adamw_torch"}
    ddp = sharded_plan(model, 4, 80.0, "off").estimate
    sharded = sharded_plan(model, 4, 80.0, "full").estimate
    assert ddp is not None and sharded is not None and sharded.state == "fits"
    arch = lookup("Qwen/Qwen2.5-32B", online=False).arch
    assert arch is not None
    layer = 2 * arch.layer_linear_params / 2**30  # one decoder layer's 16-bit Linears
    gathered = sharded.breakdown["base_weights"] - ddp.breakdown["base_weights"] / 4
    assert 2 * layer <= gathered <= 2 * layer + 2 * 2 * arch.embed_params / 2**30
    for term in ("gradients", "optimizer_states"):
        assert sharded.breakdown[term] < ddp.breakdown[term] / 2
    assert sharded.peak_gib < ddp.peak_gib / 2


async def test_the_form_offers_sharding_first_and_one_key_applies_it():
    from app_helpers import NO_GPU, settle, wait_until

    from mgtui.tui.app import MgApp

    chosen = {"base_model": "Qwen/Qwen2.5-32B", "load_in_16bit": True, "nproc_per_node": 2}
    app = MgApp(chosen, ("48 GB card (planning)", 48.0), NO_GPU, offer_runs=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        form = app.screen
        await wait_until(pilot, lambda: form.plan is not None and bool(form.plan.steps))
        assert form.plan.estimate.state == "over" and form.plan.steps[0].changes == {"shard": "full"}
        await pilot.press("alt+1")
        await wait_until(pilot, lambda: form.model.value("shard") == "full" and form.plan.sharded)
        assert form.plan.estimate.state == "fits"
        assert "fits sharded over 2" in str(form.query_one("#vram").render())
        notes = [str(n.render()) for g in form.query("FieldGroup") for n in g.notes.values()]
        assert any("Unsloth does not shard" in n for n in notes)  # the nproc-per-node row says why
