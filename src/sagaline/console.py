"""Rendering runs for people (Rich tables). Presentation only: no decisions are made here."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sagaline.model import timeline
from sagaline.model.records import EventRecord, RunRecord
from sagaline.model.status import RunStatus
from sagaline.model.timeline import short_name

STATUS_STYLE = {
    RunStatus.COMPLETED: "green",
    RunStatus.COMPENSATED: "yellow",
    RunStatus.CANCELLED: "yellow",
    RunStatus.FAILED: "red",
    RunStatus.COMPENSATION_FAILED: "bold red",
    RunStatus.FAILED_AFTER_PIVOT: "bold red",
    RunStatus.BLOCKED: "bold red",
}


def styled_status(status: RunStatus) -> str:
    style = STATUS_STYLE.get(status, "cyan")
    return f"[{style}]{status.value}[/{style}]"


def timeline_table(run: RunRecord, events: Sequence[EventRecord]) -> Table:
    view = timeline.build(run, events)
    table = Table(
        title=f"run {view.run_id} · {short_name(view.workflow)} · {styled_status(run.status)}",
        title_justify="left",
    )
    table.add_column("+ms", justify="right", style="dim")
    table.add_column("event")
    table.add_column("step / compensation")
    table.add_column("detail", overflow="fold")
    for entry in view.entries:
        # User text is shown literally: Rich markup in an error message is not interpreted.
        table.add_row(
            f"{entry.offset_ms:.1f}", entry.type, escape(entry.subject), escape(entry.detail)
        )
    return table


def runs_table(runs: Sequence[RunRecord]) -> Table:
    table = Table(title=f"{len(runs)} run(s), most recent first", title_justify="left")
    for column in ("run id", "workflow", "status", "created (UTC)", "error"):
        table.add_column(column, overflow="fold")
    for run in runs:
        error = (run.error or {}).get("message", "")
        table.add_row(
            escape(run.run_id),
            escape(short_name(run.workflow)),
            styled_status(run.status),
            run.created.strftime("%Y-%m-%d %H:%M:%S"),
            escape(str(error)),
        )
    return table


def make_console() -> Console:
    return Console(highlight=False)
