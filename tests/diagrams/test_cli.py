"""``sagaline diagram``: the command over a real SQLite database of real runs."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import typer
from typer.testing import CliRunner

from sagaline import Engine
from sagaline.demo.order import Order, order_saga
from sagaline.diagram_cli import diagram
from tests.diagrams import flows

app = typer.Typer()
app.command()(diagram)
runner = CliRunner()


def seed(tmp_path: Path) -> str:
    """A database with one declined order (compensated) and one branching run."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"

    async def go() -> None:
        async with Engine(url) as engine:
            ledger = str(tmp_path / "ledger.jsonl")
            await engine.start(order_saga, Order("o-1", 900, ledger, decline=True), run_id="o-1")
            await engine.start(flows.branching, "none", run_id="b-1")
            await engine.wait("o-1", timeout=60)
            await engine.wait("b-1", timeout=60)

    asyncio.run(go())
    return url


def test_mermaid_of_a_workflow_merges_its_recorded_runs(tmp_path: Path) -> None:
    url = seed(tmp_path)
    args = ["diagrams.branching", "--import", "tests.diagrams.flows", "--db", url]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("---\ntitle:") and "flowchart LR" in result.output
    assert "diagrams.backorder" in result.output


def test_svg_overlays_one_runs_outcomes(tmp_path: Path) -> None:
    url = seed(tmp_path)
    out = tmp_path / "order.svg"
    args = ["demo.order_saga", "--import", "sagaline.demo.order", "--format", "svg"]
    result = runner.invoke(app, [*args, "--db", url, "--run", "o-1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    classes = [str(g.get("class")) for g in ET.parse(out).getroot().iter() if g.get("data-node")]
    assert sum("outcome-compensated" in c for c in classes) == 2
    assert sum("outcome-failed" in c for c in classes) == 1


def test_bpmn_of_an_asl_file(tmp_path: Path) -> None:
    path = tmp_path / "trip.json"
    path.write_text(json.dumps(flows.asl_saga()), "utf-8")
    result = runner.invoke(app, ["Trip", "--asl", str(path), "--format", "bpmn"])
    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.output)
    assert root.tag == "{http://www.omg.org/spec/BPMN/20100524/MODEL}definitions"


def test_an_unknown_workflow_or_missing_database_is_a_message_and_exit_1(tmp_path: Path) -> None:
    unknown = runner.invoke(app, ["no.such.workflow"])
    assert unknown.exit_code == 1 and "not registered" in unknown.output
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    args = ["demo.order_saga", "--import", "sagaline.demo.order", "--db", missing]
    absent = runner.invoke(app, args)
    assert absent.exit_code == 1 and "error:" in absent.output
    assert not (tmp_path / "nothing.db").exists()


def test_svg_of_a_run_notes_a_step_that_took_several_attempts(tmp_path: Path) -> None:
    """As the web UI's drawing does: "3 attempts" beside the step that retried."""
    url = f"sqlite:///{tmp_path / 'retried.db'}"
    flows.FLAKY_FAILS["s-1"] = 2

    async def go() -> None:
        async with Engine(url) as engine:
            await engine.start(flows.retried, "s-1", run_id="r-1")
            await engine.wait("r-1", timeout=60)

    asyncio.run(go())
    out = tmp_path / "retried.svg"
    args = ["diagrams.retried", "--import", "tests.diagrams.flows", "--format", "svg"]
    result = runner.invoke(app, [*args, "--db", url, "--run", "r-1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 attempts" in out.read_text("utf-8")
