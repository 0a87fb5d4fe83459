"""BPMN 2.0 XML of a workflow, valid against the OMG schemas, laid out for modelers.

A saga maps onto BPMN's own compensation model, so the drawing means what BPMN tools
read into it: each step with an undo carries a compensation boundary event, associated
with a task marked ``isForCompensation``. Compensation tasks have no sequence flows, as
BPMN requires; the reverse order they run in is BPMN's rule too, so the ``unwind`` edges
of the graph are not written. An ASL Catch is an error boundary event on its state with
a sequence flow to the handler. A pivot carries ``sagaline:pivot="true"`` (an extension
attribute, which the schema allows on every element) and says why in its documentation.

Diagram interchange (BPMNDI) comes from :mod:`sagaline.diagrams.layout`, so the file opens
laid out in bpmn-js and Camunda Modeler. Element names are prefixed (``bpmn:task``) and
namespaces declared on the root by hand, because ``ElementTree.register_namespace`` would
change every other ElementTree user in the process.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from sagaline.diagrams.graph import Edge, Graph, Node
from sagaline.diagrams.layout import Box, Point, layout
from sagaline.diagrams.markup import clean, serialize

NAMESPACES = {
    "xmlns:bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "xmlns:bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "xmlns:dc": "http://www.omg.org/spec/DD/20100524/DC",
    "xmlns:di": "http://www.omg.org/spec/DD/20100524/DI",
    "xmlns:sagaline": "urn:sagaline:bpmn",
}
EVENT = 36.0
ANNOTATION = 56.0
"""How far above its node a pivot's annotation sits; everything is drawn this much lower."""
PIVOT_NOTE = "pivot: once this step succeeds the saga only goes forward; it is never undone"
RECOVERY_NOTE = "reached only through an error route: a compensation state"


@dataclass
class _Scope:
    """What one process or sub-process holds, in the order the schema wants it."""

    element: ET.Element
    flow_elements: list[ET.Element] = field(default_factory=list)
    artifacts: list[ET.Element] = field(default_factory=list)


def bpmn(graph: Graph) -> str:
    """The graph as a BPMN 2.0 document with diagram interchange.

    Valid against the OMG BPMN 2.0 XSDs (``BPMN20.xsd`` with ``BPMNDI.xsd``); imports in
    bpmn-js with no warnings. See the module docstring for how sagas are drawn.
    """
    return _Writer(graph).write()


