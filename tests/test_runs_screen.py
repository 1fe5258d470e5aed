"""The runs screen and the comparison, driven with Pilot as a person would from the form."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from app_helpers import NO_GPU, wait_until
from rich.console import Console
from runs_helpers import recorded_run, three_runs, two_queued

from mgtui.tui.app import MgApp
from mgtui.tui.screens.compare import CompareChart, CompareScreen
from mgtui.tui.screens.modals import AskName, Choice
from mgtui.tui.screens.run import RunScreen
from mgtui.tui.screens.runs import RunsScreen

wait_for = functools.partial(wait_until, timeout=60.0)


async def open_runs(pilot) -> RunsScreen:
    await pilot.press("ctrl+l")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.loaded)
    return pilot.app.screen


async def highlight(pilot, screen: RunsScreen, name: str) -> None:
    table = screen.query_one("#runs")
    table.move_cursor(row=[r.name for r in screen.shown].index(name))
    await pilot.pause()


def app() -> MgApp:
    return MgApp({}, None, NO_GPU, offer_runs=False)


async def test_tick_two_runs_and_compare_their_curves(tmp_path):
    three_runs(tmp_path)
    async with app().run_test(size=(80, 24)) as pilot:
        screen = await open_runs(pilot)
        assert [r.name for r in screen.shown] == ["oom", "lr-half", "r64", "r16", "gone"]
        assert screen.shown[-1].state == "missing"
        await pilot.press("c")  # nothing ticked: it says what to do
        assert isinstance(pilot.app.screen, RunsScreen)
        for name in ("r64", "r16"):
            await highlight(pilot, screen, name)
            await pilot.press("space")
        assert screen.ticked == {str(tmp_path / "r64"), str(tmp_path / "r16")}
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        chart = pilot.app.screen.query_one(CompareChart)
        assert [r.name for r in chart.runs] == ["r64", "r16"]
        lines = chart.lines()
        assert len(lines) == 2 and lines[0][1] != lines[1][1]  # a colour each
        assert lines[0][0][0] == (1.0, chart.runs[0].curves.train[0][2])
        assert [len(points) for points, _ in chart.marks()] == [2, 0]  # r64 was evaluated twice
        await pilot.press("x")
        assert chart.x == "tokens" and chart.lines()[0][0][-1][0] > 120
        await pilot.press("m")
        assert chart.smoothing == 0.6 and chart.lines()[0][0][-1][1] != chart.runs[0].final_loss
        console = Console(width=100, record=True)
        console.print(pilot.app.screen.figures())
        figures = console.export_text()
        assert "lora-r" in figures and "learning-rate" not in figures  # only what differs
        assert f"{chart.runs[0].final_loss:.4g}" in figures
        await pilot.press("escape")
        assert pilot.app.screen is screen


async def test_filter_takes_letters_sort_cycles_and_enter_opens(tmp_path):
    three_runs(tmp_path)
    async with app().run_test(size=(80, 24)) as pilot:
        screen = await open_runs(pilot)
        await pilot.press("/", *"lr-half s")  # letters go to the filter, not to the keys
        assert screen.sort == "when"
        assert [r.name for r in screen.shown] == ["lr-half"]
        await pilot.press("escape")  # from the filter: back to the list, not off the screen
        assert pilot.app.screen is screen and screen.focused is screen.query_one("#runs")
        await pilot.press("s")
        assert screen.sort == "final loss"
        screen.query_one("#filter").value = ""
        await pilot.pause()
        assert [r.name for r in screen.shown][:3] == ["r64", "lr-half", "r16"]  # best first
        await highlight(pilot, screen, "gone")
        await pilot.press("enter")  # a missing run says so, and opens nothing
        assert pilot.app.screen is screen
        await highlight(pilot, screen, "r16")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        assert pilot.app.screen.run_dir == tmp_path / "r16"
        await wait_for(pilot, lambda: pilot.app.screen.view.finished)
        await pilot.press("escape")
        assert pilot.app.screen is screen


async def test_delete_asks_frees_and_refuses_a_running_run(tmp_path, engine_pid):
    three_runs(tmp_path)
    live = recorded_run(tmp_path / "live", hours=9)
    (live / "run.json").write_text(json.dumps({"pid": engine_pid, "state": "running", "uid": os.getuid()}))
    async with app().run_test(size=(80, 24)) as pilot:
        screen = await open_runs(pilot)
        await highlight(pilot, screen, "live")
        await pilot.press("d")
        assert pilot.app.screen is screen and live.exists()  # refused, no question
        await highlight(pilot, screen, "r16")
        await pilot.press("d")
        assert isinstance(pilot.app.screen, Choice)
        assert "frees" in str(pilot.app.screen.body)
        await pilot.press("n")
        assert (tmp_path / "r16").exists()
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: not (tmp_path / "r16").exists())
        assert "r16" not in [r.name for r in screen.shown]
        await highlight(pilot, screen, "gone")
        await pilot.press("a")  # archived: hidden until asked for
        assert "gone" not in [r.name for r in screen.shown]
        await pilot.press("h")
        assert "gone" in [r.name for r in screen.shown]


async def test_a_folder_pointed_at_is_listed_from_then_on(tmp_path):
    folder = tmp_path / "project"
    recorded_run(folder / "outputs" / "found")
    (Path(os.environ["XDG_STATE_HOME"]) / "mgtui" / "runs").mkdir(parents=True, exist_ok=True)
    for pointer in (Path(os.environ["XDG_STATE_HOME"]) / "mgtui" / "runs").glob("*.json"):
        pointer.unlink()  # only the folder knows of it
    async with app().run_test(size=(80, 24)) as pilot:
        screen = await open_runs(pilot)
        assert screen.shown == []
        await pilot.press("o")
        assert isinstance(pilot.app.screen, AskName)
        await pilot.press(*str(tmp_path / "nowhere"), "enter")
        assert isinstance(pilot.app.screen, AskName)  # refused in place, with why
        field = pilot.app.screen.query_one("#name")
        field.value = str(folder)
        await pilot.press("enter")
        await wait_for(pilot, lambda: [r.name for r in screen.shown] == ["found"])
    async with app().run_test(size=(80, 24)) as pilot:  # remembered
        screen = await open_runs(pilot)
        assert [r.name for r in screen.shown] == ["found"]


async def test_queued_runs_show_their_place_and_can_be_cancelled(tmp_path, busy_gpu_for_the_waiter):
    three_runs(tmp_path)
    first, second = two_queued(tmp_path)
    async with app().run_test(size=(80, 24)) as pilot:
        screen = await open_runs(pilot)
        rows = {r.name: r for r in screen.shown}
        assert (rows["q-r32"].queue_place, rows["q-r128"].queue_place) == (1, 2)
        assert rows["q-r128"].waiting_for == "1 earlier queued run"
        await highlight(pilot, screen, "q-r32")
        assert "waits for GPU 0: needs 9.5 GB, 2.0 GB free" in str(screen.query_one("#runinfo").render())
        await pilot.press("enter")
        assert isinstance(pilot.app.screen, Choice)
        await pilot.press("c")
        await wait_for(pilot, lambda: {r.name: r.queue_place for r in screen.shown}.get("q-r128") == 1)
        assert {r.name: r.state for r in screen.shown}["q-r32"] == "cancelled"


async def test_a_queued_run_opened_says_where_it_stands_then_that_it_was_cancelled(tmp_path):
    from mgtui.runs import queue

    first, _ = two_queued(tmp_path)
    app = MgApp({}, None, NO_GPU, attach=first, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.queued is not None)
        progress = str(screen.query_one("#progress").render())
        assert "queued #1 · waits for GPU 0: needs 9.5 GB, 2.0 GB free" in progress
        assert screen.exit_note is None
        queue.cancel(first)
        await wait_for(pilot, lambda: screen.exit_note is not None)
        assert screen.exit_note == "Cancelled: taken out of the queue before it started."


async def test_compare_preference_runs_by_reward_margin_and_accuracy(tmp_path):
    for name, margin, hours in (("beta-0.1", 1.0, 0), ("beta-0.5", 2.0, 1)):
        recorded_run(tmp_path / name, log="run_dpo_done.jsonl", margin=margin, hours=hours, beta=float(name[5:]))
    async with app().run_test(size=(80, 24)) as pilot:
        screen = await open_runs(pilot)
        for name in ("beta-0.1", "beta-0.5"):
            await highlight(pilot, screen, name)
            await pilot.press("space")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        compare = pilot.app.screen
        chart = compare.query_one(CompareChart)
        assert chart.offered() == ["train", "reward_margin", "reward_accuracy"]
        await pilot.press("v")
        assert chart.series == "reward_margin" and "reward margin" in compare.sub_title
        assert [r.name for r in chart.runs] == ["beta-0.5", "beta-0.1"]  # the newest first, as listed
        doubled, recorded = (points for points, _ in chart.lines())
        assert len(recorded) == 10 and recorded[-1][1] > recorded[0][1]  # the recorded run's margin rises
        assert [y for _, y in doubled] == [2 * y for _, y in recorded] and chart.marks() == []
        await pilot.press("v")
        assert chart.series == "reward_accuracy" and chart.lines()[0][0][-1][1] == 1.0
        await pilot.press("v")
        assert chart.series == "train" and "loss" in compare.sub_title
