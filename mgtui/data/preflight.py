"""What a run checks of its data before any model loads, in one place: `model-garden train` (and
its --dry-run) and the form's Start. The same scan and the same row-to-tokens path as the engine,
with the tokenizers library only: no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .scan import DatasetError, ScanReport, scan
from .tokens import check_rows

if TYPE_CHECKING:
    from ..settings import Resolved


@dataclass
class Checked:
    report: ScanReport
    warnings: list[str] = field(default_factory=list)  # rows that will be skipped, said before the run


def preflight(settings: Resolved) -> Checked:
    """Read and check every row as the engine will (format, columns, skips, the chat template, and
    what truncation leaves to learn). Raises DatasetError when the run would stop."""
    report = scan(
        settings["dataset"], settings["dataset_format"], columns=settings["columns"], method=settings["method"]
    )
    checked = Checked(report, [report.skipped_line] if report.skipped_line else [])
    from ..reward_check import rewards_problem

    problem = rewards_problem(settings, None if report.hub else report.columns)
    if problem:
        raise DatasetError(problem)
    if report.hub:
        return checked
    lost = check_rows(
        settings["dataset"],
        report.format,
        settings["base_model"],
        settings["chat_template"],
        settings["max_seq_length"],
        settings["train_on_responses_only"],
        settings["columns"],
    )
    if lost:
        checked.warnings.append(lost)
    return checked
