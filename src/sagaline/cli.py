"""The ``sagaline`` command. A surface: it calls the engine and renders; nothing more."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.markup import escape

from sagaline import worker_cli
from sagaline.asl_cli import asl_app
from sagaline.codecs import from_env
from sagaline.console import make_console, runs_table, styled_status, timeline_table
from sagaline.diagram_cli import diagram
from sagaline.engine.engine import DEFAULT_URL, Engine
from sagaline.locks_cli import locks_app
from sagaline.model.advice import advise
from sagaline.model.errors import SagalineError, UndecodableRowError
from sagaline.model.rates import QueueRate, describe, parse_rate
from sagaline.model.records import RunRecord
from sagaline.model.status import RunStatus
from sagaline.model.urls import redact
from sagaline.plain_usage import PlainUsage
from sagaline.sagas_cli import sagas_app, tracker
from sagaline.serve_cli import serve, tokens_app
from sagaline.store import open_store
from sagaline.store.rows import UndecodableRun
from sagaline.tasks_cli import tasks_app

T = TypeVar("T")
console = make_console()
app = typer.Typer(
    rich_markup_mode=None,
    help="sagaline: durable sagas. Inspect and operate runs, or run the demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(rich_markup_mode=None, help="See and operate runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
db_app = typer.Typer(
    rich_markup_mode=None, help="The database: schema migrations and checks.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
queues_app = typer.Typer(
    rich_markup_mode=None,
    help="Queues and their limits: runs in flight, and claims a second.",
    no_args_is_help=True,
)
app.add_typer(queues_app, name="queues")

RunIdArgument = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="The run's id, as `sagaline runs list` shows it.")
]


ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why, for the audit trail.")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who, for the audit trail.")]
IDLE_SECONDS = 60.0
"""A run nobody wrote to for this long, unfinished, probably has no worker."""
DEFAULT_DB = os.environ.get("SAGALINE_DB", DEFAULT_URL)
DbOption = Annotated[
    str, typer.Option("--db", help="Database URL (env SAGALINE_DB).", show_default=True)
]


def _run(url: str, action: Callable[[Engine], Awaitable[T]], create: bool = False) -> T:
    """Run ``action`` on a client engine; a SagalineError becomes a message and exit code 1.

    Commands never create a database (a mistyped --db would leave an empty one behind),
    except ``db migrate``, whose job it is."""

    async def go() -> T:
        async with Engine(url, worker=False, create=create, payload_codec=from_env()) as engine:
            return await action(engine)

    try:
        return asyncio.run(go())
    except SagalineError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


demo_app = typer.Typer(
    rich_markup_mode=None,
    help="Run the order saga three ways on SQLite: happy, declined, and crashed mid-saga "
    "(`sagaline demo choreography`: the same saga across four service processes).",
    invoke_without_command=True,
)
app.add_typer(demo_app, name="demo")


@demo_app.callback()
def demo(
    ctx: typer.Context,
    db: Annotated[str, typer.Option("--db", help="Database URL.")] = "sqlite:///sagaline-demo.db",
) -> None:
    """Run the order saga three ways on SQLite: happy, declined, and crashed mid-saga."""
    if ctx.invoked_subcommand is not None:
        return
    from sagaline.demo.run import run_demo

    try:
        ok = asyncio.run(run_demo(db, console))
    except SagalineError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    raise typer.Exit(0 if ok else 1)


@demo_app.command("choreography")
def demo_choreography(
    bus: Annotated[
        str | None,
        typer.Option("--bus", help="Bus URL (default: an embedded broker in the folder)."),
    ] = None,
    folder: Annotated[
        str, typer.Option("--folder", help="Where the services' databases go.")
    ] = "sagaline-choreography-demo",
) -> None:
    """Run the order saga as choreography: four service processes, four databases, one
    bus, and the tracker's view across them (completed, compensated, crashed)."""
    from pathlib import Path

    from sagaline.demo.choreography import run_choreography_demo

    try:
        ok = asyncio.run(run_choreography_demo(Path(folder).resolve(), bus, console))
    except SagalineError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    raise typer.Exit(0 if ok else 1)


