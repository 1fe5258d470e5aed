"""The TrainerCallback that publishes training progress as events, and honours stop requests.

It only computes a few numbers and calls `emit`, which queues and returns: the training loop
never waits on the UI or on disk.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from transformers import TrainerCallback

from ..units import gib3

# TRL's preference metrics (dpo_trainer.py, kto_trainer.py, experimental/orpo and cpo: their
# `_metrics` and `store_metrics`) under the log event's names (runs/events.py).
PREFERENCE_LOGS = {
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy",
    "logps/chosen": "logp_chosen",
    "logps/rejected": "logp_rejected",
    "kl": "kl",
    "log_odds_ratio": "log_odds_ratio",
}

# GRPO's (grpo_trainer.py `_metrics`: rewards, completions/..., kl, entropy) under the log event's names;
# the per-function "rewards/<name>/mean" and "/std" go into reward_funcs and reward_funcs_std.
GRPO_LOGS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "entropy": "entropy",
    "completions/mean_length": "completion_length",
    "completions/max_length": "completion_length_max",
    "completions/clipped_ratio": "clipped_ratio",
    "frac_reward_zero_std": "frac_reward_zero_std",
}


def method_logs(logs: dict[str, Any]) -> dict[str, Any]:
    """A preference or GRPO trainer's own metrics of a training log, under the log event's names."""
    out = {ours: logs[theirs] for theirs, ours in (PREFERENCE_LOGS | GRPO_LOGS).items() if theirs in logs}
    funcs = {
        k[len("rewards/") : -len("/mean")]: v
        for k, v in logs.items()
        if k.startswith("rewards/") and k.endswith("/mean")
    }
    if funcs:
        out["reward_funcs"] = funcs
        out["reward_funcs_std"] = {
            k[len("rewards/") : -len("/std")]: v
            for k, v in logs.items()
            if k.startswith("rewards/") and k.endswith("/std")
        }
    return out


class EventCallback(TrainerCallback):
    def __init__(
        self,
        emit: Callable[..., Any],
        stop: threading.Event,
        tokens_per_sample: float,
        samples_per_step: int,
        cuda: bool,
        sync_stop: Callable[[bool], bool] = lambda s: s,
        gpu_bytes: Callable[[], int | None] = lambda: None,
        on_step: Callable[[int], Any] = lambda step: None,
    ) -> None:
        self.emit = emit
        self.stop = stop
        self.sync_stop = sync_stop  # under DDP every rank must agree to stop at the same step
        self.tokens_per_sample = tokens_per_sample
        self.samples_per_step = samples_per_step
        self.cuda = cuda
        self.on_step = on_step  # a failure names the last step reached
        # This process's GPU memory as NVML reports it (what nvidia-smi shows: torch's pool plus
        # the CUDA context), the figure the estimate predicts. NVML has no peak: keep the largest.
        self.gpu_bytes = gpu_bytes
        self.peak_nvml: int | None = None
        self.t0 = self.t_last = time.time()
        self.step_last = 0
        self.tokens_last = 0
        self.step_at_start = 0
        self.stopped_at: int | None = None
        self._evaluating = False
        # Speed after the first logged step: that one holds kernel compilation and the allocator's
        # growth (14 s of Unsloth's 25 s for 24 steps of Llama-3.1-8B on an H200).
        self.steady_from: tuple[float, int, float] | None = None
        self.steady_to: tuple[float, int, float] | None = None
        self.tokens_total = 0.0

    def on_train_begin(self, args, state, control, **kw):
        # A resumed Trainer replaces its state with the checkpoint's (trainer.py, load_from_json),
        # whose logging/eval/save cadence DefaultFlowCallback then reads (trainer_callback.py,
        # on_step_end): set them again from this run's arguments, so a changed cadence is honoured.
        state.compute_steps(args, state.max_steps)
        self.t0 = self.t_last = time.time()
        self.step_at_start = self.step_last = state.global_step
        self.tokens_last = state.num_input_tokens_seen or 0
        self.emit(
            "phase", phase="training", progress=state.global_step / max(state.max_steps, 1), total_steps=state.max_steps
        )

    def on_step_end(self, args, state, control, **kw):
        self.on_step(state.global_step)
        if self.sync_stop(self.stop.is_set()):
            self.stopped_at = state.global_step
            control.should_training_stop = True
            control.should_save = True  # a checkpoint to resume from
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        logs = dict(logs or {})
        now = time.time()
        if any(k.startswith("eval_") for k in logs):
            self._evaluating = False
            self.emit("eval", step=state.global_step, **{k: v for k, v in logs.items() if k.startswith("eval_")})
            self.emit("phase", phase="training", progress=state.global_step / max(state.max_steps, 1))
            return
        if "loss" not in logs:
            return
        steps = state.global_step - self.step_last
        dt = max(now - self.t_last, 1e-9)
        seen = state.num_input_tokens_seen or 0
        tokens = seen - self.tokens_last if seen else steps * self.samples_per_step * self.tokens_per_sample
        done_here = state.global_step - self.step_at_start
        per_step = (now - self.t0) / max(done_here, 1)
        self.tokens_total += tokens
        self.emit(
            "log",
            step=state.global_step,
            total_steps=state.max_steps,
            epoch=round(state.epoch or 0.0, 4),
            loss=logs.get("loss"),
            learning_rate=logs.get("learning_rate"),
            grad_norm=logs.get("grad_norm"),
            tokens_per_s=round(tokens / dt, 1),
            samples_per_s=round(steps * self.samples_per_step / dt, 2),
            eta_s=round(per_step * (state.max_steps - state.global_step), 1),
            elapsed_s=round(now - self.t0, 2),
            tokens_seen=round(self.tokens_total),
            **method_logs(logs),
        )
        self.t_last, self.step_last, self.tokens_last = now, state.global_step, seen
        mark = (now, state.global_step, self.tokens_total)
        if self.steady_from is None:
            self.steady_from = mark
        else:
            self.steady_to = mark
        if self.cuda:
            self.emit("memory", **self.memory_now())

    def steady(self) -> dict[str, float | None]:
        """Steps and tokens per second from the first logged step to the last."""
        if self.steady_from is None or self.steady_to is None:
            return {"steady_steps_per_s": None, "steady_tokens_per_s": None}
        (t0, s0, k0), (t1, s1, k1) = self.steady_from, self.steady_to
        dt = max(t1 - t0, 1e-9)
        return {"steady_steps_per_s": round((s1 - s0) / dt, 3), "steady_tokens_per_s": round((k1 - k0) / dt, 1)}

    def memory_now(self) -> dict[str, float | None]:
        """Peak GPU memory so far: torch's reserved and allocated, and NVML's largest reading."""
        import torch

        now = self.gpu_bytes()
        if now is not None:
            self.peak_nvml = max(self.peak_nvml or 0, now)
        return {
            "peak_reserved_gb": gib3(torch.cuda.max_memory_reserved()),
            "peak_allocated_gb": gib3(torch.cuda.max_memory_allocated()),
            "peak_nvml_gb": gib3(self.peak_nvml),
        }

    def on_prediction_step(self, args, state, control, **kw):
        if not self._evaluating:
            self._evaluating = True
            self.emit("phase", phase="evaluating")

    def on_save(self, args, state, control, **kw):
        self.emit("message", message=f"checkpoint saved at step {state.global_step}")
