"""``sagaline asl validate FILE`` and ``sagaline asl run FILE --input JSON``.

A surface: validation and interpretation live in :mod:`sagaline.definitions.asl`. ``run``
starts the machine on a durable engine (``--db``, or a database in a temporary folder),
waits for it, then prints its states as a timeline and its output. The timeline is
rebuilt by interpreting the stored definition again over the run's recorded task
results, which is what replay after a crash does too.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sagaline.codecs import from_env
from sagaline.console import make_console
from sagaline.engine.engine import Engine
from sagaline.model.errors import RunFailedError, SagalineError
from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind, StepStatus
from sagaline.worker_process import import_modules

if TYPE_CHECKING:
    from sagaline.definitions.asl import TaskRequest
    from sagaline.definitions.asl.host import Event

console = make_console()
asl_app = typer.Typer(
    rich_markup_mode=None,
    help="Amazon States Language machines on the durable engine.",
    no_args_is_help=True,
    add_completion=False,
)


@asl_app.command("validate")
def validate_command(file: Annotated[Path, typer.Argument(help="The ASL JSON file.")]) -> None:
    """List every problem of FILE with its JSON pointer; exit 1 if there is any."""
    from sagaline.definitions.asl import validate  # loaded for `asl` commands only

    problems = validate(file)
    for problem in problems:
        console.print(f"[red]{escape(problem.pointer or '/')}[/red]: {escape(problem.message)}")
    if problems:
        raise typer.Exit(1)
    console.print(f"[green]{escape(str(file))} is valid[/green]")


@asl_app.command("run")
def run_command(
    file: Annotated[Path, typer.Argument(help="The ASL JSON file.")],
    input: Annotated[str, typer.Option("--input", help="The execution's input, as JSON.")] = "{}",
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Module defining the steps it calls (repeatable)."),
    ] = None,
    db: Annotated[
        str | None, typer.Option("--db", envvar="SAGALINE_DB", help="Database URL.")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="The run's id.")] = None,
) -> None:
    """Run FILE on INPUT durably; print its states as a timeline, then its output."""
    from sagaline.definitions.asl import load

    try:
        value = json.loads(input)
        import_modules(imports or [])
        machine = load(file, name=f"asl.{file.stem}")
    except (ValueError, SagalineError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    with tempfile.TemporaryDirectory() as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'asl.db'}"
        code = asyncio.run(_run(url, machine, value, run_id or uuid.uuid4().hex))
    raise typer.Exit(code)


async def _run(url: str, machine: Any, value: Any, run_id: str) -> int:
    async with Engine(url, payload_codec=from_env()) as engine:
        handle = await engine.start(machine, value, run_id=run_id)
        failed: RunFailedError | None = None
        output: Any = None
        try:
            output = await handle.result()
        except RunFailedError as exc:
            failed = exc
        run = await engine.get_run(run_id)
        steps = await engine.steps(run_id)
    stored = json.loads(run.input)
    events = await _timeline(stored[1], stored[0], steps)
    console.print(_table(run_id, events))
    if failed is not None:
        console.print(f"[red]{run.status.value}[/red]: {escape(json.dumps(run.error))}")
        return 1
    console.print(json.dumps(output, indent=2))
    return 0


async def _timeline(doc: dict[str, Any], value: Any, steps: list[StepRecord]) -> list[Event]:
    from sagaline.definitions.asl import AslError, PureHost, execute

    recorded = [s for s in sorted(steps, key=lambda s: s.seq) if s.kind is StepKind.STEP]

    async def replay(request: TaskRequest) -> Any:
        if not recorded:
            raise AslError("States.Runtime", "no recorded result")
        rec = recorded.pop(0)
        if rec.status is not StepStatus.SUCCEEDED:
            error = rec.error or {}
            raise AslError(str(error.get("type", "")).rsplit(".", 1)[-1], error.get("message"))
        result = json.loads(rec.output or b"null")
        if rec.name == "sagaline.asl.resource":
            if "Output" not in result:
                raise AslError(result.get("Error"), result.get("Cause"))
            return result["Output"]
        return result

    outcome = await execute(doc, value, PureHost(handler=replay))
    return outcome.events


def _table(run_id: str, events: list[Event]) -> Table:
    table = Table(title=f"ASL run {run_id}", title_justify="left")
    for column in ("#", "event", "state", "detail"):
        table.add_column(column)
    for event in events:
        detail = event.details.get("error") or event.details.get("output")
        shown = "" if detail is None else json.dumps(detail)
        table.add_row(str(event.id), event.type, escape(event.name or ""), escape(shown[:80]))
    return table


if __name__ == "__main__":
    asl_app()
