"""The key bar: built once with its final look, and rebuilt only when the keys it shows change."""

from __future__ import annotations

from app_helpers import wait_until
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Input

from mgtui.tui.textual_private import FooterKey
from mgtui.tui.widgets.footer import KeyFooter


class Special(Input):
    BINDINGS = [Binding("f5", "special", "Special")]

    def action_special(self) -> None:
        pass


class Bar(App[None]):
    BINDINGS = [Binding("ctrl+t", "noop", "Thing")]

    def __init__(self, compact: bool) -> None:
        super().__init__()
        self.compact = compact

    def compose(self) -> ComposeResult:
        yield Input(id="a")
        yield Input(id="b")
        yield Special(id="c")
        yield KeyFooter(compact=self.compact)

    def action_noop(self) -> None:
        pass


async def wait_keys(pilot, footer: KeyFooter, descriptions: list[str]) -> list[FooterKey]:
    def shown() -> list[str]:
        return sorted(k.description for k in footer.query(FooterKey) if k.description in ("Thing", "Special"))

    await wait_until(pilot, lambda: shown() == descriptions, f"the bar showing {descriptions}")
    return list(footer.query(FooterKey))


async def test_the_bar_is_rebuilt_only_when_its_keys_change():
    app = Bar(compact=True)
    async with app.run_test(size=(80, 10)) as pilot:
        footer = app.query_one(KeyFooter)
        app.query_one("#a").focus()
        keys = await wait_keys(pilot, footer, ["Thing"])
        assert all(k.has_class("-compact") for k in keys)  # born compact

        app.query_one("#b").focus()  # the same keys: the same widgets stay
        await pilot.pause()
        await pilot.pause()
        assert list(footer.query(FooterKey)) == keys

        app.query_one("#c").focus()  # a key more: rebuilt
        shown = await wait_keys(pilot, footer, ["Special", "Thing"])
        assert not set(shown) & set(keys)
        assert all(k.has_class("-compact") for k in shown)

        app.query_one("#a").focus()  # and back
        await wait_keys(pilot, footer, ["Thing"])


async def test_a_wide_bar_keeps_its_keys_wide():
    app = Bar(compact=False)
    async with app.run_test(size=(80, 10)) as pilot:
        app.query_one("#a").focus()
        keys = await wait_keys(pilot, app.query_one(KeyFooter), ["Thing"])
        assert not any(k.has_class("-compact") for k in keys)
        assert not any(k.compact for k in keys)
