"""``sagaline sagas …`` and ``sagaline tracker``: choreographed sagas, as the tracker saw them.

A surface: the tracker (:mod:`sagaline.engine.tracker`) decides statuses, orders
timelines and says what a saga waits for; these commands only read and render.
``python -m sagaline.sagas_cli`` runs the ``sagas`` commands on their own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

import typer
from rich.markup import escape

from sagaline.console import make_console, saga_table, sagas_table
from sagaline.engine.tracker import GROUP, Tracker, declarations
from sagaline.model.choreography import SagaStatus
from sagaline.model.errors import SagalineError
from sagaline.worker_process import import_modules

T = TypeVar("T")
console = make_console()
sagas_app = typer.Typer(
    rich_markup_mode=None,
    help="Choreographed sagas across services, as the tracker recorded them.",
    no_args_is_help=True,
    add_completion=False,
)

TrackerDb = Annotated[
    str,
    typer.Option(
        "--db", envvar="SAGALINE_DB", help="The tracker's database URL (env SAGALINE_DB)."
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _read(db: str, action: Callable[[Tracker], Awaitable[T]]) -> T:
    """Run ``action`` on a reading tracker; a SagalineError becomes a message and exit 1."""

    async def go() -> T:
        async with Tracker(db=db) as tracker:
            return await action(tracker)

    try:
        return asyncio.run(go())
    except SagalineError as exc:
        raise _fail(str(exc)) from None


@sagas_app.command("list")
def list_sagas(
    db: TrackerDb,
    status: Annotated[
        str | None,
        typer.Option(help="Only sagas in this status, e.g. STALLED."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many sagas.")] = 50,
) -> None:
    """List sagas, the most recently started first."""
    wanted: SagaStatus | None = None
    if status is not None:
        try:
            wanted = SagaStatus(status.upper())
        except ValueError:
            names = ", ".join(s.value for s in SagaStatus)
            raise _fail(f"unknown status {status!r}; use one of {names}", 2) from None
    views = _read(db, lambda t: t.sagas(wanted, limit))
    console.print(sagas_table(views))


@sagas_app.command("show")
def show(correlation_id: str, db: TrackerDb) -> None:
    """Show a saga's timeline across services, its status and what it waits for."""
    view = _read(db, lambda t: t.saga(correlation_id))
    console.print(saga_table(view))
    for expected in view.waiting_for:
        console.print(f"waiting for {escape(str(expected))}")


@sagas_app.command("map")
def map_(db: TrackerDb) -> None:
    """Print who publishes and who consumes which event, as a Mermaid flowchart."""

    async def read(tracker: Tracker) -> str:
        return tracker.map()

    typer.echo(_read(db, read), nl=False)


def tracker(
    bus: Annotated[
        str,
        typer.Option(
            "--bus",
            help="The services' bus: nats://host:4222, amqp://..., sqlite:///bus.db or "
            "postgresql://...",
        ),
    ],
    db: TrackerDb,
    imports: Annotated[
        list[str],
        typer.Option(
            "--import",
            help="Module declaring Choreography(...) and @sagaline.on handlers (repeatable).",
        ),
    ],
) -> None:
    """Record every event on the bus into the tracker's database, until SIGTERM or SIGINT."""
    try:
        asyncio.run(_serve(bus, db, imports))
    except SagalineError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        pass


async def _serve(bus: str, db: str, imports: Sequence[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import_modules(imports)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Tracker(bus=bus, db=db) as recorder:
        ready = asyncio.create_task(recorder.ready(None))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            ready.result()  # the bus's configuration error, if it has one
            console.print(
                f"tracker listening as group {GROUP!r} to {len(recorder.topics)} topic(s) "
                f"({escape(', '.join(recorder.topics))}), {len(declarations())} saga "
                f"declaration(s)"
            )
            await stopping
        else:
            ready.cancel()
    console.print("tracker stopped")


if __name__ == "__main__":
    sagas_app()
