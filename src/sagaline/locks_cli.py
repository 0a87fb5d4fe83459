"""``sagaline locks …``: who holds which business key, and who waits for it.

A surface: the store keeps the queues (:mod:`sagaline.engine.locks`); these commands only
read and render, so an operator can see who blocks whom.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from sagaline.codecs import from_env
from sagaline.console import make_console, styled_status
from sagaline.engine.engine import DEFAULT_URL, Engine
from sagaline.model.errors import SagalineError
from sagaline.model.locks import LockRequest
from sagaline.model.status import RunStatus
from sagaline.model.timeline import duration
from sagaline.plain_usage import PlainUsage

T = TypeVar("T")
console = make_console()
locks_app = typer.Typer(
    rich_markup_mode=None,
    help="Semantic locks: which saga holds which business key, and who waits for it.",
    no_args_is_help=True,
    add_completion=False,
)
Db = Annotated[str, typer.Option("--db", help="Database URL (env SAGALINE_DB).", show_default=True)]
DEFAULT_DB = os.environ.get("SAGALINE_DB", DEFAULT_URL)


def _read(db: str, action: Callable[[Engine], Awaitable[T]]) -> T:
    async def go() -> T:
        async with Engine(db, worker=False, create=False, payload_codec=from_env()) as engine:
            return await action(engine)

    try:
        return asyncio.run(go())
    except SagalineError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _status(request: LockRequest) -> str:
    if request.run_status is None:
        return "(run gone)"
    try:
        status = RunStatus(request.run_status)
    except ValueError:
        return escape(request.run_status)
    shown = styled_status(status)
    if status.is_parked and request.held:
        return f"{shown} (parked: it holds the key until an operator ends the run)"
    return shown


def _table(title: str, requests: Sequence[LockRequest], now: float) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("key", "run id", "mode", "state", "for", "run status"):
        table.add_column(column, overflow="fold")
    for r in requests:
        since = r.granted_at if r.granted_at is not None else r.requested_at
        state = "holds" if r.held else "waits"
        table.add_row(
            escape(r.key),
            escape(r.run_id),
            r.mode,
            state,
            duration(max(0.0, now - since)),
            _status(r),
        )
    return table


@locks_app.command("list", cls=PlainUsage)
def list_locks(
    db: Db = DEFAULT_DB,
    key: Annotated[
        str | None, typer.Option("--key", help="Only keys starting with this, e.g. order:")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many requests.")] = 200,
) -> None:
    """Every lock held or waited for, by key: holders first, then waiters in order."""
    requests = _read(db, lambda e: e.list_locks(key, limit))
    live = [r for r in requests if r.refused is None]
    if not live:
        where = f" starting with {key!r}" if key else ""
        console.print(f"no locks are held or waited for{escape(where)}")
        return
    ordered = sorted(live, key=lambda r: (r.key, not r.held))
    console.print(_table(f"{len(ordered)} lock request(s)", ordered, time.time()))


@locks_app.command("show", cls=PlainUsage)
def show_lock(
    key: Annotated[str, typer.Argument(metavar="KEY", help="The business key, e.g. order:42.")],
    db: Db = DEFAULT_DB,
) -> None:
    """Who holds KEY and who waits for it, in the order they will get it."""
    info = _read(db, lambda e: e.locks(key))
    if info.free:
        console.print(f"{escape(repr(key))} is free: nobody holds it or waits for it")
        return
    now = time.time()
    title = escape(f"{key!r}: {len(info.holders)} holder(s)")
    console.print(_table(title, info.holders, now))
    if info.waiters:
        console.print(_table(f"{len(info.waiters)} waiting, in order", info.waiters, now))
    else:
        console.print("nobody waits for it")
