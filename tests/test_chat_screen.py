"""The chat and export screens driven with Pilot on a real finished run: the model answers in its
own process, escape stops it mid-answer, the conversation is saved, and the export writes."""

from __future__ import annotations

import functools
import json

from app_helpers import NO_GPU, wait_until
from engine_helpers import events

from mgtui.tui.app import MgApp
from mgtui.tui.screens.chat import ChatScreen, SamplingDialog
from mgtui.tui.screens.export import ExportScreen
from mgtui.tui.screens.run import RunScreen

wait_for = functools.partial(wait_until, timeout=180.0)  # a model loads under load


async def test_ask_both_models_stop_mid_answer_and_save(demo_run):
    app = MgApp({}, None, NO_GPU, chat=demo_run, offer_runs=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(pilot, lambda: screen.ready)
        await pilot.press("ctrl+t")  # greedy, so that the two answers can be told apart for sure
        assert isinstance(pilot.app.screen, SamplingDialog)
        dialog = pilot.app.screen
        dialog.query_one("#s-temperature").value = "0"
        dialog.query_one("#s-max_new_tokens").value = "24"
        dialog.query_one("#s-max_new_tokens").focus()
        await pilot.press("enter")
        assert pilot.app.screen is screen and screen.sampling.temperature == 0
        await pilot.press(*"What is 11 plus 5?", "enter")
        await wait_for(pilot, lambda: not screen.generating and len(screen.turns[0].done) == 2)
        answers = screen.turns[0].answers
        assert answers["tuned"] != answers["base"]
        assert "you: What is 11 plus 5?" in str(screen.query_one("#tuned-text").render())

        # Greedy again: sampled, the untrained base ends by itself within a few hundred tokens, which
        # under load can come before escape does; greedy, it writes newlines up to the limit.
        dialog_values = {"temperature": "0", "top_p": "0.9", "max_new_tokens": "20000"}
        await pilot.press("ctrl+t")
        for name, value in dialog_values.items():
            pilot.app.screen.query_one(f"#s-{name}").value = value
        pilot.app.screen.query_one("#s-system").focus()
        await pilot.press("enter")
        await pilot.press(*"Tell me a long story.", "enter")
        await wait_for(pilot, lambda: bool(screen.turns[1].answers.get("tuned")))
        await pilot.press("escape")  # stops the answer; the screen stays
        await wait_for(pilot, lambda: not screen.generating)
        assert pilot.app.screen is screen
        # The answer being written when escape arrived was stopped (the tiny model may end the tuned
        # one by itself first; the base cannot end before its 20000 tokens).
        done = screen.turns[1].done
        assert any(note.endswith("stopped") for note in done.values()), done
        if done.get("tuned", "").endswith("stopped"):
            assert "base" not in done  # a stopped request's base answer is skipped

        await pilot.press("ctrl+s")
        saved = [json.loads(x) for x in (demo_run / "conversations.jsonl").read_text().splitlines()]
        roles = [m["role"] for m in saved[-1]["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
        await pilot.press("escape")  # nothing being written: back
        assert not isinstance(pilot.app.screen, ChatScreen)
    assert screen.chat.proc is not None and screen.chat.proc.wait(timeout=120) == 0  # the model's process ended


async def test_export_from_the_finished_run_screen(demo_run, tmp_path, monkeypatch):
    app = MgApp({}, None, NO_GPU, attach=demo_run, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        run_screen = pilot.app.screen
        assert isinstance(run_screen, RunScreen)
        last = events(demo_run)[-1]["seq"]
        await wait_for(pilot, lambda: run_screen.view.last_seq == last)
        await pilot.press("e")
        dialog = pilot.app.screen
        assert isinstance(dialog, ExportScreen)
        dialog.query_one("#force").value = True  # an earlier test may have exported this run
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: dialog.finished)
        lines = [text for text, _ in dialog.lines]
        assert f"written: {demo_run / 'export'}" in lines, lines  # the merged model is the folder
        assert any(line.startswith("merging:") for line in lines)  # its progress was shown
        assert (demo_run / "export" / "model.safetensors").exists()
        await pilot.press("escape")
        assert pilot.app.screen is run_screen
