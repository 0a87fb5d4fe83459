"""BPMN 2.0 output: valid against the OMG XSDs, drawn the BPMN way, imported by bpmn-js."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import pytest

from sagaline.demo.order import order_saga
from sagaline.diagrams import asl_graph, bpmn, workflow_graph
from tests.diagrams import flows
from tests.diagrams.conftest import BpmnTool
from tests.diagrams.graphs import all_graphs

if TYPE_CHECKING:
    import xmlschema

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL"}
PIVOT = "{urn:sagaline:bpmn}pivot"


@pytest.mark.parametrize("name", sorted(all_graphs()))
def test_bpmn_is_valid_against_the_omg_schema(bpmn_schema: xmlschema.XMLSchema, name: str) -> None:
    errors = [str(e) for e in bpmn_schema.iter_errors(bpmn(all_graphs()[name]))]
    assert errors == []


def test_the_schema_check_rejects_what_bpmn_forbids(bpmn_schema: xmlschema.XMLSchema) -> None:
    broken = bpmn(workflow_graph(order_saga)).replace(
        'isForCompensation="true"', 'isForCompensation="yes"'
    )
    assert not bpmn_schema.is_valid(broken)


@pytest.mark.parametrize("name", sorted(all_graphs()))
def test_bpmn_js_imports_every_element_with_no_warnings(bpmn_tool: BpmnTool, name: str) -> None:
    xml = bpmn(all_graphs()[name])
    result = bpmn_tool.load(xml)
    assert result["warnings"] == []
    root = ET.fromstring(xml)
    shapes = {
        e.get("bpmnElement") for e in root.iter() if e.tag.endswith(("BPMNShape", "BPMNEdge"))
    }
    assert shapes <= set(result["ids"])  # every element with DI is drawn
    bpmn_tool.screenshot(xml, f"bpmn-{name}")


def test_compensation_is_boundary_events_associated_with_compensation_tasks() -> None:
    root = ET.fromstring(bpmn(workflow_graph(order_saga)))
    process = root.find("bpmn:process", NS)
    assert process is not None
    by_id = {e.get("id"): e for e in process}
    compensations = [e for e in process if e.get("isForCompensation") == "true"]
    assert sorted(str(e.get("name")) for e in compensations) == [
        "sagaline.demo.order.cancel_order",
        "sagaline.demo.order.refund_payment",
        "sagaline.demo.order.release_inventory",
    ]
    flows_ = process.findall("bpmn:sequenceFlow", NS)
    touched = {f.get("sourceRef") for f in flows_} | {f.get("targetRef") for f in flows_}
    assert not touched & {e.get("id") for e in compensations}  # BPMN: no flows to handlers
    for association in process.findall("bpmn:association", NS):
        event, target = by_id[association.get("sourceRef")], by_id[association.get("targetRef")]
        if target.get("isForCompensation") != "true":
            continue  # the pivot's annotation
        assert event.tag == f"{{{NS['bpmn']}}}boundaryEvent"
        assert event.find("bpmn:compensateEventDefinition", NS) is not None
        host = by_id[event.get("attachedToRef")]
        assert str(target.get("name")).split(".")[-1] in {
            "cancel_order",
            "release_inventory",
            "refund_payment",
        } and host.get("name", "").startswith("demo.")
    pivots = [e.get("name") for e in process if e.get(PIVOT) == "true"]
    assert pivots == ["demo.ship_order"]


def test_an_asl_catch_is_an_error_boundary_event_with_a_flow_to_its_handler() -> None:
    root = ET.fromstring(bpmn(asl_graph(flows.asl_saga())))
    events = [
        e
        for e in root.iter(f"{{{NS['bpmn']}}}boundaryEvent")
        if e.find("bpmn:errorEventDefinition", NS) is not None
    ]
    assert sorted(str(e.get("name")) for e in events) == [
        "States.ALL",
        "States.ALL",
        "Timeout, States.TaskFailed",
    ]
    sources = {f.get("sourceRef") for f in root.iter(f"{{{NS['bpmn']}}}sequenceFlow")}
    assert {e.get("id") for e in events} <= sources
    loops = root.findall(".//bpmn:multiInstanceLoopCharacteristics", NS)
    assert len(loops) == 1  # the Map state


def test_names_are_escaped_and_control_characters_shown() -> None:
    xml = bpmn(all_graphs()["asl-odd"])
    root = ET.fromstring(xml)  # well-formed despite the control character
    names = {e.get("name") for e in root.iter() if e.get("name")}
    assert flows.ODD in names and "tab\there\\x07" in names
    assert "<script>" not in xml
