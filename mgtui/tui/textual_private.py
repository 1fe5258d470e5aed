"""The few private Textual calls mgtui makes, in one place. Textual is pinned below its next major
version, and tests/test_textual_private.py fails loudly, naming the call, if an upgrade changes one.

- forwarding a key to the widget focused now, and running the bindings for a key as the app does
  when it bubbles up unhandled (the form keeps a burst of keys in order: widgets/fields.py);
- restarting an Input's cursor blink after a bound key moved the cursor, as Input's own handler does;
- binding keys on a screen after it is built (a dialog's answers carry their own keys);
- two guards against random keys (below): OptionList paging, and the command palette;
- FooterKey, the Footer's key widget, which widgets/footer.py gives its final look when built;
- the app's handler of unhandled exceptions, where a failed worker is caught for all workers at once.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from textual import events
from textual.app import App
from textual.command import CommandPalette
from textual.css.query import NoMatches
from textual.dom import DOMNode
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, OptionList
from textual.widgets._footer import FooterKey as FooterKey  # re-exported: its module is private


def forward_key(target: Widget, key: events.Key) -> None:
    target._forward_event(key)


async def run_bindings(app: App, key: str) -> bool:
    """Run the non-priority bindings for `key`, from the focused widget out; True if one ran."""
    return await app._check_bindings(key)


def restart_blink(widget: Input) -> None:
    widget._restart_blink()


def bind_key(node: DOMNode, key: str, action: str) -> None:
    node._bindings.bind(key, action, show=False)


# --- guards for keys that reach a list before it is built or after it is gone -----------------
# Random keys crashed the app (Textual 8.2.8): page-up/down in an OptionList (a Select's overlay,
# the palette's list, a picker) index the lines it builds at layout, KeyError before then; and a
# key reaching the command palette while its list is not mounted, or already removed, raised
# NoMatches. Such a key has nothing to act on: it is dropped.
_DROPPED = (KeyError, IndexError, NoMatches)


def _dropping(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except _DROPPED:
            return None

    guarded.__mgtui_guarded__ = True  # type: ignore[attr-defined]
    return guarded


def guard_option_list_paging() -> None:
    if not getattr(OptionList._move_page, "__mgtui_guarded__", False):
        OptionList._move_page = _dropping(OptionList._move_page)  # type: ignore[method-assign]


def guard_select_label() -> None:
    """Textual 8.2.8's Select shows its value from its own on_mount, which can run before its
    SelectCurrent has composed the label it writes to: NoMatches ended the app (seen under load,
    a form group mounted while the run screen covered the form). The value is kept, and shown once
    the label exists."""
    from textual.widgets._select import SelectCurrent

    original = SelectCurrent.update
    if getattr(original, "__mgtui_guarded__", False):
        return

    @functools.wraps(original)
    def update(self: SelectCurrent, label: Any) -> None:
        try:
            original(self, label)
        except NoMatches:
            self.label = label
            self.call_after_refresh(lambda: update(self, self.label))

    update.__mgtui_guarded__ = True  # type: ignore[attr-defined]
    SelectCurrent.update = update  # type: ignore[method-assign]


class WorkerGuard(App[Any]):
    """One guard for every worker of the app: a worker that raises (a thread asking the Hub, reading
    a file, polling NVML) would end the whole app through App._handle_exception, with
    exit_on_error left at its default. Here its error is handed to `worker_failed` and the app
    goes on; anything else still ends the app as Textual does."""

    def _handle_exception(self, error: Exception) -> None:
        from textual.worker import WorkerFailed

        if isinstance(error, WorkerFailed) and isinstance(error.error, Exception):
            self.worker_failed(error.error)
            return
        super()._handle_exception(error)

    def worker_failed(self, error: Exception) -> None:
        raise NotImplementedError


class SafeCommandPalette(CommandPalette):
    """Textual's command palette, dropping a key or message that finds its list missing."""

    _action_command_list = _dropping(CommandPalette._action_command_list)
    _action_cursor_down = _dropping(CommandPalette._action_cursor_down)
    _action_escape = _dropping(CommandPalette._action_escape)

    async def _on_message(self, message: Message) -> None:
        try:
            await super()._on_message(message)
        except _DROPPED:
            pass
