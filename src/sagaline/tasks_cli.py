"""``sagaline tasks list``: task steps waiting for an external worker, or out with one.

A surface: :class:`~sagaline.engine.tasks.TaskService` reads the tasks; this renders them
with their age, so an operator sees a queue no worker serves, or a worker that went quiet.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sagaline.codecs import from_env
from sagaline.console import make_console
from sagaline.engine.engine import DEFAULT_URL, Engine
from sagaline.engine.tasks import TaskView
from sagaline.model.errors import SagalineError
from sagaline.model.timeline import duration
from sagaline.plain_usage import PlainUsage

console = make_console()
tasks_app = typer.Typer(
    rich_markup_mode=None,
    help="Task steps that external workers claim over HTTP.",
    no_args_is_help=True,
    add_completion=False,
)
DEFAULT_DB = os.environ.get("SAGALINE_DB", DEFAULT_URL)


def _read(db: str, queue: str | None) -> list[TaskView]:
    async def go() -> list[TaskView]:
        async with Engine(db, worker=False, create=False, payload_codec=from_env()) as engine:
            return await engine.tasks.list(queue)

    try:
        return asyncio.run(go())
    except SagalineError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def tasks_table(tasks: list[TaskView], now: float) -> Table:
    table = Table(title=f"{len(tasks)} task(s), oldest first", title_justify="left")
    for column in ("task", "run id", "step", "queue", "state", "attempt", "worker", "age", "lease"):
        table.add_column(column, overflow="fold")
    for t in tasks:
        if t.lease_until is None:
            lease = ""
        elif t.lease_until >= now:
            lease = f"{duration(t.lease_until - now)} left"
        else:
            lease = f"expired {duration(now - t.lease_until)} ago"
        table.add_row(
            escape(t.id),
            escape(t.run_id),
            escape(t.step),
            escape(t.queue),
            t.status,
            str(t.attempt),
            escape(t.worker or ""),
            duration(max(0.0, now - t.created_at)),
            lease,
        )
    return table


@tasks_app.command("list", cls=PlainUsage)
def list_tasks(
    db: Annotated[
        str, typer.Option("--db", help="Database URL (env SAGALINE_DB).", show_default=True)
    ] = DEFAULT_DB,
    queue: Annotated[str | None, typer.Option("--queue", help="Only this task queue.")] = None,
) -> None:
    """Tasks waiting for a worker and tasks a worker has claimed, with their age."""
    tasks = _read(db, queue)
    if not tasks:
        where = f" on queue {queue!r}" if queue else ""
        console.print(escape(f"no tasks are waiting or claimed{where}"))
        return
    console.print(tasks_table(sorted(tasks, key=lambda t: t.created_at), time.time()))
