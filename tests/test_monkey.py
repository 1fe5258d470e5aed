"""Random keys, seeded, on every screen: the form and all its dialogs and pickers, help, the
command palette, and the run screen of a live, a finished and a failed run. Any exception fails
the test (Textual re-raises it when the app ends); the app must still be running afterwards."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from app_helpers import NO_GPU, one_gpu, settle
from conftest import ROOT

from mgtui.tui.app import MgApp

# Every key a person might hit, except the two that end the session (ctrl+q) or start a real run (ctrl+r).
KEYS = [
    *"abcxyz019 .-/_",
    "enter", "escape", "tab", "shift+tab", "backspace", "delete", "space",
    "up", "down", "left", "right", "home", "end", "pageup", "pagedown",
    "ctrl+p", "f1", "f2", "ctrl+o", "ctrl+s", "ctrl+g", "ctrl+t", "ctrl+y", "alt+1", "alt+2",
]  # fmt: skip
PRESSES = 60
# What opens each dialog, picker and overlay: each gets its own burst of random keys.
OPENERS = [[], ["ctrl+o"], ["ctrl+s"], ["ctrl+g"], ["f1"], ["ctrl+p"], ["ctrl+p", "a"], ["tab", "tab", "enter"]]
DATA = ROOT / "tests" / "data"


def send(app, key: str) -> None:
    """A key as the terminal driver delivers it, without waiting for the app to be idle: keys typed
    over SSH arrive in bursts, before the widget they open has laid itself out."""
    from textual import events
    from textual.keys import _character_to_key

    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    char = " " if key == "space" else key if len(key) == 1 else None
    event = events.Key(key, char)
    event.set_sender(app)
    app._driver.send_message(event)


async def hammer(pilot, seed: int, keys: list[str], presses: int = PRESSES) -> None:
    rnd = random.Random(seed)
    sent = 0
    while sent < presses:
        for _ in range(rnd.choice((1, 1, 2, 3, 6))):  # a key, or a burst of them
            send(pilot.app, rnd.choice(keys))
            sent += 1
        await pilot.pause()
    await pilot.pause(0.2)
    assert pilot.app.is_running and pilot.app.return_code is None


async def test_random_keys_on_the_form_and_its_dialogs():
    app = MgApp({"dataset": "builtin:demo-chat"}, None, one_gpu(24.0, 2.0), offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for seed, opener in enumerate(OPENERS):
            while len(pilot.app.screen_stack) > 1:  # back to the form: the next burst starts from its opener
                pilot.app.pop_screen()
                await pilot.pause()
            pilot.app.screen.query_one("#i-base_model").focus()
            await pilot.press(*opener)
            await hammer(pilot, seed, KEYS)


@pytest.mark.parametrize(
    "burst",
    [["ctrl+p", "pagedown"], ["ctrl+p", "a", "pagedown", "down", "enter"], ["ctrl+p", "pageup", "pageup"],
     ["ctrl+g", "pagedown", "pageup"], ["tab", "tab", "enter", "pagedown", "pageup"]],
    ids=["palette", "palette-typed", "palette-up", "picker", "select"],
)  # fmt: skip
async def test_page_keys_that_reach_a_list_before_it_is_built(burst):
    """Textual 8.2.8's palette raised KeyError: 0 here (its list's lines are built at layout)."""
    app = MgApp({"dataset": "builtin:demo-chat"}, None, one_gpu(24.0, 2.0), offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for key in burst:
            send(app, key)
        await pilot.pause(0.3)
        assert app.is_running and app.return_code is None


@pytest.mark.parametrize(
    "log, live", [("run_running.jsonl", True), ("run_done.jsonl", False), ("run_failed_oom.jsonl", False)],
    ids=["live", "finished", "failed"],
)  # fmt: skip
async def test_random_keys_on_the_run_screen(tmp_path, monkeypatch, log, live):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_text((DATA / log).read_text())
    stand_in = None
    if live:  # a live engine that a stop (s, then yes) may signal: a child that ignores nothing
        stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (run / "run.json").write_text(json.dumps({"pid": stand_in.pid, "state": "running"}))
    try:
        app = MgApp({}, None, NO_GPU, attach=Path("run"), offer_runs=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.3)
            await hammer(pilot, 7, [*KEYS, "s", "y", "n", "d"], 300)
    finally:
        if stand_in:
            stand_in.kill()
            stand_in.wait()


async def test_keys_typed_while_the_app_closes_are_dropped():
    """A burst after ctrl+q reached the app once its screens were gone: ScreenStackError (seen under load)."""
    app = MgApp({"dataset": "builtin:demo-chat"}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for key in ["ctrl+q", "escape", "tab", "a", "pagedown", "enter"]:
            send(app, key)
        await pilot.pause(0.3)
    assert app.return_code == 0


async def test_random_keys_on_the_runs_screen_and_the_comparison(tmp_path):
    """Ticking, comparing, sorting, filtering, archiving and deleting in any order, with the
    comparison opened part-way (and escape leaving either screen, ctrl+l coming back)."""
    from runs_helpers import three_runs

    from mgtui.tui.screens.compare import CompareScreen
    from mgtui.tui.screens.runs import RunsScreen

    three_runs(tmp_path)
    app = MgApp({}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        keys = [*KEYS, "ctrl+l", "c", "s", "h", "d", "y", "n", "o", "m", "x", "space", "space", "down", "up"]
        for seed, then in enumerate([[], ["space", "down", "space", "c"]]):
            while len(pilot.app.screen_stack) > 1:
                pilot.app.pop_screen()
                await pilot.pause()
            await pilot.press("ctrl+l")
            while not (isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.loaded):
                await pilot.pause(0.05)
            await pilot.press(*then)
            assert isinstance(pilot.app.screen, CompareScreen if then else RunsScreen)
            await hammer(pilot, 100 + seed, keys, 200)
