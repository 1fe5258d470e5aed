"""From resolved settings to an estimate, the fit search and the guide's OOM advice. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..settings import Resolved, SettingError, resolve
from .archs import Arch
from .memory import DEFAULT, Coefficients, Estimate, Inputs, estimate


def inputs_for(res: Resolved, backend: str = "unsloth", gpu_count: int = 1) -> Inputs:
    """Per-process inputs: DDP keeps a full model copy on every GPU, so memory is per GPU."""
    return Inputs.from_settings(res.values, res.precision, backend, res.world_size(gpu_count))


def estimate_settings(
    res: Resolved,
    arch: Arch,
    gpu_gib: float | None,
    backend: str = "unsloth",
    c: Coefficients = DEFAULT,
    gpu_count: int = 1,
) -> Estimate:
    return estimate(arch, inputs_for(res, backend, gpu_count), gpu_gib, c)


def _largest(ok, lo: int, hi: int) -> int | None:
    """Largest n in [lo, hi] with ok(n), for ok monotone (true then false); None if ok(lo) fails."""
    if not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def max_batch_size(arch: Arch, inp: Inputs, gpu_gib: float, c: Coefficients = DEFAULT, limit: int = 4096) -> int | None:
    return _largest(lambda b: estimate(arch, replace(inp, batch_size=b), gpu_gib, c).fits, 1, limit)


def max_seq_length(
    arch: Arch, inp: Inputs, gpu_gib: float, c: Coefficients = DEFAULT, limit: int = 131072
) -> int | None:
    return _largest(lambda s: estimate(arch, replace(inp, seq_len=s), gpu_gib, c).fits, 16, limit)


@dataclass(frozen=True)
class Step:
    number: int  # the guide's numbering, 1..5
    title: str
    changes: dict[str, Any]  # settings to set explicitly, as the form would
    estimate: Estimate
    short: str = ""  # a few words, for narrow panels

    @property
    def fits(self) -> bool | None:
        return self.estimate.fits

    def as_dict(self) -> dict[str, Any]:
        """The step as `estimate --json` and the engine's OOM event carry it."""
        return {
            "step": self.number,
            "title": self.title,
            "changes": self.changes,
            "peak_gb": round(self.estimate.peak_gib, 3),
            "fits": self.fits,
        }


def _guide_steps(res: Resolved) -> list[tuple[int, str, str, dict[str, Any]]]:
    """The guide's 'Out of Memory: try in order', as the changes each makes to these settings:
    (number, title, short title, changes)."""
    v = res.values
    steps: list[tuple[int, str, str, dict[str, Any]]] = []
    b, ga = v["batch_size"], v["gradient_accumulation_steps"]
    if b > 1:
        steps.append((1, f"Reduce batch size {b} → 1", f"batch {b} → 1", {"batch_size": 1}))
        steps.append(
            (
                2,
                f"Batch 1 × accumulation {ga} → {b * ga} (keeps the effective batch {b * ga})",
                f"batch 1 × accum {b * ga}",
                {"batch_size": 1, "gradient_accumulation_steps": b * ga},
            )
        )
    if v["use_gradient_checkpointing"] != "unsloth":
        steps.append(
            (
                3,
                f"Checkpointing {v['use_gradient_checkpointing']} → unsloth (offload to RAM)",
                "checkpointing unsloth",
                {"use_gradient_checkpointing": "unsloth"},
            )
        )
    if v["lora_r"] > 8:
        r = 16 if v["lora_r"] > 16 else 8
        steps.append(
            (
                4,
                f"Reduce LoRA rank {v['lora_r']} → {r}",
                f"lora rank {v['lora_r']} → {r}",
                {"lora_r": r} | ({"lora_alpha": r} if v["lora_alpha"] == v["lora_r"] else {}),
            )
        )
    if res.precision != 4:
        steps.append(
            (
                5,
                f"Load in 4-bit instead of {res.precision}-bit",
                f"{res.precision}-bit → 4-bit",
                {"load_in_8bit": False, "load_in_16bit": False},
            )
        )
    return steps


SHARD_STEP = 6  # not one of the guide's five: a way out it doesn't have, offered first where it fits
GENERATIONS_STEP = 7  # GRPO's own: fewer completions per prompt
COMPLETION_STEP = 8  # GRPO's own: shorter completions


