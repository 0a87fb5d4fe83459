"""One run drawn on its workflow, as the web UI's run page draws it: from its records
alone where the workflow is not imported, with every outcome and each step's attempts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sagaline.diagrams import LABELS, Graph, notes_of, outcomes_of, run_graph, svg
from sagaline.model.records import RunRecord, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus
from tests.diagrams import flows

SVG = "{http://www.w3.org/2000/svg}"
NOT_IMPORTED = "elsewhere.trip"


def the_run(workflow: str, status: RunStatus) -> RunRecord:
    return RunRecord("r-1", workflow, status, b"{}", None, None, "default", None, 0, False, 1, 2)


def record(
    seq: int,
    name: str,
    status: StepStatus,
    kind: StepKind = StepKind.STEP,
    attempts: int = 1,
    undoes: int | None = None,
    pivot: bool = False,
) -> StepRecord:
    compensable = kind is StepKind.STEP and not pivot
    return StepRecord(
        seq, name, kind, status, None, None, None, attempts, compensable, pivot, undoes, 0, 1, 2
    )


def drawn(graph: Graph, records: list[StepRecord]) -> dict[str, tuple[str, str]]:
    """Each drawn node's (class, text) by name, as a reader of the SVG sees them."""
    root = ET.fromstring(svg(graph, outcomes_of(records), notes=notes_of(records)))
    found = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("data-node"):
            node = graph.node(str(group.get("data-node")))
            words = " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
            found[node.name] = (str(group.get("class")), words)
    return found


def flow(graph: Graph) -> set[tuple[str, str, int]]:
    return {
        (graph.node(e.source).name, graph.node(e.target).name, e.runs)
        for e in graph.edges
        if e.kind == "flow"
    }


def test_a_run_of_a_workflow_this_process_never_imported_is_drawn_from_its_records() -> None:
    records = [
        record(1, "elsewhere.book", StepStatus.SUCCEEDED),
        record(2, "elsewhere.pay", StepStatus.FAILED, attempts=3),
        record(3, "elsewhere.unbook", StepStatus.FAILED, StepKind.COMPENSATION, 2, undoes=1),
    ]
    graph = run_graph(the_run(NOT_IMPORTED, RunStatus.COMPENSATION_FAILED), records)
    assert graph.name == NOT_IMPORTED
    assert flow(graph) == {("start", "elsewhere.book", 1), ("elsewhere.book", "elsewhere.pay", 1)}
    assert (
        graph.compensation_of(graph.named("elsewhere.book")[0].id)
        == graph.named("elsewhere.unbook")[0]
    )
    nodes = drawn(graph, records)
    assert "outcome-compensation_failed" in nodes["elsewhere.book"][0]
    assert "compensation failed" in nodes["elsewhere.book"][1]
    assert "outcome-failed" in nodes["elsewhere.pay"][0]
    assert "3 attempts" in nodes["elsewhere.pay"][1]
    assert "2 attempts" in nodes["elsewhere.unbook"][1]
    assert "completed" not in nodes  # it is parked, not over: no run took it to an end
    ends = [e for e in graph.edges if graph.node(e.target).name == "compensated"]
    assert all(e.runs == 0 for e in ends)


def test_an_imported_workflows_run_shows_the_steps_it_has_not_reached_as_not_run() -> None:
    records = [
        record(1, flows.ODD, StepStatus.SUCCEEDED),
        record(2, "diagrams.reserve", StepStatus.RUNNING),
    ]
    graph = run_graph(the_run(flows.branching.name, RunStatus.RUNNING), records)
    nodes = drawn(graph, records)
    assert "outcome-succeeded" in nodes[flows.ODD][0]
    assert "outcome-running" in nodes["diagrams.reserve"][0]
    for name in ("diagrams.backorder", "diagrams.notify", "tests.diagrams.flows.unreserve"):
        assert "outcome-pending" in nodes[name][0] and LABELS["pending"] in nodes[name][1]
    assert "pivot" in nodes["diagrams.notify"][1]
    assert ("diagrams.reserve", "completed", 1) not in flow(graph)  # its path goes on


def test_only_a_finished_run_leads_its_path_to_an_end() -> None:
    records = [
        record(1, flows.ODD, StepStatus.SUCCEEDED),
        record(2, "diagrams.reserve", StepStatus.SUCCEEDED),
        record(3, "diagrams.notify", StepStatus.SUCCEEDED, pivot=True),
    ]
    running = run_graph(the_run(flows.branching.name, RunStatus.RUNNING), records)
    done = run_graph(the_run(flows.branching.name, RunStatus.COMPLETED), records)
    assert ("diagrams.notify", "completed", 1) in flow(done)
    assert ("diagrams.notify", "completed", 1) not in flow(running)


def test_the_steps_a_waiting_run_has_not_reached_come_after_where_it_waits() -> None:
    records = [record(1, "approved", StepStatus.WAITING, StepKind.SIGNAL)]
    graph = run_graph(the_run(flows.approval.name, RunStatus.SUSPENDED), records)
    assert flow(graph) == {
        ("start", "approved", 1),
        ("approved", "diagrams.reserve", 0),  # the source does not declare the signal
        ("diagrams.reserve", "completed", 0),
    }


def test_a_run_waiting_on_a_signal_and_a_step_skipped_by_hand_say_so() -> None:
    records = [
        record(1, "elsewhere.book", StepStatus.SUCCEEDED),
        record(2, "elsewhere.unbook", StepStatus.SKIPPED, StepKind.COMPENSATION, undoes=1),
        record(3, "approved", StepStatus.WAITING, StepKind.SIGNAL),
    ]
    graph = run_graph(the_run(NOT_IMPORTED, RunStatus.SUSPENDED), records)
    nodes = drawn(graph, records)
    assert "node-wait outcome-waiting" in nodes["approved"][0]
    assert "waiting" in nodes["approved"][1]
    assert "outcome-skipped" in nodes["elsewhere.book"][0]
    assert "skipped by hand" in nodes["elsewhere.unbook"][1]


def test_notes_give_the_attempts_of_each_names_latest_call() -> None:
    records = [
        record(1, "loop.poll", StepStatus.SUCCEEDED, attempts=4),
        record(2, "loop.poll", StepStatus.SUCCEEDED),
        record(3, "loop.send", StepStatus.FAILED, attempts=2),
    ]
    assert notes_of(records) == {"loop.send": "2 attempts"}


def test_an_inline_drawing_is_the_svg_element_alone_with_names_as_text() -> None:
    records = [record(1, '<script>alert("x")</script>', StepStatus.FAILED, attempts=2)]
    graph = run_graph(the_run("<b>wf</b>", RunStatus.FAILED), records)
    inline = svg(graph, outcomes_of(records), notes=notes_of(records), inline=True)
    assert inline.startswith("<svg ") and "<?xml" not in inline
    assert "<script>" not in inline and "&lt;script&gt;" in inline and "<b>" not in inline
    assert ET.fromstring(inline).tag == f"{SVG}svg"
    assert svg(graph).startswith("<?xml")
