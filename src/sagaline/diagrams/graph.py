"""The pure graph every diagram is drawn from: nodes, edges, and nothing about pixels.

One model for both kinds of workflow, so Mermaid, BPMN and SVG are each a single
function of it: a Python workflow's graph (:mod:`sagaline.diagrams.workflows`) and an ASL
machine's (:mod:`sagaline.diagrams.asl`) differ in where the nodes come from, not in how
they are drawn.

Node ids (``n0``, ``n1`` …) are generated, never taken from user strings: a step or state
name may hold any character, and the formats each restrict identifiers differently
(Mermaid's node ids, XML's ``xsd:ID``). Names are shown as labels, escaped per format.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

NodeKind = Literal[
    "start",
    "end",
    "task",
    "compensation",
    "wait",
    "choice",
    "fork",
    "join",
    "parallel",
    "map",
    "succeed",
    "fail",
]
"""``parallel`` and ``map`` are containers (an ASL Parallel or Map state): the nodes whose
``parent`` is their id are drawn inside them."""

EdgeKind = Literal["flow", "error", "undo", "unwind"]
"""``flow``: what runs next. ``error``: an ASL Catch route. ``undo``: a step to its
compensation. ``unwind``: one compensation to the one that runs after it (the reverse of
the steps' order), drawn as a dashed back-edge."""

EDGE_ORDER: tuple[EdgeKind, ...] = ("flow", "error", "undo", "unwind")
CONTAINERS: frozenset[str] = frozenset({"parallel", "map"})
ENDS: frozenset[str] = frozenset({"end", "succeed", "fail"})


@dataclass(frozen=True)
class Node:
    """A step, compensation, state, gateway or event of a workflow.

    Attributes:
        id: generated, unique in the graph, safe as an identifier in every format.
        name: what the user called it (a step's registered name, an ASL state's name);
            keys :func:`sagaline.diagrams.svg`'s ``outcomes``.
        kind: how it is drawn.
        pivot: a pivot step: after it succeeds, the saga only goes forward.
        parent: the id of the container it is drawn in (None: the top level).
        detail: a short description (an ASL state's type and resource, "signal", …).
        recovery: reached only through error routes (an ASL compensation state).
    """

    id: str
    name: str
    kind: NodeKind
    pivot: bool = False
    parent: str | None = None
    detail: str = ""
    recovery: bool = False


@dataclass(frozen=True)
class Edge:
    """A transition between two nodes of the same container.

    ``runs`` counts the recorded runs that took it (0: declared or inferred only).
    """

    source: str
    target: str
    kind: EdgeKind = "flow"
    label: str = ""
    runs: int = 0


@dataclass(frozen=True)
class Graph:
    """A workflow as nodes and edges, in a stable order (the order they were found)."""

    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def named(self, name: str) -> list[Node]:
        """The nodes called ``name`` (an ASL name may repeat across Parallel branches)."""
        return [node for node in self.nodes if node.name == name]

    def children(self, parent: str | None) -> list[Node]:
        return [node for node in self.nodes if node.parent == parent]

    def compensation_of(self, node_id: str) -> Node | None:
        for edge in self.edges:
            if edge.kind == "undo" and edge.source == node_id:
                return self.node(edge.target)
        return None


@dataclass
class GraphBuilder:
    """Collects nodes by key and edges by (source, target, kind, label), counting runs."""

    name: str
    _nodes: dict[str, Node] = field(default_factory=dict)
    _keys: dict[tuple[str, ...], str] = field(default_factory=dict)
    _edges: dict[tuple[str, str, str, str], Edge] = field(default_factory=dict)

    def node(
        self,
        key: tuple[str, ...],
        name: str,
        kind: NodeKind,
        *,
        pivot: bool = False,
        parent: str | None = None,
        detail: str = "",
    ) -> str:
        """The id of the node known by ``key``, added on first sight."""
        existing = self._keys.get(key)
        if existing is not None:
            return existing
        node_id = f"n{len(self._nodes)}"
        self._nodes[node_id] = Node(node_id, name, kind, pivot, parent, detail)
        self._keys[key] = node_id
        return node_id

    def find(self, key: tuple[str, ...]) -> str | None:
        return self._keys.get(key)

    def mark(self, node_id: str, *, pivot: bool = False, recovery: bool = False) -> None:
        """Set a flag learnt after the node was added (a pivot seen in a recorded run)."""
        node = self._nodes[node_id]
        self._nodes[node_id] = replace(
            node, pivot=node.pivot or pivot, recovery=node.recovery or recovery
        )

    def get(self, node_id: str) -> Node:
        return self._nodes[node_id]

    def edge(
        self, source: str, target: str, kind: EdgeKind = "flow", label: str = "", runs: int = 0
    ) -> None:
        key = (source, target, kind, label)
        old = self._edges.get(key)
        self._edges[key] = Edge(source, target, kind, label, runs + (old.runs if old else 0))

    def has_edge(self, source: str, target: str) -> bool:
        return any(e.source == source and e.target == target for e in self._edges.values())

    def incoming(self, node_id: str) -> Iterator[Edge]:
        return (e for e in self._edges.values() if e.target == node_id)

    def outgoing(self, node_id: str) -> Iterator[Edge]:
        return (e for e in self._edges.values() if e.source == node_id)

    def build(self) -> Graph:
        """The graph, edges ordered flow, error, undo, unwind: the order the formats read
        best in (and Mermaid's layout ranks by)."""
        edges = sorted(self._edges.values(), key=lambda e: EDGE_ORDER.index(e.kind))
        return Graph(self.name, tuple(self._nodes.values()), tuple(edges))
