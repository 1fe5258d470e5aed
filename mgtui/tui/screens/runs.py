"""The runs screen: every run this user started, and those found under the folders they point
at, with the settings that differ between them. Filter, sort, open, tick runs to compare,
archive, delete. What is listed and in which order is decided in runs/history.py."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import DataTable, Header, Input, Static

from ...nvml import GpuSource
from ...runs import history, queue
from ...runs.history import RunRecord
from ..messages import AttachRequested, ChatRequested, CompareRequested, ExportRequested
from ..widgets.footer import KeyFooter
from .base import AppScreen
from .modals import AskName, Choice, confirm

TICK = "✓"


class RunsScreen(AppScreen):
    AUTO_FOCUS = "#runs"
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="back (from the filter: to the list)"),
        Binding("enter", "open", "Open", tooltip="open the run: follow it, or see how it ended"),
        Binding("space", "tick", "Tick", tooltip="tick a run for the comparison"),
        Binding("c", "compare", "Compare", tooltip="compare the ticked runs (two or more): curves, settings, figures"),
        Binding("slash", "filter", "Filter", tooltip="filter: rows that contain every word typed"),
        Binding("s", "sort", "Sort", tooltip="sort by the next column: when, losses, speed, time, state"),
        Binding("d", "delete", "Delete", tooltip="delete the run's directory (asks first; never a running run)"),
        Binding("t", "chat", "Try", show=False, tooltip="chat with the run's model, beside the base model"),
        Binding("e", "export", "Export", show=False, tooltip="export the run: a merged model, a GGUF file, the Hub"),
        # Said on the line under the table: the footer has room for the keys above at 80 columns.
        Binding(
            "a", "archive", "Archive", show=False, tooltip="archive the run (hidden, kept on disk), or bring it back"
        ),
        Binding("h", "show_archived", "Archived", show=False, tooltip="show or hide archived runs"),
        Binding(
            "o", "add_folder", "Folder", show=False, tooltip="also list the runs found under a folder (remembered)"
        ),
    ]

    def __init__(self, gpu_source: GpuSource, extra: Iterable[Path] = ()) -> None:
        super().__init__(gpu_source)
        self.extra = list(extra)
        self.runs: list[RunRecord] = []
        self.shown: list[RunRecord] = []
        self.ticked: set[str] = set()
        self.sort = "when"
        self.show_archived = False
        self.loaded = False  # the first reading has arrived (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        yield Input(placeholder="/ to filter: words that each row must contain", id="filter", compact=True)
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("reading the runs…", id="runinfo")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.title = "mgtui"
        self.sub_title = "runs"
        self.reload()

    @work(thread=True, exclusive=True, group="runs")
    def reload(self) -> None:
        """Every run's event log is read: in a thread, so the screen answers keys meanwhile."""
        noticed = queue.ensure_waiter()  # a queue waiter that died is noticed (and replaced) here
        runs = history.collect(self.extra)
        self.app.call_from_thread(self._loaded, runs, noticed)

    def _loaded(self, runs: list[RunRecord], noticed: str | None = None) -> None:
        self.runs = runs
        self.loaded = True
        self.refresh_table()
        if noticed:
            self.notify(noticed, severity="warning", timeout=10)

    # --- the table --------------------------------------------------------------------------
    def refresh_table(self) -> None:
        table = self.query_one("#runs", DataTable)
        keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value if table.row_count else None
        text = self.query_one("#filter", Input).value
        self.shown = history.visible(self.runs, text, self.sort, self.show_archived)
        heads, rows = history.table(self.shown)
        table.clear(columns=True)
        table.add_column(" ", key="tick")
        for h in heads:
            table.add_column(h, key=h)
        for run, cells in zip(self.shown, rows):
            style = "dim" if run.state == "missing" or run.archived else ""
            tick = TICK if str(run.path) in self.ticked else ""
            table.add_row(tick, *(Text(c, style=style) for c in cells), key=str(run.path))
        if keep is not None and keep in {str(r.path) for r in self.shown}:
            table.move_cursor(row=table.get_row_index(keep))
        hidden = sum(r.archived for r in self.runs) if not self.show_archived else 0
        note = f" · {hidden} archived (h shows)" if hidden else ""
        self.sub_title = f"runs · {len(self.shown)} of {len(self.runs)} · sorted by {self.sort}{note}"
        self.show_info()

    def current(self) -> RunRecord | None:
        table = self.query_one("#runs", DataTable)
        if not self.shown or not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.shown if str(r.path) == key), None)

    def show_info(self) -> None:
        run = self.current()
        if run is None:
            text = "no runs yet: start one from the form (ctrl+r)" if self.loaded and not self.runs else "no runs match"
            self.query_one("#runinfo", Static).update(Text(text, style="dim"))
            return
        line = Text(history.short_path(run.path), style="bold")
        if run.state == "missing":
            line.append("  directory gone: a archives, d removes it from the list", style="yellow")
        if run.queue_place:
            line.append(f"  waits for {run.waiting_for}", style="yellow")
        ticked = len(self.ticked)
        first = f"{ticked} ticked: c compares" if ticked >= 2 else "space tick"
        if run.queue_place:
            hint = f"enter: start it now, or cancel it · {first}"
        else:  # as many of the keys as the width holds (f1 lists them all)
            hint = first
            for part in ("enter open", "t try", "e export", "a archive", "h archived", "o folder"):
                if len(hint) + len(part) + 3 > max(40, self.size.width - 2):
                    break
                hint += " · " + part
        line.append(f"\n{hint}", style="dim")
        self.query_one("#runinfo", Static).update(line)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_info()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.loaded:
            self.refresh_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#runs", DataTable).focus()

    # --- actions ----------------------------------------------------------------------------
    def action_back(self) -> None:
        if self.focused is self.query_one("#filter", Input):
            self.query_one("#runs", DataTable).focus()
        else:
            self.app.pop_screen()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_open(self) -> None:
        run = self.current()
        if run is None:
            return
        if run.state == "missing":
            self.notify(f"{run.path}: the directory is gone", severity="warning")
            return
        if run.queue_place:
            self.ask_queued(run)
            return
        self.post_message(AttachRequested(run.path))

    def ask_queued(self, run: RunRecord) -> None:
        def answer(a: str | None) -> None:
            if a == "start":
                problem = queue.start_now(run.path)
                if problem:
                    self.notify(problem, severity="error")
                    return
                self.post_message(AttachRequested(run.path))
            elif a == "cancel":
                queue.cancel(run.path)
                self.notify(f"{run.name}: taken out of the queue (its directory is kept)")
            self.reload()

        self.app.push_screen(
            Choice(
                f"Queued #{run.queue_place}: {run.name}",
                f"Waiting: {run.waiting_for}",
                [("start", "Start now", "s"), ("cancel", "Cancel it", "c"), ("wait", "Keep waiting", "escape")],
            ),
            answer,
        )

    def action_chat(self) -> None:
        run = self.current()
        if run is not None:
            self.post_message(ChatRequested(run.path))

    def action_export(self) -> None:
        run = self.current()
        if run is not None:
            self.post_message(ExportRequested(run.path))

    def action_tick(self) -> None:
        run = self.current()
        if run is None:
            return
        key = str(run.path)
        self.ticked ^= {key}
        table = self.query_one("#runs", DataTable)
        table.update_cell(key, "tick", TICK if key in self.ticked else "")
        self.show_info()

    def action_compare(self) -> None:
        chosen = [r for r in self.runs if str(r.path) in self.ticked and r.state != "missing"]
        if len(chosen) < 2:
            self.notify("Tick two or more runs with space, then c", severity="warning")
            return
        self.post_message(CompareRequested(chosen))

    def action_sort(self) -> None:
        names = list(history.SORTS)
        self.sort = names[(names.index(self.sort) + 1) % len(names)]
        self.refresh_table()

    def action_show_archived(self) -> None:
        self.show_archived = not self.show_archived
        self.refresh_table()

    def action_archive(self) -> None:
        run = self.current()
        if run is None:
            return
        history.set_archived(run, not run.archived)
        self.notify(f"{run.name}: {'archived (h shows it)' if run.archived else 'back in the list'}")
        self.refresh_table()

    def action_delete(self) -> None:
        run = self.current()
        if run is None:
            return
        problem = history.delete_problem(run)
        if problem:
            self.notify(problem, severity="error")
            return
        size = history.size_bytes(run.path) if run.path.exists() else 0
        what = f"Delete {run.path} and everything in it?\nThis frees {size / 1e9:.2f} GB."
        if run.state == "missing":
            what = f"{run.path} is gone: remove it from the list?"

        def answer(a: str | None) -> None:
            if a != "yes":
                return
            try:
                history.delete(run)
            except (OSError, ValueError) as e:
                self.notify(f"{run.path}: {e}", severity="error")
                return
            self.runs.remove(run)
            self.ticked.discard(str(run.path))
            self.notify(f"Deleted {run.path}")
            self.refresh_table()

        self.app.push_screen(confirm("Delete this run", what, yes="Delete", no="Keep"), answer)

    def action_add_folder(self) -> None:
        def added(folder: str | None) -> None:
            if folder:
                self.notify(f"Runs under {folder} are listed from now on")
                self.reload()

        self.app.push_screen(
            AskName(
                "List the runs under a folder",
                "enter: look there (remembered) · escape: cancel",
                validate=lambda text: history.add_folder(Path(text)) if text else "type a folder",
            ),
            added,
        )

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Compare the ticked runs", "Curves, settings and figures side by side (c)", self.action_compare
        )
        yield SystemCommand("Filter the runs", "Rows that contain every word typed (/)", self.action_filter)
        yield SystemCommand("Look for runs under a folder", "Remembered (o)", self.action_add_folder)
