"""Rendering runs for people (Rich tables). Presentation only: no decisions are made here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from sagaline.model.records import EventRecord, RunRecord
from sagaline.model.status import RunStatus

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


def short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _detail(data: dict[str, Any]) -> str:
    parts = []
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        parts.append(f"{short_name(str(error.get('type', '')))}: {error['message']}")
    if data.get("attempts", 1) not in (0, 1):
        parts.append(f"{data['attempts']} attempts")
    if "attempt" in data:
        parts.append(f"attempt {data['attempt']}, retry in {data.get('retry_in')} s")
    if data.get("waits"):
        parts.append("waiting on " + ", ".join(str(w) for w in data["waits"]))
    if data.get("wake_at"):
        parts.append(f"until {datetime.fromtimestamp(data['wake_at'], UTC):%Y-%m-%d %H:%M:%S} UTC")
    for key in ("signal", "child"):
        if key in data:
            parts.append(f"{key} {data[key]}")
    if "owner" in data:
        parts.append(f"by worker {data['owner']} (lease epoch {data.get('epoch')})")
    for key in ("reason", "by"):
        if key in data:
            parts.append(f"{key}: {data[key]}")
    if data.get("status") and not parts:
        parts.append(f"from {data['status']}")
    return "; ".join(parts)


def timeline_table(run: RunRecord, events: Sequence[EventRecord]) -> Table:
    table = Table(
        title=f"run {run.run_id} · {short_name(run.workflow)} · {styled_status(run.status)}",
        title_justify="left",
    )
    table.add_column("+ms", justify="right", style="dim")
    table.add_column("event")
    table.add_column("step / compensation")
    table.add_column("detail", overflow="fold")
    start = events[0].at if events else run.created_at
    for e in events:
        name = e.data.get("compensation") or e.data.get("step") or ""
        table.add_row(
            f"{(e.at - start) * 1000:.1f}", e.type, short_name(str(name)), _detail(e.data)
        )
    return table


def runs_table(runs: Sequence[RunRecord]) -> Table:
    table = Table(title=f"{len(runs)} run(s), most recent first", title_justify="left")
    for column in ("run id", "workflow", "status", "created (UTC)", "error"):
        table.add_column(column, overflow="fold")
    for run in runs:
        error = (run.error or {}).get("message", "")
        table.add_row(
            run.run_id,
            short_name(run.workflow),
            styled_status(run.status),
            run.created.strftime("%Y-%m-%d %H:%M:%S"),
            str(error),
        )
    return table


def make_console() -> Console:
    return Console(highlight=False)
