"""The private Textual calls mgtui makes (mgtui/tui/textual_private.py) still exist with the shape it
relies on: an upgrade that changes one fails here, by name, not somewhere in a key handler."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest
import textual
from textual.app import App
from textual.binding import BindingsMap
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "owner, name, params",
    [
        (Widget, "_forward_event", ["self", "event"]),
        (Screen, "_forward_event", ["self", "event"]),
        (App, "_check_bindings", ["self", "key", "priority"]),
        (Input, "_restart_blink", ["self"]),
        (BindingsMap, "bind", ["self", "keys", "action", "description", "show", "key_display", "priority"]),
    ],
)
def test_each_private_call_is_still_there(owner, name, params):
    member = getattr(owner, name, None)
    assert member is not None, f"Textual {textual.__version__} has no {owner.__name__}.{name}"
    assert list(inspect.signature(member).parameters)[: len(params)] == params, f"{owner.__name__}.{name} changed"
    assert inspect.iscoroutinefunction(member) == (name == "_check_bindings")


def test_every_dom_node_has_a_bindings_map():
    assert isinstance(DOMNode()._bindings, BindingsMap)


def test_textual_is_bounded_and_the_lock_agrees():
    spec = next(
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("textual")
    )
    assert "<" in spec, spec
    upper = spec.split("<")[1].split(",")[0].strip()
    locked = next(
        p["version"] for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"] if p["name"] == "textual"
    )
    assert textual.__version__ == locked
    assert tuple(map(int, locked.split(".")[:1])) < tuple(map(int, upper.split(".")[:1]))


async def test_a_select_value_set_before_its_label_exists_is_shown_once_it_does():
    """Select's on_mount can write its value before SelectCurrent has composed its label (a form
    group mounted under another screen, under load): NoMatches ended the app. Reproduced here by
    writing to a SelectCurrent that is not mounted yet."""
    from textual.css.query import NoMatches
    from textual.widgets import Static
    from textual.widgets._select import SelectCurrent

    from mgtui.tui.textual_private import guard_select_label

    guard_select_label()
    guard_select_label()  # twice: still one wrapper
    assert not getattr(SelectCurrent.update.__wrapped__, "__mgtui_guarded__", False)
    app = App()
    async with app.run_test() as pilot:
        early = SelectCurrent("pick one")
        with pytest.raises(NoMatches):
            SelectCurrent.update.__wrapped__(early, "chosen")  # Textual's own update: the failure
        early.update("chosen")  # guarded: kept
        await app.mount(early)
        await pilot.pause()
        await pilot.pause()
        assert str(early.query_one("#label", Static).render()) == "chosen"
        assert early.has_value
