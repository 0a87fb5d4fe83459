"""The graph model: declared steps merged with recorded runs, ASL machines, outcomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sagaline import Engine
from sagaline.demo.order import Order, order_saga
from sagaline.diagrams import Graph, asl_graph, declared_steps, outcomes_of, workflow_graph
from sagaline.diagrams.layout import layout
from sagaline.engine.registry import WorkflowDef
from sagaline.model.records import StepRecord
from tests.diagrams import flows


async def run(tmp_path: Path, wf: WorkflowDef[Any, Any], arg: Any, run_id: str) -> list[StepRecord]:
    """Run ``wf`` for real on SQLite and return its step records, as a diagram reads them."""
    async with Engine(f"sqlite:///{tmp_path / 'runs.db'}") as engine:
        await engine.start(wf, arg, run_id=run_id)
        await engine.wait(run_id, timeout=60)
        return await engine.steps(run_id)


def order(tmp_path: Path, order_id: str, decline: bool = False) -> Order:
    return Order(order_id, 1250, str(tmp_path / "ledger.jsonl"), decline=decline)


def flow(graph: Graph) -> set[tuple[str, str, int]]:
    """The forward edges as (source name, target name, runs)."""
    return {
        (graph.node(e.source).name, graph.node(e.target).name, e.runs)
        for e in graph.edges
        if e.kind == "flow"
    }


def edges(graph: Graph, kind: str) -> list[tuple[str, str]]:
    return [
        (graph.node(e.source).name, graph.node(e.target).name)
        for e in graph.edges
        if e.kind == kind
    ]


def test_declared_steps_are_read_from_the_source_in_order() -> None:
    names = [s.name for s in declared_steps(order_saga)]
    assert names == [
        "demo.create_order",
        "demo.reserve_inventory",
        "demo.charge_payment",
        "demo.ship_order",
    ]


def test_a_workflow_that_never_ran_is_its_source_order_with_undo_line_up_to_the_pivot() -> None:
    graph = workflow_graph(order_saga)
    assert flow(graph) == {
        ("start", "demo.create_order", 0),
        ("demo.create_order", "demo.reserve_inventory", 0),
        ("demo.reserve_inventory", "demo.charge_payment", 0),
        ("demo.charge_payment", "demo.ship_order", 0),
        ("demo.ship_order", "completed", 0),
    }
    assert [n.name for n in graph.nodes if n.pivot] == ["demo.ship_order"]
    assert edges(graph, "undo") == [
        ("demo.create_order", "sagaline.demo.order.cancel_order"),
        ("demo.reserve_inventory", "sagaline.demo.order.release_inventory"),
        ("demo.charge_payment", "sagaline.demo.order.refund_payment"),
    ]
    assert edges(graph, "unwind") == [  # the reverse of the steps', ending the saga
        ("sagaline.demo.order.release_inventory", "sagaline.demo.order.cancel_order"),
        ("sagaline.demo.order.refund_payment", "sagaline.demo.order.release_inventory"),
        ("sagaline.demo.order.cancel_order", "compensated"),
    ]


async def test_recorded_runs_add_the_paths_taken_and_count_them(tmp_path: Path) -> None:
    reserved = await run(tmp_path, flows.branching, "a", "branch-a")
    graph = workflow_graph(flows.branching, [reserved])
    assert ("diagrams.reserve", "diagrams.notify", 1) in flow(graph)
    assert ("diagrams.notify", "completed", 1) in flow(graph)
    # the branch no run took is drawn from the source, with edges no run counted
    assert {(s, t) for s, t, n in flow(graph) if "diagrams.backorder" in (s, t)} == {
        ("diagrams.reserve", "diagrams.backorder"),
        ("diagrams.backorder", "diagrams.notify"),
    }
    assert all(n == 0 for s, t, n in flow(graph) if "diagrams.backorder" in (s, t))

    backordered = await run(tmp_path, flows.branching, "none", "branch-none")
    merged = workflow_graph(flows.branching, [reserved, backordered])
    assert flow(merged) == {
        ("start", flows.ODD, 2),
        (flows.ODD, "diagrams.reserve", 1),
        (flows.ODD, "diagrams.backorder", 1),
        ("diagrams.reserve", "diagrams.notify", 1),
        ("diagrams.backorder", "diagrams.notify", 1),
        ("diagrams.notify", "completed", 2),
    }


async def test_an_unwound_run_records_its_compensations_and_outcomes(tmp_path: Path) -> None:
    records = await run(tmp_path, order_saga, order(tmp_path, "o-1", decline=True), "declined")
    graph = workflow_graph(order_saga, [records])
    unwind = {
        (graph.node(e.source).name, graph.node(e.target).name): e.runs
        for e in graph.edges
        if e.kind == "unwind"
    }
    assert (
        unwind[("sagaline.demo.order.release_inventory", "sagaline.demo.order.cancel_order")] == 1
    )
    assert unwind[("sagaline.demo.order.cancel_order", "compensated")] == 1
    assert ("demo.charge_payment", "demo.ship_order", 0) in flow(graph)  # declared, not taken
    assert outcomes_of(records) == {
        "demo.create_order": "compensated",
        "demo.reserve_inventory": "compensated",
        "demo.charge_payment": "failed",
        "sagaline.demo.order.release_inventory": "succeeded",
        "sagaline.demo.order.cancel_order": "succeeded",
    }


async def test_a_completed_run_has_every_step_succeeded(tmp_path: Path) -> None:
    records = await run(tmp_path, order_saga, order(tmp_path, "o-2"), "booked")
    assert set(outcomes_of(records).values()) == {"succeeded"}
    assert ("demo.ship_order", "completed", 1) in flow(workflow_graph(order_saga, [records]))


def test_asl_catch_routes_lead_to_recovery_states_and_choices_are_labelled() -> None:
    graph = asl_graph(flows.asl_saga())
    assert graph.name == 'Trip <saga> "booking" & co'
    errors = {
        (graph.node(e.source).name, graph.node(e.target).name, e.label)
        for e in graph.edges
        if e.kind == "error"
    }
    assert errors == {
        ("BookHotel", "Failed", "States.ALL"),
        ("BookBoth", "CancelHotel", "States.ALL"),
        ("NotifyGuests", "CancelHotel", "Timeout, States.TaskFailed"),
    }
    assert [n.name for n in graph.nodes if n.recovery] == ["CancelHotel", "Failed"]
    labels = {e.label for e in graph.edges if e.source == graph.named("Validate")[0].id}
    assert labels == {
        "$.nights NumericGreaterThan 0",
        "$.retry BooleanEquals true and $.nights NumericEquals 0",
        "default",
    }


def test_asl_parallel_and_map_are_containers_with_their_states_inside() -> None:
    graph = asl_graph(flows.asl_saga())
    both = graph.named("BookBoth")[0]
    inside = {n.name for n in graph.children(both.id)}
    assert inside == {"start", "fork", "BookFlight", "BookCar", "Car <ok>", "join", "end"}
    guests = graph.named("NotifyGuests")[0]
    assert {n.name for n in graph.children(guests.id)} == {"start", "Notify", "end"}
    assert both.kind == "parallel" and guests.kind == "map"


def test_a_sagaline_task_takes_its_steps_compensation_and_pivot() -> None:
    graph = asl_graph(flows.asl_saga())
    hotel = graph.named("BookHotel")[0]
    comp = graph.compensation_of(hotel.id)
    assert comp is not None and comp.name.endswith("flows.unreserve")


def test_a_loop_is_laid_out_as_a_back_edge_and_nothing_overlaps() -> None:
    graph = asl_graph(flows.asl_saga())
    places = layout(graph)
    wait, validate = graph.named("Wait a bit")[0], graph.named("Validate")[0]
    assert places.boxes[wait.id].x > places.boxes[validate.id].x
    top_level = [places.boxes[n.id] for n in graph.children(None)]
    for i, a in enumerate(top_level):
        for b in top_level[i + 1 :]:
            apart = a.right <= b.x or b.right <= a.x or a.bottom <= b.y or b.bottom <= a.y
            assert apart, (a, b)


def test_an_asl_definition_is_read_from_json_text_or_a_file(tmp_path: Path) -> None:
    import json

    path = tmp_path / "m.json"
    path.write_text(json.dumps(flows.asl_saga()), "utf-8")
    assert asl_graph(path) == asl_graph(json.dumps(flows.asl_saga())) == asl_graph(flows.asl_saga())
