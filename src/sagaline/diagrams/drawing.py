"""SVG of a workflow, drawn by the package itself, with a run's outcome on each node.

For the web UI (server-rendered, no JavaScript, no CDN): :func:`svg` returns one
self-contained ``<svg>`` element that can be inlined in HTML or served as a file. Styles
are presentation attributes, never a ``<style>`` sheet or ``style=``: a sheet inside
inline SVG applies to the whole page, and a page whose Content-Security-Policy allows no
inline style (the UI's) drops both, while it keeps attributes. Each node is a
``<g class="node outcome-…" data-node="n3">`` with a ``<title>`` (a tooltip), so a page
may restyle or link nodes without parsing the drawing. The outcome is written under the
name as well as coloured, so colour is never the only signal. All text goes through
ElementTree: user strings are shown literally, never as markup.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from sagaline.diagrams.graph import CONTAINERS, Edge, Graph, Node
from sagaline.diagrams.layout import Box, Point, layout, wrap
from sagaline.diagrams.markup import clean, serialize
from sagaline.diagrams.outcomes import LABELS, OUTCOMES

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
COLOURS: dict[str, tuple[str, str]] = {
    "succeeded": ("#dcfce7", "#16a34a"),
    "failed": ("#fee2e2", "#dc2626"),
    "compensated": ("#fef3c7", "#d97706"),
    "compensation_failed": ("#fecaca", "#991b1b"),
    "running": ("#dbeafe", "#2563eb"),
    "waiting": ("#cffafe", "#0e7490"),
    "pending": ("#f9fafb", "#9ca3af"),
    "skipped": ("#ede9fe", "#7c3aed"),
    "": ("#ffffff", "#374151"),
}
"""(fill, stroke) by outcome; "" when no run is overlaid."""
EDGE_COLOURS = {"flow": "#374151", "error": "#dc2626", "undo": "#d97706", "unwind": "#d97706"}
UNCOLOURED = frozenset({"start", "end", "fork", "join"})
"""Nodes a run passes without an outcome of their own: never drawn as pending."""


def svg(
    graph: Graph,
    outcomes: Mapping[str, str] | None = None,
    *,
    notes: Mapping[str, str] | None = None,
    inline: bool = False,
) -> str:
    """The graph as a standalone SVG document, with a run's outcomes overlaid.

    This signature is stable: the web UI calls it.

    Args:
        graph: from :func:`~sagaline.diagrams.workflow_graph` or
            :func:`~sagaline.diagrams.asl_graph`.
        outcomes: by node name (a step's registered name, a compensation's, an ASL
            state's), one of :data:`~sagaline.diagrams.OUTCOMES`; usually
            :func:`~sagaline.diagrams.outcomes_of` of the run's step records. With
            outcomes, a node missing from them is drawn ``pending``; without, no node
            is coloured.
        notes: by node name, a few words written after the outcome (usually
            :func:`~sagaline.diagrams.notes_of`: the attempts a step took).
        inline: the ``<svg>`` element alone, to embed in an HTML page (no XML
            declaration).

    Raises:
        ValueError: an outcome is not one of ``OUTCOMES``.
    """
    for name, outcome in (outcomes or {}).items():
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} of {name!r} is not one of {OUTCOMES}")
    noted = {n.id: (notes or {}).get(n.name, "") for n in graph.nodes if _outcome(n, outcomes)}
    places = layout(graph, [node_id for node_id, note in noted.items() if note])
    prefix = "sl" + hashlib.sha1(graph.name.encode("utf-8", "replace")).hexdigest()[:8]
    root = ET.Element(  # xmlns as a plain attribute: no global register_namespace
        "svg",
        {
            "xmlns": SVG_NS,
            "width": _n(places.width),
            "height": _n(places.height),
            "viewBox": f"0 0 {_n(places.width)} {_n(places.height)}",
            "font-family": FONT,
            "font-size": "12",
            "role": "img",
            "aria-label": clean(graph.name),
            "class": "sagaline-diagram",
        },
    )
    ET.SubElement(root, "title").text = clean(graph.name)
    _markers(root, prefix)
    for node in graph.nodes:  # containers first, underneath their children
        if node.kind in CONTAINERS:
            _container(root, node, places.boxes[node.id], _outcome(node, outcomes))
    for edge, route in zip(graph.edges, places.routes, strict=True):
        _edge(root, edge, route, prefix)
    for node in graph.nodes:
        if node.kind not in CONTAINERS:
            outcome = _outcome(node, outcomes)
            _node(root, node, places.boxes[node.id], outcome, noted.get(node.id, ""))
    return serialize(root, declaration=not inline)


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _outcome(node: Node, outcomes: Mapping[str, str] | None) -> str:
    if outcomes is None:
        return ""
    if node.name in outcomes and node.kind not in UNCOLOURED:
        return outcomes[node.name]
    return "" if node.kind in UNCOLOURED else "pending"


def _markers(root: ET.Element, prefix: str) -> None:
    defs = ET.SubElement(root, "defs")
    for kind, colour in EDGE_COLOURS.items():
        marker = ET.SubElement(
            defs,
            "marker",
            {
                "id": f"{prefix}-{kind}",
                "viewBox": "0 0 10 10",
                "refX": "10",
                "refY": "5",
                "markerWidth": "7",
                "markerHeight": "7",
                "orient": "auto-start-reverse",
            },
        )
        ET.SubElement(marker, "path", {"d": "M 0 0 L 10 5 L 0 10 z", "fill": colour})


def _edge(root: ET.Element, edge: Edge, route: tuple[Point, ...], prefix: str) -> None:
    group = ET.SubElement(root, "g", {"class": f"edge edge-{edge.kind}"})
    attrs = {
        "d": "M " + " L ".join(f"{_n(x)} {_n(y)}" for x, y in route),
        "fill": "none",
        "stroke": EDGE_COLOURS[edge.kind],
        "stroke-width": "1.5",
        "marker-end": f"url(#{prefix}-{edge.kind})",
    }
    if edge.kind in ("undo", "unwind"):
        attrs["stroke-dasharray"] = "5 4"
    ET.SubElement(group, "path", attrs)
    label = f"catch {edge.label}" if edge.kind == "error" else edge.label
    if label and edge.kind != "undo":
        (x0, y0), (x1, y1) = route[len(route) // 2 - 1], route[len(route) // 2]
        text = _text(group, (x0 + x1) / 2, (y0 + y1) / 2 - 5, label, size=10)
        text.set("fill", EDGE_COLOURS[edge.kind])


def _text(parent: ET.Element, x: float, y: float, value: str, size: int = 12) -> ET.Element:
    element = ET.SubElement(
        parent, "text", {"x": _n(x), "y": _n(y), "text-anchor": "middle", "font-size": str(size)}
    )
    element.text = clean(value)
    return element


def _node(root: ET.Element, node: Node, box: Box, outcome: str, note: str) -> None:
    fill, stroke = COLOURS[outcome]
    classes = f"node node-{node.kind}" + (f" outcome-{outcome}" if outcome else "")
    group = ET.SubElement(root, "g", {"class": classes, "data-node": node.id})
    title = node.name + (f" ({node.detail})" if node.detail else "") + (" — pivot" * node.pivot)
    said = [LABELS[outcome], *([note] if note else [])] if outcome else []
    ET.SubElement(group, "title").text = clean(title + (": " + ", ".join(said) if said else ""))
    width = "3" if node.pivot or outcome == "compensation_failed" else "1.5"
    paint = {"fill": fill, "stroke": stroke, "stroke-width": width}
    if node.kind in ("task", "compensation"):
        _task(group, node, box, paint, said)
    elif node.kind in ("choice", "fork", "join"):
        points = [(box.cx, box.y), (box.right, box.cy), (box.cx, box.bottom), (box.x, box.cy)]
        ET.SubElement(group, "polygon", {"points": _points(points), **paint})
        if node.kind != "choice":
            _text(group, box.cx, box.cy + 7, "+", size=22)
        _below(group, node, box, said)
    else:
        _event(group, node, box, paint, said)


def _points(points: list[Point]) -> str:
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in points)


def _task(group: ET.Element, node: Node, box: Box, paint: dict[str, str], said: list[str]) -> None:
    """``said``: the outcome's label and the note, each on a line of its own."""
    radius = "18" if node.kind == "compensation" else "8"
    rect = {"x": _n(box.x), "y": _n(box.y), "width": _n(box.w), "height": _n(box.h)}
    dash = {"stroke-dasharray": "5 3"} if node.kind == "compensation" else {}
    ET.SubElement(group, "rect", {**rect, "rx": radius, **paint, **dash})
    if node.pivot:  # the subroutine shape's inner bars, as in Mermaid
        for x in (box.x + 8, box.right - 8):
            bar = {"x1": _n(x), "y1": _n(box.y), "x2": _n(x), "y2": _n(box.bottom)}
            ET.SubElement(group, "line", {**bar, "stroke": paint["stroke"]})
    lines = wrap(node.name)
    y = box.y + 22
    for line in lines:
        _text(group, box.cx, y, line)
        y += 16
    first = ", ".join(p for p in ("pivot" if node.pivot else "", *said[:1]) if p)
    for line in [first, *said[1:]] if first else []:
        _text(group, box.cx, y + 2, line, size=10).set("fill", paint["stroke"])
        y += 14


def _event(group: ET.Element, node: Node, box: Box, paint: dict[str, str], said: list[str]) -> None:
    r = box.w / 2
    ends = node.kind in ("end", "succeed", "fail")
    if node.kind == "fail" and not said:
        paint = {**paint, "stroke": "#dc2626", "fill": "#fee2e2"}
    circle = {"cx": _n(box.cx), "cy": _n(box.cy), "r": _n(r)}
    ET.SubElement(group, "circle", {**circle, **paint, "stroke-width": "3" if ends else "1.5"})
    if node.kind == "wait":
        inner = {"cx": _n(box.cx), "cy": _n(box.cy), "r": _n(r - 4)}
        ET.SubElement(group, "circle", {**inner, "fill": "none", "stroke": paint["stroke"]})
    _below(group, node, box, said)


def _below(group: ET.Element, node: Node, box: Box, said: list[str]) -> None:
    """The name (and outcome) of an event or gateway, under its shape."""
    if node.kind in ("fork", "join"):
        return
    y = box.bottom + 14
    for line in wrap(node.name):
        _text(group, box.cx, y, line, size=11)
        y += 13
    for line in said:
        _text(group, box.cx, y, line, size=10)
        y += 12


def _container(root: ET.Element, node: Node, box: Box, outcome: str) -> None:
    fill, stroke = COLOURS[outcome] if outcome else ("#fafafa", "#6b7280")
    group = ET.SubElement(root, "g", {"class": f"node node-{node.kind}", "data-node": node.id})
    ET.SubElement(group, "title").text = clean(f"{node.name} ({node.detail})")
    rect = {"x": _n(box.x), "y": _n(box.y), "width": _n(box.w), "height": _n(box.h)}
    ET.SubElement(group, "rect", {**rect, "rx": "10", "fill": fill, "stroke": stroke})
    said = LABELS.get(outcome, "")
    label = f"{node.detail or node.kind}: {node.name}" + (f" — {said}" if said else "")
    title = _text(group, box.x + 10, box.y + 18, label)
    title.set("text-anchor", "start")
