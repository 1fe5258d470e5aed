"""Small modal screens: confirm, ask for a name, choose from a list, help."""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option

from ..textual_private import bind_key
from ..widgets.fields import FieldInput


class Choice(ModalScreen[str | None]):
    """A question with a few answers, each on a key. Escape answers None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, body: str, answers: list[tuple[str, str, str]]) -> None:
        """answers: (value, label, key)."""
        super().__init__()
        self.title_text, self.body, self.answers = title, body, answers

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(self.title_text, classes="title")
            yield Static(self.body)
            with Horizontal(classes="buttons"):
                for value, label, key in self.answers:
                    yield Button(
                        f"{label} [{key}]",
                        id=f"a-{value}",
                        variant="primary" if value == self.answers[0][0] else "default",
                    )

    def on_mount(self) -> None:
        for value, _, key in self.answers:
            bind_key(self, key, f"answer('{value}')")

    def action_answer(self, value: str) -> None:
        self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id or "a-").removeprefix("a-"))


def confirm(title: str, body: str, yes: str = "Yes", no: str = "No") -> Choice:
    return Choice(title, body, [("yes", yes, "y"), ("no", no, "n")])


class AskName(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self, title: str, hint: str, value: str = "", validate: Callable[[str], str | None] = lambda s: None
    ) -> None:
        super().__init__()
        self.title_text, self.hint, self.value, self.validate = title, hint, value, validate

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(self.title_text, classes="title")
            yield FieldInput(self.value, id="name")  # keys in order, as in the form
            yield Label(self.hint, id="hint", classes="detail")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        problem = self.validate(event.value.strip())
        if problem:
            self.query_one("#hint", Label).update(Text(problem, style="bold red"))
            return
        self.dismiss(event.value.strip())


class PickOne(ModalScreen[str | None]):
    """A list to pick from, with a detail pane that follows the highlight."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self,
        title: str,
        options: list[tuple[str, str]],
        details: Callable[[str], Text | str],
        hint: str = "enter: choose · escape: cancel",
    ) -> None:
        super().__init__()
        self.title_text, self.options, self.details, self.hint = title, options, details, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(self.title_text, classes="title")
            yield OptionList(*[Option(label, id=key) for key, label in self.options], id="options")
            yield Static("", id="detail", classes="detail")
            yield Label(self.hint, classes="detail")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.query_one("#detail", Static).update(self.details(event.option.id or ""))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class PickMany(ModalScreen["list[str] | None"]):
    """A list to tick several from (space), confirmed with enter."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("enter", "done", "Use these", priority=True),
    ]  # before the list's own enter (it ticks)

    def __init__(
        self,
        title: str,
        options: list[tuple[str, str, bool]],
        hint: str = "space: tick · enter: use these · escape: cancel",
    ) -> None:
        super().__init__()
        self.title_text, self.options, self.hint = title, options, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(self.title_text, classes="title")
            yield SelectionList[str](*[(label, key, ticked) for key, label, ticked in self.options], id="options")
            yield Label(self.hint, classes="detail")

    def action_done(self) -> None:
        self.dismiss(list(self.query_one("#options", SelectionList).selected))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss(None)", "Close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label("mgtui - help (escape closes)", classes="title")
            with VerticalScroll():
                yield Static(self.text)