class _Writer:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.places = layout(graph)
        self.ids = {node.id: _element_id(node) for node in graph.nodes}
        self.shapes: list[tuple[str, Box, bool]] = []
        self.lines: list[tuple[str, tuple[Point, ...]]] = []
        self.errors: list[ET.Element] = []
        self.catches: dict[str, int] = {}
        self.root = ET.Element(
            "bpmn:definitions",
            {
                **NAMESPACES,
                "id": "Definitions_1",
                "targetNamespace": "urn:sagaline:diagram",
                "exporter": "sagaline",
                "exporterVersion": "1",
            },
        )
        self.process = ET.Element(
            "bpmn:process", {"id": "Process_1", "name": clean(graph.name), "isExecutable": "false"}
        )
        self.scopes: dict[str | None, _Scope] = {None: _Scope(self.process)}
        self.skipped = {n.id for n in graph.nodes if _only_unwound(graph, n)}

    def write(self) -> str:
        for node in self.graph.nodes:
            if node.id not in self.skipped:
                self._node(node)
        for index, edge in enumerate(self.graph.edges):
            self._edge(index, edge)
        for scope in self.scopes.values():
            scope.element.extend(scope.flow_elements + scope.artifacts)
        self.root.extend(self.errors)
        self.root.append(self.process)
        self.root.append(self._diagram())
        return serialize(self.root)

    def _node(self, node: Node) -> None:
        tag, definition = _tag(node)
        if tag == "bpmn:endEvent" and any(e.source == node.id for e in self.graph.edges):
            tag = "bpmn:intermediateThrowEvent"  # a Succeed inside a branch: the join follows
        attrs = {"id": self.ids[node.id]}
        if node.kind not in ("fork", "join"):
            attrs["name"] = clean(node.name)
        if node.pivot:
            attrs["sagaline:pivot"] = "true"
        if node.kind == "compensation":
            attrs["isForCompensation"] = "true"
        if node.kind == "choice":
            default = next(
                (i for i, e in enumerate(self.graph.edges) if _is_default(e, node)), None
            )
            if default is not None:
                attrs["default"] = f"Flow_{default}"
        element = ET.Element(tag, attrs)
        notes = [node.detail] if node.detail else []
        notes += [PIVOT_NOTE] * node.pivot + [RECOVERY_NOTE] * node.recovery
        if notes:
            ET.SubElement(element, "bpmn:documentation").text = clean("\n".join(notes))
        if node.pivot:
            self._annotate(node, "pivot: only forward recovery after this step")
        if node.kind == "map":
            ET.SubElement(element, "bpmn:multiInstanceLoopCharacteristics")
        if definition:
            ET.SubElement(element, definition, self._error_ref(node))
        self.scopes[node.parent].flow_elements.append(element)
        if tag == "bpmn:subProcess":
            self.scopes[node.id] = _Scope(element)
        expanded = tag == "bpmn:subProcess"
        self.shapes.append((self.ids[node.id], self.places.boxes[node.id], expanded))

    def _annotate(self, node: Node, text: str) -> None:
        """A text annotation above the node: what a modeler shows of an extension attribute
        is nothing, and a reader should see the pivot."""
        note_id, link_id = f"Annotation_{node.id}", f"Association_{node.id}"
        note = ET.Element("bpmn:textAnnotation", {"id": note_id})
        ET.SubElement(note, "bpmn:text").text = text
        link = {"id": link_id, "sourceRef": self.ids[node.id], "targetRef": note_id}
        self.scopes[node.parent].artifacts += [note, ET.Element("bpmn:association", link)]
        box = self.places.boxes[node.id]
        self.shapes.append((note_id, Box(box.x + 20, box.y - ANNOTATION, box.w, 30), False))
        self.lines.append((link_id, ((box.cx, box.y), (box.cx, box.y - ANNOTATION + 30))))

    def _error_ref(self, node: Node) -> dict[str, str]:
        """A Fail state's error, declared once at the top as BPMN wants it referenced."""
        if node.kind != "fail":
            return {}
        error_id = f"Error_{node.id}"
        self.errors.append(ET.Element("bpmn:error", {"id": error_id, "name": clean(node.name)}))
        return {"errorRef": error_id}

    def _edge(self, index: int, edge: Edge) -> None:
        if edge.source in self.skipped or edge.target in self.skipped or edge.kind == "unwind":
            return
        source, target = self.graph.node(edge.source), self.graph.node(edge.target)
        scope = self.scopes[source.parent]
        s_box, t_box = self.places.boxes[edge.source], self.places.boxes[edge.target]
        route = self.places.routes[index]
        if edge.kind == "undo":
            event = self._boundary(f"Compensate_{index}", source, "compensateEventDefinition")
            bx = s_box.x + 30
            self.shapes.append(
                (event, Box(bx - EVENT / 2, s_box.bottom - EVENT / 2, EVENT, EVENT), False)
            )
            scope.artifacts.append(
                ET.Element(
                    "bpmn:association",
                    {
                        "id": f"Association_{index}",
                        "sourceRef": event,
                        "targetRef": self.ids[target.id],
                        "associationDirection": "One",
                    },
                )
            )
            self.lines.append(
                (f"Association_{index}", ((bx, s_box.bottom + EVENT / 2), (bx, t_box.y)))
            )
            return
        flow_source = self.ids[source.id]
        if edge.kind == "error":
            flow_source = self._boundary(
                f"Catch_{index}", source, "errorEventDefinition", edge.label
            )
            nth = self.catches[source.id] = self.catches.get(source.id, -1) + 1
            bx = s_box.right - 24 - 40 * nth
            box = Box(bx - EVENT / 2, s_box.bottom - EVENT / 2, EVENT, EVENT)
            self.shapes.append((flow_source, box, False))
            start = (bx, s_box.bottom + EVENT / 2)
            route = (
                (start, (bx, t_box.cy), (t_box.x, t_box.cy))
                if t_box.x > bx
                else (start, *route[1:])
            )
        attrs = {"id": f"Flow_{index}", "sourceRef": flow_source, "targetRef": self.ids[target.id]}
        if edge.label and edge.kind == "flow":
            attrs["name"] = clean(edge.label)
        scope.flow_elements.append(ET.Element("bpmn:sequenceFlow", attrs))
        self.lines.append((f"Flow_{index}", route))

    def _boundary(self, event_id: str, host: Node, definition: str, name: str = "") -> str:
        attrs = {"id": event_id, "attachedToRef": self.ids[host.id]}
        if name:
            attrs["name"] = clean(name)
        event = ET.Element("bpmn:boundaryEvent", attrs)
        ET.SubElement(event, f"bpmn:{definition}")
        self.scopes[host.parent].flow_elements.append(event)
        return event_id

    def _diagram(self) -> ET.Element:
        diagram = ET.Element("bpmndi:BPMNDiagram", {"id": "BPMNDiagram_1"})
        plane = ET.SubElement(
            diagram, "bpmndi:BPMNPlane", {"id": "BPMNPlane_1", "bpmnElement": "Process_1"}
        )
        for element_id, box, expanded in self.shapes:
            attrs = {"id": f"{element_id}_di", "bpmnElement": element_id}
            if expanded:
                attrs["isExpanded"] = "true"
            shape = ET.SubElement(plane, "bpmndi:BPMNShape", attrs)
            ET.SubElement(shape, "dc:Bounds", _bounds(box))
        for element_id, points in self.lines:
            line = ET.SubElement(
                plane, "bpmndi:BPMNEdge", {"id": f"{element_id}_di", "bpmnElement": element_id}
            )
            for x, y in points:
                ET.SubElement(line, "di:waypoint", {"x": _n(x), "y": _n(y + ANNOTATION)})
        return diagram


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _bounds(box: Box) -> dict[str, str]:
    y = box.y + ANNOTATION
    return {"x": _n(box.x), "y": _n(y), "width": _n(box.w), "height": _n(box.h)}


