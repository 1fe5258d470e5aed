"""The few private Textual calls mgtui makes, in one place. Textual is pinned below its next major
version, and tests/test_textual_private.py fails loudly, naming the call, if an upgrade changes one.

- forwarding a key to the widget focused now, and running the bindings for a key as the app does
  when it bubbles up unhandled (the form keeps a burst of keys in order: widgets/fields.py);
- restarting an Input's cursor blink after a bound key moved the cursor, as Input's own handler does;
- binding keys on a screen after it is built (a dialog's answers carry their own keys).
"""

from __future__ import annotations

from textual import events
from textual.app import App
from textual.dom import DOMNode
from textual.widget import Widget
from textual.widgets import Input


def forward_key(target: Widget, key: events.Key) -> None:
    target._forward_event(key)


async def run_bindings(app: App, key: str) -> bool:
    """Run the non-priority bindings for `key`, from the focused widget out; True if one ran."""
    return await app._check_bindings(key)


def restart_blink(widget: Input) -> None:
    widget._restart_blink()


def bind_key(node: DOMNode, key: str, action: str) -> None:
    node._bindings.bind(key, action, show=False)
