"""Snapshot tests of the main states, at 80x24 and 120x40, and the edges 60x18 and 200x55 (pytest-textual-snapshot).
The run screen is replayed from recorded event logs. Update with: uv run pytest --snapshot-update"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from app_helpers import NO_GPU, ReplayChat, settle, shared_gpu, wait_until, workers_done
from conftest import ROOT
from runs_helpers import three_runs, two_queued

from mgtui.tui.app import MgApp

SIZES = [(80, 24), (120, 40)]
DATA = ROOT / "tests" / "data"


async def _settle(pilot) -> None:
    await settle(pilot)
    steady_cursor(pilot)


def steady_cursor(pilot) -> None:
    """A focused Input's cursor blinks every 0.5 s, so a capture taken when a slow machine
    finishes settling could catch it off: hold it on, as the references show it."""
    from textual.widgets import Input

    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False


def form_app(chosen, target=None, gpu=NO_GPU) -> MgApp:
    return MgApp(chosen, target, gpu, offer_runs=False)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_form_default(snap_compare, size):
    app = form_app({"dataset": "builtin:demo-chat"}, ("RTX 4090 24GB (planning)", 24.0))
    assert snap_compare(app, terminal_size=size, run_before=_settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_form_over_with_advice(snap_compare, size):
    app = form_app(
        {
            "dataset": "builtin:demo-chat",
            "base_model": "unsloth/llama-3.1-8b",
            "quality_mode": True,
            "lora_r": 64,
            "batch_size": 8,
        },
        ("RTX 4090 24GB (planning)", 24.0),
    )

    async def run_before(pilot):
        await _settle(pilot)
        pilot.app.screen.query_one("#side").scroll_end(animate=False)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_form_invalid_field_and_no_gpu(snap_compare, size):
    app = form_app({"dataset": "builtin:demo-chat"})

    async def run_before(pilot):
        await _settle(pilot)
        form = pilot.app.screen
        form.query_one("#i-lora_r").focus()
        form.model.set_text("lora_r", "lots")
        form.refresh_form()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def replay(tmp_path: Path, log: str, alive: int | None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(DATA / log, run / "events.jsonl")
    if alive:  # a live engine: the engine_pid stand-in, whose heart beats (else it reads as stalled)
        (run / "run.json").write_text(json.dumps({"pid": alive, "state": "running", "uid": os.getuid()}))
        (run / ".heartbeat").touch()
    return run


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    "log, alive, gpu",
    [("run_running.jsonl", True, "one"), ("run_done.jsonl", False, "none"), ("run_failed_oom.jsonl", False, "one")],
    ids=["running", "finished", "failed"],
)
def test_run_screen_replayed(snap_compare, tmp_path, monkeypatch, size, log, alive, gpu, engine_pid):
    monkeypatch.chdir(tmp_path)  # the screen shows the run's path: keep it the same on every machine
    replay(tmp_path, log, engine_pid if alive else None)
    app = MgApp({}, None, shared_gpu() if gpu == "one" else NO_GPU, attach=Path("run"), offer_runs=False)

    last = json.loads((tmp_path / "run" / "events.jsonl").read_text().splitlines()[-1])["seq"]

    async def run_before(pilot):
        screen = pilot.app.screen
        screen.gpu_timer.pause()  # GPU readings are taken below, two as the references show
        panel = screen.query_one("#gpus")
        await workers_done(pilot)
        await wait_until(pilot, lambda: panel.reading is not None)
        if gpu == "one" and len(panel.history.get(0, ())) < 2:
            screen.poll_gpus()
            await wait_until(pilot, lambda: len(panel.history.get(0, ())) >= 2)
        # every event applied and the log drawn: states, not a guess at the time
        await wait_until(
            pilot,
            lambda: screen.view.last_seq == last and len(screen.query_one("#log").lines) >= len(screen.view.log) > 0,
        )
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen_of_a_dpo_run_with_reward_series(snap_compare, tmp_path, monkeypatch, size):
    """A finished DPO run (recorded from the tiny model): the rewards chart beside the loss, and
    the last reward accuracy, margin and rewards among the metrics."""
    monkeypatch.chdir(tmp_path)
    replay(tmp_path, "run_dpo_done.jsonl", None)
    app = MgApp({}, None, NO_GPU, attach=Path("run"), offer_runs=False)
    last = json.loads((tmp_path / "run" / "events.jsonl").read_text().splitlines()[-1])["seq"]

    async def run_before(pilot):
        screen = pilot.app.screen
        screen.gpu_timer.pause()
        await pilot.app.workers.wait_for_complete()
        await wait_until(
            pilot,
            lambda: screen.view.last_seq == last and len(screen.query_one("#log").lines) >= len(screen.view.log) > 0,
        )
        await wait_until(pilot, lambda: screen.query_one("#rewards").has_class("-shown"))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


EDGE_SIZES = [(60, 18), (200, 55)]


@pytest.mark.parametrize("size", EDGE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_form_at_the_edges(snap_compare, size):
    """60x18: the fields keep their width (the panels behind f2, the estimate in the header);
    200x55: the extra width goes to the panels."""
    app = form_app({"dataset": "builtin:demo-chat"}, ("RTX 4090 24GB (planning)", 24.0))
    assert snap_compare(app, terminal_size=size, run_before=_settle)


def test_form_panels_at_60x18(snap_compare):
    app = form_app({"dataset": "builtin:demo-chat"}, ("RTX 4090 24GB (planning)", 24.0))

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("f2")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(60, 18), run_before=run_before)


@pytest.mark.parametrize("size", EDGE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen_at_the_edges(snap_compare, tmp_path, monkeypatch, size):
    monkeypatch.chdir(tmp_path)
    replay(tmp_path, "run_done.jsonl", None)
    app = MgApp({}, None, NO_GPU, attach=Path("run"), offer_runs=False)
    last = json.loads((tmp_path / "run" / "events.jsonl").read_text().splitlines()[-1])["seq"]

    async def run_before(pilot):
        screen = pilot.app.screen
        screen.gpu_timer.pause()
        panel = screen.query_one("#gpus")
        await workers_done(pilot)
        await wait_until(pilot, lambda: panel.reading is not None)
        await wait_until(
            pilot,
            lambda: screen.view.last_seq == last and len(screen.query_one("#log").lines) >= len(screen.view.log) > 0,
        )
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def _runs_screen(pilot, tick: tuple[str, ...] = ()) -> None:
    from mgtui.tui.screens.runs import RunsScreen

    await pilot.press("ctrl+l")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.loaded)
    screen = pilot.app.screen
    for name in tick:
        screen.query_one("#runs").move_cursor(row=[r.name for r in screen.shown].index(name))
        await pilot.press("space")
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen(snap_compare, tmp_path, monkeypatch, utc, busy_gpu_for_the_waiter, size):
    """Finished, failed and missing runs, and two queued ones with their place and what they wait for."""
    monkeypatch.setenv("HOME", str(tmp_path))  # paths show as ~/runs/...: the same on every machine
    three_runs(tmp_path / "runs")
    two_queued(tmp_path / "runs")

    async def run_before(pilot):
        await _runs_screen(pilot, tick=("r64", "lr-half"))
        screen = pilot.app.screen
        screen.query_one("#runs").move_cursor(row=0)  # the newest: queued #2

    assert snap_compare(form_app({}), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_screen(snap_compare, tmp_path, monkeypatch, utc, size):
    from mgtui.tui.screens.compare import CompareScreen

    monkeypatch.setenv("HOME", str(tmp_path))
    three_runs(tmp_path / "runs")

    async def run_before(pilot):
        await _runs_screen(pilot, tick=("r16", "r64", "lr-half"))
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        await pilot.pause(0.3)

    assert snap_compare(form_app({}), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_form_on_a_shared_gpu(snap_compare, size):
    """Other users hold memory on the card: the VRAM panel plans on what is free now and says so,
    and the GPU picker lists who holds it."""
    app = form_app({"dataset": "builtin:demo-chat", "base_model": "unsloth/llama-3.1-8b-bnb-4bit"}, gpu=shared_gpu())

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("ctrl+g")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_screen(snap_compare, tmp_path, monkeypatch, size):
    """Two prompts answered by the tuned and the base model, replayed from a recorded session of
    the demo model (tuned: 200 steps; the base is the untrained tiny model)."""
    from mgtui.tui.screens.chat import ChatScreen

    monkeypatch.chdir(tmp_path)
    Path("long").mkdir()

    async def run_before(pilot):
        screen = ChatScreen(Path("long"), NO_GPU)
        screen.chat = ReplayChat(DATA / "chat_session.jsonl")
        await pilot.app.push_screen(screen)
        await wait_until(pilot, lambda: screen.ready)
        for prompt in ("What is 11 plus 5?", "What colour is the sky?"):
            await pilot.press(*prompt, "enter")
            await wait_until(pilot, lambda: not screen.generating)
        await pilot.pause(0.3)
        steady_cursor(pilot)

    assert snap_compare(form_app({}), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_export_dialog(snap_compare, tmp_path, monkeypatch, size):
    from mgtui.tui.screens.export import ExportScreen

    monkeypatch.chdir(tmp_path)

    async def run_before(pilot):
        form = pilot.app.screen
        await wait_until(pilot, lambda: bool(str(form.query_one("#helpline").render())))  # the form has focus
        await pilot.app.push_screen(ExportScreen(Path("long")))
        await pilot.pause(0.3)
        steady_cursor(pilot)

    assert snap_compare(form_app({}), terminal_size=size, run_before=run_before)
