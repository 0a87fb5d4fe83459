"""Rendering runs for people (Rich tables). Presentation only: no decisions are made here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sagaline.model import timeline
from sagaline.model.choreography import SagaStatus, SagaView, lanes
from sagaline.model.records import EventRecord, RunRecord
from sagaline.model.status import RunStatus
from sagaline.model.timeline import short_name
from sagaline.store.rows import UndecodableRun

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


def since_start(offset_ms: float) -> str:
    return "+" + timeline.duration(offset_ms / 1000)


def wall_clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def timeline_table(run: RunRecord, events: Sequence[EventRecord], wall: bool = False) -> Table:
    """``wall``: each event's UTC time instead of the time since the run's first event."""
    view = timeline.build(run, events)
    table = Table(
        title=f"run {escape(view.run_id)} · {escape(short_name(view.workflow))} · "
        f"{styled_status(run.status)}",
        title_justify="left",
    )
    table.add_column("time (UTC)" if wall else "since start", justify="right", style="dim")
    table.add_column("event")
    table.add_column("step")
    table.add_column("detail", overflow="fold")
    for entry in view.entries:
        when = wall_clock(entry.at) if wall else since_start(entry.offset_ms)
        # User text is shown literally: Rich markup in an error message is not interpreted.
        table.add_row(when, entry.type, escape(entry.subject), escape(entry.detail))
    return table


def runs_table(runs: Sequence[RunRecord], problems: dict[str, str] | None = None) -> Table:
    """``problems``: for parked runs, what is stuck (else the run's first error is shown)."""
    table = Table(title=f"{len(runs)} run(s), most recent first", title_justify="left")
    for column in ("run id", "workflow", "status", "created (UTC)", "error"):
        table.add_column(column, overflow="fold")
    for run in runs:
        error = (problems or {}).get(run.run_id) or (run.error or {}).get("message", "")
        damaged = isinstance(run, UndecodableRun)  # shown as such; the list goes on past it
        table.add_row(
            escape(run.run_id),
            escape(short_name(run.workflow)),
            "[bold red]undecodable[/bold red]" if damaged else styled_status(run.status),
            run.created.strftime("%Y-%m-%d %H:%M:%S"),
            escape(str(error)),
        )
    return table


SAGA_STYLE = {
    SagaStatus.COMPLETED: "green",
    SagaStatus.COMPENSATED: "yellow",
    SagaStatus.FAILED: "red",
    SagaStatus.STALLED: "bold red",
}
NO_SOURCE = "(no source)"


def styled_saga_status(status: SagaStatus) -> str:
    style = SAGA_STYLE.get(status, "cyan")
    return f"[{style}]{status.value}[/{style}]"


def sagas_table(views: Sequence[SagaView]) -> Table:
    table = Table(title=f"{len(views)} saga(s), most recently started first", title_justify="left")
    for column in ("correlation id", "saga", "status", "started (UTC)", "events", "waiting for"):
        table.add_column(column, overflow="fold")
    for view in views:
        table.add_row(
            escape(view.correlation_id),
            escape(view.name or ""),
            styled_saga_status(view.status),
            view.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(len(view.timeline)),
            escape("; ".join(str(x) for x in view.waiting_for)),
        )
    return table


def saga_table(view: SagaView) -> Table:
    """One row per event, in causal order, placed in the column of the service that sent it."""
    services = [s or NO_SOURCE for s in lanes(view.timeline)]
    name = f" · {escape(view.name)}" if view.name else ""
    table = Table(
        title=f"saga {escape(view.correlation_id)}{name} · {styled_saga_status(view.status)}",
        title_justify="left",
    )
    table.add_column("+ms", justify="right", style="dim")
    for service in services:
        table.add_column(escape(service), no_wrap=True)
    start = view.timeline[0].time if view.timeline else None
    for e in view.timeline:
        offset = (e.time - start).total_seconds() * 1000 if start is not None else 0.0
        cells = [""] * len(services)
        cells[services.index(e.source or NO_SOURCE)] = escape(e.type)
        table.add_row(f"{offset:.1f}", *cells)
    return table


def make_console() -> Console:
    return Console(highlight=False)
