"""``sagaline diagram``: a workflow as Mermaid, BPMN 2.0 or SVG.

A surface: :mod:`sagaline.diagrams` builds and draws the graph; this command only finds
its inputs — the imported workflow (or an ASL file), the paths its recorded runs took
(read through a client :class:`~sagaline.Engine`, never SQL), and with ``--run`` one
run's outcomes to overlay. The diagram goes to stdout as it is (never through Rich, which
would read brackets in names as markup); errors go to stderr, so a redirect to a file
never captures one.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sagaline.engine.engine import Engine
from sagaline.engine.registry import get_workflow
from sagaline.model.errors import SagalineError
from sagaline.model.records import StepRecord
from sagaline.worker_process import import_modules

if TYPE_CHECKING:
    from sagaline.diagrams import Graph

RUNS = 200
"""How many of the most recent runs are looked at for the paths they took."""


class Format(StrEnum):
    MERMAID = "mermaid"
    BPMN = "bpmn"
    SVG = "svg"


def diagram(
    workflow: Annotated[
        str | None,
        typer.Argument(help="The workflow's registered name (with --asl: the diagram's title)."),
    ] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="What to write.")] = (
        Format.MERMAID
    ),
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="SAGALINE_DB",
            help="Database URL: merge the paths its runs took (env SAGALINE_DB).",
        ),
    ] = None,
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Module defining the workflow and steps (repeatable)."),
    ] = None,
    asl: Annotated[
        Path | None, typer.Option("--asl", help="An Amazon States Language definition (JSON).")
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Overlay this run's outcomes (svg); needs --db.")
    ] = None,
    runs: Annotated[int, typer.Option(help="How many recent runs to merge.")] = RUNS,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Draw a workflow (or an ASL machine) as Mermaid, BPMN 2.0 XML or SVG."""
    try:
        import_modules(imports or [])
        graph, shown = _inputs(workflow, asl, db, run, runs)
    except SagalineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    from sagaline.diagrams import bpmn, mermaid, notes_of, outcomes_of, svg  # on use only

    outcomes = None if shown is None else outcomes_of(shown)
    notes = None if shown is None else notes_of(shown)  # "N attempts", as the web UI shows

    text = {
        Format.MERMAID: lambda: mermaid(graph),
        Format.BPMN: lambda: bpmn(graph),
        Format.SVG: lambda: svg(graph, outcomes, notes=notes),
    }[format]()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, "utf-8")


def _inputs(
    workflow: str | None, asl: Path | None, db: str | None, run: str | None, limit: int
) -> tuple[Graph, list[StepRecord] | None]:
    """The graph to draw, and the step records of the run drawn over it (``--run``)."""
    if run is not None and db is None:
        raise SagalineError("--run reads the run from a database: give --db URL")
    from sagaline.diagrams import asl_graph, workflow_graph

    if asl is not None:
        graph = asl_graph(asl, name=workflow)
        shown = _read(db, None, run, limit)[1] if db is not None else None
        return graph, shown
    if workflow is None:
        raise SagalineError("name a workflow (sagaline diagram WORKFLOW) or give --asl FILE")
    wdef = get_workflow(workflow)
    paths, shown = _read(db, wdef.name, run, limit) if db is not None else ([], None)
    merged = [*paths, shown] if shown is not None else paths
    return workflow_graph(wdef, merged), shown


def _read(
    url: str, workflow: str | None, run: str | None, limit: int
) -> tuple[list[list[StepRecord]], list[StepRecord] | None]:
    """The step records of the workflow's recent settled runs, and of ``run``."""

    async def go() -> tuple[list[list[StepRecord]], list[StepRecord] | None]:
        async with Engine(url, worker=False, create=False) as engine:
            paths: list[list[StepRecord]] = []
            if workflow is not None:
                for record in await engine.list_runs(None, limit):
                    if record.workflow == workflow and record.status.is_settled:
                        paths.append(await engine.steps(record.run_id))
            shown = None
            if run is not None:
                await engine.get_run(run)  # a run that is not there says so
                shown = await engine.steps(run)
            return paths, shown

    return asyncio.run(go())


if __name__ == "__main__":
    typer.run(diagram)
