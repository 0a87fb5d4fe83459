"""Mermaid flowcharts: the diagram that GitHub, GitLab and most wikis render from text.

Every label is written with Mermaid's entity codes (``#35;`` for ``#``) for anything but
plain letters, digits and a few punctuation marks, so a user's name can neither break the
syntax (quotes, brackets, pipes) nor be read as HTML or Markdown by the renderer: it is
shown exactly as written.
"""

from __future__ import annotations

import json
import string

from sagaline.diagrams.graph import CONTAINERS, Edge, Graph, Node

SAFE = frozenset(string.ascii_letters + string.digits + " .,_-:/()'")
SHAPES = {
    "start": ("((", "))"),
    "end": ("(((", ")))"),
    "succeed": ("(((", ")))"),
    "fail": ("(((", ")))"),
    "task": ("[", "]"),
    "compensation": ("([", "])"),
    "wait": ("[/", "/]"),
    "choice": ("{", "}"),
    "fork": ("{", "}"),
    "join": ("{", "}"),
}
CLASSES = {
    "pivot": "stroke:#b45309,stroke-width:3px",
    "compensation": "fill:#fff7ed,stroke:#d97706,stroke-dasharray:4",
    "recovery": "fill:#fef2f2,stroke:#dc2626",
    "fail": "fill:#fee2e2,stroke:#dc2626",
    "ending": "fill:#f3f4f6,stroke:#374151",
}
ARROWS = {"flow": "-->", "error": "-->", "undo": "-.->", "unwind": "-.->"}
LINK_STYLES = {"error": "stroke:#dc2626", "undo": "stroke:#d97706", "unwind": "stroke:#d97706"}


def text(value: str) -> str:
    """A label for Mermaid: every character outside a small safe set as an entity code."""
    return "".join(c if c in SAFE else f"#{ord(c)};" for c in value)


def mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart, left to right.

    Compensations are rounded nodes hanging off their steps by dashed ``undo`` edges, and
    chained by dashed back-edges in the order a saga unwinds; a pivot is a double-sided
    box with a thick border (class ``pivot``); an ASL Catch route is a red edge labelled
    with its error names.
    """
    lines = ["---", f"title: {json.dumps(graph.name)}", "---", "flowchart LR"]
    lines += _scope(graph, None, "  ")
    for i, edge in enumerate(graph.edges):
        lines.append(f"  {_edge(edge)}")
        if edge.kind in LINK_STYLES:
            lines.append(f"  linkStyle {i} {LINK_STYLES[edge.kind]}")
    lines += [f"  classDef {name} {style}" for name, style in CLASSES.items()]
    for node in graph.nodes:
        names = _classes(node)
        if names:
            lines.append(f"  class {node.id} {','.join(names)}")
    return "\n".join(lines) + "\n"


def _scope(graph: Graph, parent: str | None, indent: str) -> list[str]:
    lines: list[str] = []
    for node in graph.children(parent):
        if node.kind in CONTAINERS:
            title = text(f"{node.detail or node.kind}: {node.name}")
            lines.append(f'{indent}subgraph {node.id} ["{title}"]')
            lines.append(f"{indent}  direction LR")
            lines += _scope(graph, node.id, indent + "  ")
            lines.append(f"{indent}end")
        else:
            lines.append(f"{indent}{node.id}{_shape(node)}")
    return lines


def _shape(node: Node) -> str:
    label = "+" if node.kind in ("fork", "join") else text(node.name)
    if node.pivot:
        return f'[["{label}<br/>(pivot)"]]'
    if node.kind == "wait" and node.detail:
        label += f"<br/>{text(node.detail)}"
    opening, closing = SHAPES[node.kind]
    return f'{opening}"{label}"{closing}'


def _edge(edge: Edge) -> str:
    arrow = ARROWS[edge.kind]
    label = f"catch {edge.label}" if edge.kind == "error" else edge.label
    middle = f'{arrow}|"{text(label)}"|' if label else arrow
    return f"{edge.source} {middle} {edge.target}"


def _classes(node: Node) -> list[str]:
    names = []
    if node.pivot:
        names.append("pivot")
    if node.kind == "compensation":
        names.append("compensation")
    if node.recovery and node.kind != "fail":
        names.append("recovery")
    if node.kind == "fail":
        names.append("fail")
    if node.kind in ("end", "succeed"):
        names.append("ending")
    return names