def _element_id(node: Node) -> str:
    prefix = {
        "start": "StartEvent",
        "end": "EndEvent",
        "succeed": "EndEvent",
        "fail": "EndEvent",
        "wait": "Event",
        "choice": "Gateway",
        "fork": "Gateway",
        "join": "Gateway",
        "parallel": "SubProcess",
        "map": "SubProcess",
    }.get(node.kind, "Activity")
    return f"{prefix}_{node.id}"


def _tag(node: Node) -> tuple[str, str]:
    """The BPMN element of a node, and its event definition (if it is such an event)."""
    if node.kind == "wait":
        definition = "messageEventDefinition" if node.detail == "signal" else "timerEventDefinition"
        return "bpmn:intermediateCatchEvent", f"bpmn:{definition}"
    if node.kind == "fail":
        return "bpmn:endEvent", "bpmn:errorEventDefinition"
    tags = {
        "start": "bpmn:startEvent",
        "end": "bpmn:endEvent",
        "succeed": "bpmn:endEvent",
        "choice": "bpmn:exclusiveGateway",
        "fork": "bpmn:parallelGateway",
        "join": "bpmn:parallelGateway",
        "parallel": "bpmn:subProcess",
        "map": "bpmn:subProcess",
    }
    if node.kind in tags:
        return tags[node.kind], ""
    if node.detail == "child workflow":
        return "bpmn:callActivity", ""
    is_pass = node.detail.startswith("Pass")
    return ("bpmn:task" if is_pass else "bpmn:serviceTask"), ""


def _is_default(edge: Edge, node: Node) -> bool:
    return edge.source == node.id and edge.kind == "flow" and edge.label == "default"


def _only_unwound(graph: Graph, node: Node) -> bool:
    """An end reached only by unwinding (a saga's "compensated"): BPMN has no flow to it."""
    into = [e.kind for e in graph.edges if e.target == node.id]
    return node.kind == "end" and bool(into) and all(kind == "unwind" for kind in into)