def fewer_generations(v: Any) -> dict[str, Any] | None:
    """Half the completions per prompt, and half the completions per step, so the prompts per step stay:
    TRL generates batch_size x gradient_accumulation_steps completions at once whatever num_generations
    is (trl/trainer/grpo_config.py:1085-1087), so halving num_generations alone saves nothing. Halves
    batch_size where it is even (the training micro-batch shrinks too), else the accumulation. The
    halved num_generations still divides the halved completions per step, and stays >= 2."""
    g, b, ga = v["num_generations"], v["batch_size"], v["gradient_accumulation_steps"]
    if g < 4 or g % 2:
        return None
    if b % 2 == 0:
        return {"num_generations": g // 2, "batch_size": b // 2}
    if ga % 2 == 0:
        return {"num_generations": g // 2, "gradient_accumulation_steps": ga // 2}
    return None


def _grpo_steps(res: Resolved) -> list[tuple[int, str, str, dict[str, Any]]]:
    v = res.values
    if v.get("method") != "grpo":
        return []
    steps: list[tuple[int, str, str, dict[str, Any]]] = []
    fewer = fewer_generations(v)
    if fewer:
        g = v["num_generations"]
        now: dict[str, Any] = dict(v)
        what = ", ".join(f"{k.replace('_', ' ')} {now[k]} → {n}" for k, n in fewer.items() if k != "num_generations")
        steps.append(
            (
                GENERATIONS_STEP,
                f"Fewer generations per prompt {g} → {g // 2} ({what}: the same prompts per step)",
                f"generations {g} → {g // 2}",
                fewer,
            )
        )
    c = v["max_completion_length"]
    if c >= 2:
        # max_seq_length drops by as much, so the same prompts are kept (train/grpo.py skips one longer than
        # max_seq_length less max_completion_length): else the room freed goes to longer prompts, and Unsloth's
        # decoding, which holds a prompt's K and V twice (memory.unsloth_kv_positions), would need more.
        s, cut = v["max_seq_length"], c - c // 2
        steps.append(
            (
                COMPLETION_STEP,
                f"Shorter completions {c} → {c // 2} tokens (max_seq_length {s} → {s - cut}: the same prompts)",
                f"completions {c} → {c // 2}",
                {"max_completion_length": c // 2, "max_seq_length": s - cut},
            )
        )
    return steps


def apply_changes(res: Resolved, changes: dict[str, Any]) -> Resolved:
    """The settings with `changes` made explicitly (as typed into the form), re-resolved."""
    base = {k: v for k, v in res.values.items() if k not in res.quality_set}
    return resolve([base, changes], res.explicit | set(changes))


def advise(
    res: Resolved,
    arch: Arch,
    gpu_gib: float | None,
    backend: str = "unsloth",
    c: Coefficients = DEFAULT,
    gpu_count: int = 1,
) -> list[Step]:
    """Each applicable step of the guide, in its order, with the estimate it alone gives;
    then, when more than one applies, all of them together. On more than one GPU, sharding the
    model over them comes first where it makes the run fit."""
    first: list[Step] = []
    world = res.world_size(gpu_count)
    if world > 1 and not res.sharded:
        sharded = apply_changes(res, {"shard": "full"})
        step = Step(
            SHARD_STEP,
            f"Shard the model over {world} GPUs (FSDP2; Transformers + PEFT)",
            {"shard": "full"},
            estimate_settings(sharded, arch, gpu_gib, "transformers", c, gpu_count),
            f"shard over {world} GPUs",
        )
        first = [step] if step.fits else []
    out: list[Step] = []
    combined: dict[str, Any] = {}
    for number, title, short, changes in _guide_steps(res) + _grpo_steps(res):
        try:
            changed = apply_changes(res, changes)
        except SettingError:  # e.g. 4-bit of a model only a 16-bit name is known for, or GRPO's
            continue  # num_generations no longer dividing the completions per step
        out.append(
            Step(number, title, changes, estimate_settings(changed, arch, gpu_gib, backend, c, gpu_count), short)
        )
        if number != GENERATIONS_STEP:  # made again below from the other steps' batch and accumulation
            combined.update(changes)
    if any(s.number == GENERATIONS_STEP for s in out):
        combined.update(fewer_generations(res.values | combined) or {})
    if len(out) > 1:
        title = "All of the guide's steps above" if first else "All of the above"
        try:
            changed = apply_changes(res, combined)
        except SettingError:
            return first + out
        out.append(
            Step(0, title, combined, estimate_settings(changed, arch, gpu_gib, backend, c, gpu_count), title.lower())
        )
    return first + out
