"""The package's own SVG: well-formed, text escaped, a run's outcomes overlaid."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from sagaline.demo.order import order_saga
from sagaline.diagrams import LABELS, OUTCOMES, svg, workflow_graph
from tests.diagrams import flows
from tests.diagrams.graphs import all_graphs

SVG = "{http://www.w3.org/2000/svg}"


def texts(root: ET.Element) -> str:
    return "".join(t.text or "" for t in root.iter() if t.tag in (f"{SVG}text", f"{SVG}title"))


@pytest.mark.parametrize("name", sorted(all_graphs()))
def test_svg_is_well_formed_and_shows_every_name(name: str) -> None:
    graph = all_graphs()[name]
    root = ET.fromstring(svg(graph))
    assert root.tag == f"{SVG}svg"
    shown = texts(root)
    for node in graph.nodes:
        if node.kind not in ("fork", "join"):
            assert node.name.replace("\x07", "\\x07")[:20] in shown


def test_user_strings_are_text_never_markup() -> None:
    graph = all_graphs()["asl-odd"]
    drawn = svg(graph)
    root = ET.fromstring(drawn)
    assert not [e for e in root.iter() if e.tag in (f"{SVG}script", "script", f"{SVG}b", "b")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in drawn
    assert "<script>" not in drawn


def test_each_node_is_coloured_and_labelled_by_its_outcome() -> None:
    graph = workflow_graph(order_saga)
    outcomes = {
        "demo.create_order": "compensated",
        "demo.reserve_inventory": "compensation_failed",
        "demo.charge_payment": "failed",
        "sagaline.demo.order.release_inventory": "failed",
        "sagaline.demo.order.cancel_order": "skipped",
    }
    root = ET.fromstring(svg(graph, outcomes))
    groups = {g.get("data-node"): g for g in root.iter(f"{SVG}g") if g.get("data-node")}
    for node in graph.nodes:
        classes = str(groups[node.id].get("class"))
        if node.kind in ("start", "end"):
            assert "outcome-" not in classes
        else:
            expected = outcomes.get(node.name, "pending")
            assert f"outcome-{expected}" in classes
            assert LABELS[expected] in texts(groups[node.id])


def test_every_outcome_can_be_drawn_and_an_unknown_one_is_refused() -> None:
    graph = workflow_graph(flows.branching)
    for outcome in OUTCOMES:
        ET.fromstring(svg(graph, {"diagrams.reserve": outcome}))
    with pytest.raises(ValueError, match="not one of"):
        svg(graph, {"diagrams.reserve": "exploded"})


def test_without_outcomes_nothing_is_coloured() -> None:
    root = ET.fromstring(svg(workflow_graph(order_saga)))
    assert not [g for g in root.iter(f"{SVG}g") if "outcome-" in str(g.get("class"))]
