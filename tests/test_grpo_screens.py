"""A GRPO run on the run screen, the comparison and the run history: its reward mean and spread,
each reward function's mean, KL, completion lengths and the share clipped as series; the latest
sampled completions in a panel that follows the log live and scrolls by keyboard; the last reward
mean in `model-garden runs --all`. The run directories hold real event logs written here, in the
schema of mgtui/runs/events.py."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from app_helpers import NO_GPU, settle, wait_until
from runs_helpers import T0

from mgtui.cli import main
from mgtui.runs import history, registry
from mgtui.runs.view import BAND, FUNC, FUNC_STD, RunView, chart_views, samples
from mgtui.tui.app import MgApp
from mgtui.tui.screens.compare import CompareChart, CompareScreen
from mgtui.tui.screens.run import RunScreen
from mgtui.tui.widgets.charts import RewardChart
from mgtui.tui.widgets.completions import CompletionsPanel

wait_for = functools.partial(wait_until, timeout=60.0)
FUNCS = ("answer_match", "fmt")
SIZES = [(80, 24), (120, 40)]


def grpo_settings(path: Path, **settings: Any) -> dict[str, Any]:
    return {
        "base_model": "builtin:tiny-llama", "dataset": "gsm8k.jsonl", "method": "grpo", "output_dir": str(path),
        "reward_funcs": "answer_match,rewards.py:fmt", "num_generations": 4, "max_completion_length": 64,
        "kl_beta": 0.04, "max_steps": 20, "learning_rate": 5e-6, **settings,
    }  # fmt: skip


def completions_event(step: int, n: int = 4) -> dict[str, Any]:
    """The samples of `step`: their rewards rise with the step; the first completion is long
    enough that the panel scrolls."""
    out = []
    for i in range(n):
        match = 1.0 if (i + step) % 3 == 0 else 0.0
        fmt = round(0.25 * (i % 3), 2)
        body = (
            f"Step {step}, sample {i + 1}: 12 + 5 = 17.\n" + "<reasoning>\nadd the units, then the tens\n</reasoning>\n"
        )
        if i == 0:
            body += "\n".join(f"line {k} of a long working-out" for k in range(1, 13)) + "\n"
        out.append(
            {
                "prompt": f"Question {i + 1} at step {step}: what is 12 plus 5? Answer with the number only, " * 3,
                "completion": body + "<answer>17</answer>",
                "reward": match + fmt,
                "rewards": {"answer_match": match, "fmt": fmt},
                "advantage": round(match + fmt - 0.6, 3),
            }
        )
    return {"type": "completions", "step": step, "samples": out}


def grpo_events(path: Path, steps: int = 20, lift: float = 1.0, end: bool = True, **settings: Any) -> list[dict]:
    events: list[dict[str, Any]] = [
        {"type": "start", "pid": 4242, "backend": "transformers", "device": "cpu", "world_size": 1, "precision": 32,
         "estimate_gb": 1.2, "settings": grpo_settings(path, **settings)},
        {"type": "phase", "phase": "training", "total_steps": steps},
    ]  # fmt: skip
    for step in range(1, steps + 1):
        f = step / steps
        match, fmt = min(1.0, 0.1 + 0.6 * f * lift), 0.2 + 0.3 * f
        events.append(
            {
                "type": "log", "step": step, "total_steps": steps, "epoch": step / steps, "loss": 0.02 - 0.001 * f,
                "learning_rate": 5e-6, "grad_norm": 0.5, "tokens_per_s": 900.0, "eta_s": (steps - step) * 2.0,
                "elapsed_s": step * 2.0, "tokens_seen": step * 512,
                "reward": round(match + fmt, 4), "reward_std": round(0.5 - 0.3 * f, 4),
                "reward_funcs": {"answer_match": round(match, 4), "fmt": round(fmt, 4)},
                "reward_funcs_std": {"answer_match": 0.4, "fmt": 0.1},
                **({"kl": round(0.0004 * step, 5)} if settings.get("kl_beta", 0.04) else {}), "entropy": round(0.9 - 0.02 * step, 4),
                "completion_length": 40.0 + step, "completion_length_max": 64.0,
                "clipped_ratio": round(0.5 - 0.02 * step, 3), "frac_reward_zero_std": 0.25,
            }
        )  # fmt: skip
        if step % 5 == 0:
            events.append(completions_event(step))
    if end:
        events.append({"type": "done", "final_loss": events[-2]["loss"], "steps": steps, "runtime_s": steps * 2.0,
                       "adapter": str(path)})  # fmt: skip
    return events


def write_log(path: Path, events: list[dict[str, Any]], first_seq: int = 0, hours: float = 0.0) -> None:
    with open(path / "events.jsonl", "a", encoding="utf-8") as f:
        for seq, e in enumerate(events, first_seq):
            f.write(json.dumps({"v": 1, "seq": seq, "t": T0 + hours * 3600 + seq, **e}) + "\n")


def grpo_run(path: Path, pid: int | None = None, hours: float = 0.0, **kw: Any) -> Path:
    """A registered GRPO run directory: finished, or live (its engine `pid`, its heart beating)."""
    path.mkdir(parents=True)
    events = grpo_events(path, end=pid is None, **kw)
    write_log(path, events, hours=hours)
    state = "running" if pid else "done"
    run = {"pid": pid or 999999999, "uid": os.getuid(), "started": T0 + hours * 3600, "state": state}
    (path / "run.json").write_text(json.dumps(run))
    if pid:
        (path / ".heartbeat").touch()
    registry.register(path)
    return path


def appended(path: Path, event: dict[str, Any]) -> None:
    last = json.loads((path / "events.jsonl").read_text().splitlines()[-1])["seq"]
    write_log(path, [event], first_seq=last + 1)


# --- the view model: pure -------------------------------------------------------------------


def test_the_view_model_folds_grpo_series_and_the_latest_completions(tmp_path):
    events = grpo_events(tmp_path)
    view = RunView()
    view.apply(events)
    logs = [e for e in events if e["type"] == "log"]
    assert view.method == "grpo" and view.step == 20
    assert view.series["reward"] == [(e["step"], e["reward"]) for e in logs]
    assert view.series["reward_std"][-1] == (20, logs[-1]["reward_std"])
    assert view.series[BAND[0]][0] == (1, logs[0]["reward"] + logs[0]["reward_std"])
    assert view.series[FUNC + "answer_match"][-1] == (20, logs[-1]["reward_funcs"]["answer_match"])
    assert view.series[FUNC_STD + "fmt"][-1] == (20, 0.1)
    for key in ("kl", "entropy", "completion_length", "completion_length_max", "clipped_ratio"):
        assert len(view.series[key]) == 20, key
    # the chart's views: reward (mean, band, each function), then KL, lengths, clipped, entropy
    views = chart_views(view.series)
    assert [v.name for v in views] == ["reward", "KL", "completion length", "clipped", "entropy"]
    assert [k for k, _ in views[0].lines] == ["reward", *BAND, FUNC + "answer_match", FUNC + "fmt"]
    # the latest completions: step 20's, prompts cut to one short line
    assert view.completions is not None and view.completions["step"] == 20
    shown = samples(view.completions)
    assert len(shown) == 4 and shown[0].rewards == {"answer_match": 0.0, "fmt": 0.0}
    assert len(shown[0].prompt) <= 160 and shown[0].prompt.endswith("…") and "\n" not in shown[0].prompt
    assert shown[0].completion.startswith("Step 20, sample 1") and shown[1].advantage == pytest.approx(0.65)
    # without a KL beta there is no KL view; a log from before the first completions has none
    early = RunView()
    early.apply([{k: v for k, v in e.items() if k != "kl"} for e in events[:5]])
    assert "KL" not in [v.name for v in chart_views(early.series)] and early.completions is None


def test_a_preference_run_keeps_its_one_unlabelled_view():
    view = RunView()
    view.apply([{"type": "log", "step": 1, "loss": 0.6, "reward_chosen": 0.1, "reward_rejected": -0.1,
                 "reward_margin": 0.2, "reward_accuracy": 1.0}])  # fmt: skip
    assert [(v.name, [k for k, _ in v.lines]) for v in chart_views(view.series)] == [
        (None, ["reward_chosen", "reward_rejected", "reward_margin"])
    ]


# --- the run screen -------------------------------------------------------------------------


async def test_run_screen_charts_rewards_and_follows_the_completions_live(tmp_path, engine_pid):
    run = grpo_run(tmp_path / "grpo", pid=engine_pid)
    app = MgApp({}, None, NO_GPU, attach=run, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen: RunScreen = app.screen
        await wait_for(pilot, lambda: screen.view.step == 20)
        chart = screen.query_one("#rewards", RewardChart)
        assert chart.has_class("-shown") and chart.shown().name == "reward"
        assert str(chart.render()).startswith("reward: ━mean ━±std ━answer_match ━fmt")
        metrics = str(screen.query_one("#metrics").render())
        assert "reward    1.2 ±0.2" in metrics and " answer_match 0.7 ±0.4" in metrics and "clipped   10%" in metrics
        # v steps through the views, back to the reward
        for name in ("KL", "completion length", "clipped", "entropy", "reward"):
            await pilot.press("v")
            assert chart.shown().name == name
            assert str(chart.render()).startswith(name + ":")
        # 80x24: the completions wait behind c, which swaps them in for the loss chart and log
        panel = screen.query_one("#completions", CompletionsPanel)
        assert not panel.display and screen.query_one("#log").display
        footer_keys = [b.key for _, b, enabled, _ in screen.active_bindings.values() if b.show and enabled]
        assert "c" in footer_keys and "v" in footer_keys
        await pilot.press("c")
        await pilot.pause()
        assert panel.display and panel.has_focus and not screen.query_one("#log").display
        assert not screen.query_one("#chart").display and chart.display
        assert "completions at step 20 · 4 samples" in str(panel.query_one("#cmphead").render())
        # a new completions event lands in the log while the screen is open: the panel follows,
        # from the top of the new samples
        await pilot.press("n")
        await wait_for(pilot, lambda: panel.scroll_y > 0)
        appended(run, completions_event(25, n=6))
        await wait_for(pilot, lambda: panel.event is not None and panel.event["step"] == 25)
        await wait_for(pilot, lambda: panel.scroll_y == 0)
        assert "completions at step 25 · 6 samples" in str(panel.query_one("#cmphead").render())
        assert len(panel.visible_cards()) == 6
        assert panel.samples[5].completion.startswith("Step 25, sample 6") and panel.visible_cards()[5].display
        # and a later, smaller one hides the cards it does not need
        appended(run, completions_event(30, n=2))
        await wait_for(pilot, lambda: panel.event["step"] == 30)
        await pilot.pause()
        assert len(panel.visible_cards()) == 2
        # c again: the loss chart and the log are back
        await pilot.press("c")
        await pilot.pause()
        assert not panel.display and screen.query_one("#log").display and screen.query_one("#chart").display


async def test_the_completions_scroll_by_keyboard(tmp_path):
    run = grpo_run(tmp_path / "grpo")
    app = MgApp({}, None, NO_GPU, attach=run, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen: RunScreen = app.screen
        await wait_for(pilot, lambda: screen.view.finished)
        await pilot.press("c")
        panel = screen.query_one("#completions", CompletionsPanel)
        await wait_for(pilot, lambda: panel.has_focus and panel.max_scroll_y > 0)
        assert panel.scroll_y == 0
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: panel.scroll_y == 2)
        await pilot.press("end")
        await wait_for(pilot, lambda: panel.scroll_y == panel.max_scroll_y)
        await pilot.press("home")
        await wait_for(pilot, lambda: panel.scroll_y == 0)
        cards = panel.visible_cards()
        tops = [panel.top(card) for card in cards]
        assert len(cards) == 4 and tops[0] == 1  # a blank line above it (the head line is docked)
        await pilot.press("n")  # the first sample is in view at the top: n goes to the second
        await wait_for(pilot, lambda: panel.scroll_y == tops[1])
        await pilot.press("n")
        await wait_for(pilot, lambda: panel.scroll_y == min(panel.max_scroll_y, tops[2]))
        await pilot.press("p")
        await wait_for(pilot, lambda: panel.scroll_y == tops[1])
        await pilot.press("p")
        await wait_for(pilot, lambda: panel.scroll_y == tops[0])
        await pilot.press("p")
        await wait_for(pilot, lambda: panel.scroll_y == 0)
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: panel.scroll_y > 2)


async def test_a_tall_screen_shows_the_completions_under_the_charts(tmp_path):
    """From 36 rows the completions show at once, beside the loss chart and the log; reattached,
    the view is rebuilt from the log and shows the latest samples."""
    run = grpo_run(tmp_path / "grpo")
    app = MgApp({}, None, NO_GPU, attach=run, offer_runs=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen: RunScreen = app.screen
        await wait_for(pilot, lambda: screen.view.finished)
        panel = screen.query_one("#completions", CompletionsPanel)
        assert panel.display and screen.query_one("#log").display and screen.query_one("#chart").display
        assert panel.event is not None and panel.event["step"] == 20


# --- the comparison and the history ---------------------------------------------------------


async def test_compare_two_grpo_runs_by_reward(tmp_path):
    from test_runs_screen import highlight, open_runs

    grpo_run(tmp_path / "beta-0.04", hours=0)
    grpo_run(tmp_path / "beta-0", hours=1, lift=0.5, kl_beta=0.0)
    async with MgApp({}, None, NO_GPU, offer_runs=False).run_test(size=(80, 24)) as pilot:
        screen = await open_runs(pilot)
        for name in ("beta-0.04", "beta-0"):
            await highlight(pilot, screen, name)
            await pilot.press("space")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        compare = pilot.app.screen
        chart = compare.query_one(CompareChart)
        assert chart.offered() == [
            "train", "reward", "reward_std", FUNC + "answer_match", FUNC + "fmt", "kl", "completion_length",
            "clipped_ratio",
        ]  # fmt: skip
        await pilot.press("v")
        assert chart.series == "reward" and "reward mean" in compare.sub_title
        lower, higher = (points for points, _ in chart.lines())  # the newest first: beta-0, lifted less
        assert len(higher) == 20 and higher[-1][1] > higher[0][1] and lower[-1][1] < higher[-1][1]
        await pilot.press("v", "v")
        assert chart.series == FUNC + "answer_match" and "reward: answer_match" in compare.sub_title
        assert [len(p) for p, _ in chart.lines()] == [20, 20]
        await pilot.press("v", "v")
        assert chart.series == "kl" and [len(p) for p, _ in chart.lines()] == [0, 20]  # beta 0: no KL
        summary, _ = history.compare_rows(chart.runs)
        assert dict(summary)["reward mean"] == ["0.9", "1.2"]


def test_runs_all_shows_a_grpo_runs_last_reward_mean(tmp_path, capsys):
    grpo_run(tmp_path / "grpo")
    rec = history.read_record(tmp_path / "grpo")
    assert rec.reward == 1.2 and rec.curves.funcs["fmt"][-1][2] == 0.5
    assert main(["runs", "--all"]) == 0
    out = capsys.readouterr().out
    head, row = out.splitlines()[:2]
    assert row[head.index(" reward ") + 1 :].split()[0] == "1.2"  # under its heading, after the final loss
    assert head.index("final loss") < head.index(" reward ")
    assert main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["reward"] == 1.2


# --- snapshots ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen_of_a_grpo_run_with_completions(snap_compare, tmp_path, monkeypatch, size):
    """A finished GRPO run: the reward chart (mean, ±std band, each function) under the loss, the
    reward metrics, and the latest completions: at 80x24 behind c (pressed here), at 120x40 under
    the charts by themselves."""
    monkeypatch.chdir(tmp_path)
    grpo_run(Path("run"))
    app = MgApp({}, None, NO_GPU, attach=Path("run"), offer_runs=False)
    last = json.loads(Path("run/events.jsonl").read_text().splitlines()[-1])["seq"]

    async def run_before(pilot):
        screen = pilot.app.screen
        screen.gpu_timer.pause()
        await pilot.app.workers.wait_for_complete()
        await wait_until(pilot, lambda: screen.view.last_seq == last and screen.query_one("#end").display)
        await wait_until(pilot, lambda: screen.query_one("#rewards").has_class("-shown"))
        if size[1] < 36:
            await pilot.press("c")
        await wait_until(pilot, lambda: screen.query_one("#completions").event is not None)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