@runs_app.command("list", cls=PlainUsage)
def list_runs(
    db: DbOption = DEFAULT_DB,
    status: Annotated[
        str | None, typer.Option(help="Only runs with this status, e.g. COMPENSATION_FAILED.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 50,
) -> None:
    """List runs, most recent first."""
    wanted: RunStatus | None = None
    if status is not None:
        try:
            wanted = RunStatus(status.upper())
        except ValueError:
            names = ", ".join(s.value for s in RunStatus)
            console.print(
                f"[red]error:[/red] unknown status {escape(repr(status))}; use one of {names}"
            )
            raise typer.Exit(2) from None

    async def read(engine: Engine) -> tuple[list[RunRecord], dict[str, str]]:
        runs = await engine.list_runs(wanted, limit)
        problems = {}
        for run in runs:  # say what is stuck or missing, not only the first error
            if isinstance(run, UndecodableRun):
                continue
            try:
                steps = await engine.steps(run.run_id) if run.status.is_parked else []
            except UndecodableRowError as exc:
                problems[run.run_id] = f"undecodable: {exc.reason}"
                continue
            advice = advise(run, steps, idle=_idle(run), db=redact(db))
            if advice.problem:
                problems[run.run_id] = "; ".join([advice.problem, *advice.actions[:1]])
        return runs, problems

    runs, problems = _run(db, read)
    console.print(runs_table(runs, problems))


def _idle(run: RunRecord) -> bool:
    return time.time() - run.updated_at > IDLE_SECONDS


@runs_app.command("show", cls=PlainUsage)
def show(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_DB,
    wall: Annotated[
        bool, typer.Option("--wall", help="Each event's UTC time, not the time since the start.")
    ] = False,
) -> None:
    """Show a run's timeline: every transition, with timings, then what to do next."""

    async def read(engine: Engine) -> None:
        run = await engine.get_run(run_id)
        console.print(timeline_table(run, await engine.history(run_id), wall=wall))
        idle = _idle(run)
        try:
            steps = await engine.steps(run_id)
        except UndecodableRowError as exc:  # the timeline above was still worth showing
            console.print(f"steps: undecodable: {escape(exc.reason)}")
            console.print(f"  look the database over: sagaline db check --db {escape(redact(db))}")
            return
        advice = advise(run, steps, idle=idle, db=redact(db))
        if advice.problem:
            console.print(f"[bold]needs attention:[/bold] {escape(advice.problem)}")
        elif run.error:
            console.print(f"error: {escape(str(run.error.get('message')))}")
        if advice.actions:
            console.print("[bold]next:[/bold]")
        for action in advice.actions:
            console.print(f"  {escape(action)}")

    _run(db, read)


@runs_app.command("cancel", cls=PlainUsage)
def cancel(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_DB,
    reason: ReasonOption = None,
    by: ByOption = None,
) -> None:
    """Cancel a run: it stops at its next step and its completed steps are compensated."""
    run = _run(db, lambda e: e.cancel(run_id, reason=reason, by=by))
    console.print(f"cancel requested for {escape(run_id)} (now {styled_status(run.status)})")
    _worker_hint(run, db)


@runs_app.command("retry", cls=PlainUsage)
def retry(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_DB,
    reason: ReasonOption = None,
    by: ByOption = None,
) -> None:
    """Try a parked run again (COMPENSATION_FAILED, FAILED_AFTER_PIVOT, BLOCKED)."""
    run = _run(db, lambda e: e.retry(run_id, reason=reason, by=by))
    console.print(f"{escape(run_id)} will be retried by a worker (now {styled_status(run.status)})")
    _worker_hint(run, db)


@runs_app.command("skip", cls=PlainUsage)
def skip(
    run_id: RunIdArgument,
    reason: Annotated[str, typer.Option(help="Why the compensation is resolved by hand.")],
    by: Annotated[str, typer.Option(help="Who resolved it.")] = os.environ.get("USER", "operator"),
    db: DbOption = DEFAULT_DB,
) -> None:
    """Mark a failed compensation as resolved by hand; unwinding then goes on."""
    run = _run(db, lambda e: e.skip_compensation(run_id, reason=reason, by=by))
    console.print(f"compensation skipped for {escape(run_id)} (now {styled_status(run.status)})")
    _worker_hint(run, db)


def _worker_hint(run: RunRecord, db: str) -> None:
    """An operator action only marks the run; without a worker it would sit unchanged, and
    nothing else would tell the operator so."""
    if run.status.is_settled:
        return
    console.print(
        f"a worker carries it on; if none runs: sagaline worker --import MODULE "
        f"--db {escape(redact(db))}    (MODULE: where {escape(run.workflow)} is defined)"
    )


@runs_app.command("signal", cls=PlainUsage)
def signal(
    run_id: RunIdArgument,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The signal's name.")],
    payload: Annotated[
        str, typer.Option(help='The signal\'s payload as JSON, e.g. \'{"by": "ana"}\'.')
    ] = "null",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Send signal NAME to a run; kept until the workflow's wait_for_signal(NAME) takes it."""
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as exc:
        console.print(
            f"[red]error:[/red] --payload is not JSON ({escape(str(exc))}); quote it for the shell"
        )
        raise typer.Exit(2) from None
    _run(db, lambda e: e.signal(run_id, name, value))
    console.print(escape(f"signal {name!r} sent to {run_id}"))


@db_app.command("check", cls=PlainUsage)
def check(db: DbOption = DEFAULT_DB) -> None:
    """Look the database over without writing to it; exit code 1 if anything is wrong.

    SQLite: its integrity check over every page, and the schema. PostgreSQL (which checks
    its own pages): the schema's version, each table present and readable, each index
    valid, and the server's count of checksum failures.
    """

    async def go() -> list[str]:
        store = open_store(db)
        try:
            return await store.check()
        finally:
            await store.aclose()

    where = redact(db)
    try:
        problems = asyncio.run(go())
    except SagalineError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if not problems:
        console.print(escape(f"{where}: ok"))
        return
    console.print(f"[red]{escape(where)}: {len(problems)} problem(s)[/red]")
    for problem in problems:
        console.print(f"  {escape(problem)}")
    console.print(
        "stop the workers and restore the database from a backup (or, for a schema that "
        "is only old, run `sagaline db migrate`)"
    )
    raise typer.Exit(1)


@db_app.command("migrate", cls=PlainUsage)
def migrate(db: DbOption = DEFAULT_DB) -> None:
    """Create the schema or bring it up to date (engines also do this when they open)."""
    _run(db, lambda e: asyncio.sleep(0), create=True)
    console.print(escape(f"{db}: schema is up to date"))


@queues_app.command("limit", cls=PlainUsage)
def queue_limit(
    queue: Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name.")],
    limit: Annotated[
        int | None,
        typer.Argument(
            metavar="LIMIT", help="Most runs in flight at once; omit to remove (without --rate)."
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate", help="Most claims of runs and tasks: 20/s, 600/m or 100/h; none removes it."
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option("--burst", help="With --rate: most at once (default: a second's worth)."),
    ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Cap how many runs of QUEUE are in flight, or how often they are claimed, across all
    workers and hosts.

    With --rate and no LIMIT, the concurrency limit is left as it is.
    """
    if rate is None:
        if burst is not None:
            _usage_error("--burst needs --rate, e.g. --rate 20/s --burst 5")
        _run(db, lambda e: e.set_queue_limit(queue, limit))
        console.print(
            escape(f"queue {queue!r}: " + (f"at most {limit} in flight" if limit else "no limit"))
        )
        return
    try:
        per_second = parse_rate(rate)
    except ValueError as exc:
        _usage_error(str(exc))
    if burst is not None and (per_second is None or burst < 1):
        _usage_error(f"bad --burst {burst}: give a whole number of at least 1, with a rate")

    async def apply(engine: Engine) -> QueueRate | None:
        if limit is not None:
            await engine.set_queue_limit(queue, limit)
        await engine.set_queue_rate(queue, per_second, burst)
        return (await engine.queue_rates()).get(queue)

    now = _run(db, apply)
    said = [f"at most {limit} in flight"] if limit is not None else []
    said.append("no rate" if now is None else f"at most {describe(now)}")
    console.print(escape(f"queue {queue!r}: " + ", ".join(said)))


def _usage_error(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)


@queues_app.command("list", cls=PlainUsage)
def queue_list(db: DbOption = DEFAULT_DB) -> None:
    """Queues that have a concurrency limit or a rate limit."""

    async def read(engine: Engine) -> tuple[dict[str, int], dict[str, QueueRate]]:
        return await engine.queue_limits(), await engine.queue_rates()

    limits, rates = _run(db, read)
    for name in sorted(set(limits) | set(rates)):
        limit = limits.get(name)
        rate = rates.get(name)
        shown = "-" if rate is None else describe(rate)
        console.print(escape(f"{name}\t{'-' if limit is None else limit}\t{shown}"))
    if not limits and not rates:
        console.print("no queue has a limit")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
    help=worker_cli.DESCRIPTION + " Options: sagaline worker --help.",
)
def worker(ctx: typer.Context) -> None:
    """The options are :mod:`sagaline.worker_cli`'s, parsed there: ``sagaline worker``
    reaches that module without this one (see :mod:`sagaline.entry`)."""
    raise typer.Exit(worker_cli.main(ctx.args))


app.add_typer(sagas_app, name="sagas")
app.add_typer(locks_app, name="locks")
app.add_typer(tasks_app, name="tasks")
app.command("tracker")(tracker)
app.add_typer(tokens_app, name="tokens")
app.command("serve")(serve)
app.add_typer(asl_app, name="asl")
app.command("diagram")(diagram)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
