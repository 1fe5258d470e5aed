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
