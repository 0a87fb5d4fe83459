"""A left-to-right layered layout, shared by the SVG drawing and BPMN's diagram interchange.

Deliberately simple and deterministic (the same graph always gets the same picture, so
diagrams diff well in a repository): each node's column is its longest distance from the
start along forward edges (loops are found by a depth-first search and drawn as back
edges above the nodes); nodes in a column keep the order they were found in, nudged
towards their predecessors. Compensations sit in a row under the steps they undo, so a
saga reads as its forward line with its undo line beneath. Containers (an ASL Parallel or
Map) are laid out inside first and then placed as one large node.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sagaline.diagrams.graph import CONTAINERS, Edge, Graph, Node

Point = tuple[float, float]
MARGIN = 24.0
GAP = 56.0
VGAP = 36.0
LANE = 14.0
PAD = 20.0
HEADER = 28.0
WRAP = 20
TASK_WIDTH = 150.0
NOTE = 14.0


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def moved(self, dx: float, dy: float) -> Box:
        return Box(self.x + dx, self.y + dy, self.w, self.h)


@dataclass(frozen=True)
class Layout:
    """Where each node goes (by id) and each edge's waypoints (in ``graph.edges`` order)."""

    boxes: Mapping[str, Box]
    routes: tuple[tuple[Point, ...], ...]
    width: float
    height: float


def wrap(text: str, width: int = WRAP) -> list[str]:
    """Split a name into lines of at most ``width`` characters, after ``.``/``_``/space
    where it can: step names are dotted paths with no spaces to break at."""
    lines: list[str] = []
    rest = text
    while len(rest) > width:
        cut = max(rest.rfind(c, 0, width) for c in "._ -/:")
        cut = cut + 1 if cut > width // 3 else width
        lines.append(rest[:cut])
        rest = rest[cut:]
    return [*lines, rest] if rest or not lines else lines


def size(node: Node, noted: bool = False) -> tuple[float, float]:
    """A leaf node's size: BPMN's usual sizes for events and gateways, tasks fit their name
    (and, ``noted``, one more line for a note under it)."""
    if node.kind in ("start", "end", "succeed", "fail", "wait"):
        return 36.0, 36.0
    if node.kind in ("choice", "fork", "join"):
        return 50.0, 50.0
    return TASK_WIDTH, 30.0 + 16.0 * len(wrap(node.name)) + 14.0 + NOTE * noted


def layout(graph: Graph, noted: Collection[str] = ()) -> Layout:
    """Lay out the whole graph; see the module docstring for the rules. ``noted``: the ids
    of the nodes that carry a note (an overlay's attempts), drawn one line taller."""
    boxes, width, height = _scope(graph, None, frozenset(noted))
    tops: dict[str | None, float] = {}
    for node in graph.nodes:
        if node.kind != "compensation":
            tops[node.parent] = min(tops.get(node.parent, boxes[node.id].y), boxes[node.id].y)
    count: dict[str | None, int] = {}
    routes: list[tuple[Point, ...]] = []
    for edge in graph.edges:
        s, t = boxes[edge.source], boxes[edge.target]
        if edge.kind in ("flow", "error") and t.x <= s.x:  # a loop: over the top
            parent = graph.node(edge.source).parent
            k = count[parent] = count.get(parent, 0) + 1
            lane = tops[parent] - LANE * (k - 0.5)
            routes.append(((s.cx, s.y), (s.cx, lane), (t.cx, lane), (t.cx, t.y)))
        else:
            routes.append(_route(s, t, edge))
    return Layout(boxes, tuple(routes), width, height)


def _route(s: Box, t: Box, edge: Edge) -> tuple[Point, ...]:
    if edge.kind == "undo":
        if abs(s.cx - t.cx) < 1:
            return ((s.cx, s.bottom), (t.cx, t.y))
        mid = (s.bottom + t.y) / 2
        return ((s.cx, s.bottom), (s.cx, mid), (t.cx, mid), (t.cx, t.y))
    if edge.kind == "unwind" and t.right <= s.x:
        start, end = (s.x, s.cy), (t.right, t.cy)
    else:
        start, end = (s.right, s.cy), (t.x, t.cy)
    if abs(start[1] - end[1]) < 1:
        return (start, (end[0], start[1]))
    mid = start[0] + (end[0] - start[0]) / 2
    return (start, (mid, start[1]), (mid, end[1]), end)


def _scope(
    graph: Graph, parent: str | None, noted: frozenset[str]
) -> tuple[dict[str, Box], float, float]:
    """Boxes of the nodes inside ``parent`` (recursively), relative to its top left corner,
    and the scope's size. Room is left above the rows for the loops' back edges."""
    inner: dict[str, tuple[dict[str, Box], float, float]] = {}
    sizes: dict[str, tuple[float, float]] = {}
    for node in graph.children(parent):
        if node.kind in CONTAINERS:
            boxes, w, h = _scope(graph, node.id, noted)
            inner[node.id] = (boxes, w, h)
            sizes[node.id] = (w + 2 * PAD, h + HEADER + PAD)
        else:
            sizes[node.id] = size(node, node.id in noted)
    below = _below(graph, parent)
    line = [n.id for n in graph.children(parent) if n.id not in below]
    edges = [
        e
        for e in graph.edges
        if e.kind in ("flow", "error") and e.source in sizes and e.target in sizes
    ]
    columns = _columns(line, edges)
    backs = sum(1 for e in edges if _rank_of(columns, e.target) <= _rank_of(columns, e.source))
    top = MARGIN + LANE * backs
    boxes = _place_columns(columns, sizes, top, _gaps(columns, edges))
    bottom = max((b.bottom for b in boxes.values()), default=top)
    _place_below(graph, below, sizes, boxes, bottom + GAP)
    for node_id, (sub, _, _) in inner.items():
        origin = boxes[node_id]
        for sub_id, box in sub.items():
            boxes[sub_id] = box.moved(origin.x + PAD, origin.y + HEADER)
    width = max((b.right for b in boxes.values()), default=0.0) + MARGIN
    height = max((b.bottom for b in boxes.values()), default=0.0) + MARGIN
    return boxes, width, height


def _below(graph: Graph, parent: str | None) -> list[str]:
    """The nodes of the undo row: compensations, and ends reached only by unwinding."""
    ids = [n.id for n in graph.children(parent)]
    into = {i: [e.kind for e in graph.edges if e.target == i] for i in ids}
    return [
        i
        for i in ids
        if graph.node(i).kind == "compensation"
        or (into[i] and all(kind == "unwind" for kind in into[i]))
    ]


def _rank_of(columns: list[list[str]], node_id: str) -> int:
    return next((r for r, col in enumerate(columns) if node_id in col), 0)


def _columns(ids: list[str], edges: list[Edge]) -> list[list[str]]:
    succ: dict[str, list[str]] = {i: [] for i in ids}
    for e in edges:
        if e.source in succ and e.target in succ and e.target not in succ[e.source]:
            succ[e.source].append(e.target)
    back = _back_edges(ids, succ)
    rank = dict.fromkeys(ids, 0)
    for node_id in _topological(ids, succ, back):
        for target in succ[node_id]:
            if (node_id, target) not in back:
                rank[target] = max(rank[target], rank[node_id] + 1)
    columns: list[list[str]] = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for node_id in ids:
        columns[rank[node_id]].append(node_id)
    for r in range(1, len(columns)):  # nudge each column towards its predecessors' order
        prev = {n: i for i, n in enumerate(columns[r - 1])}
        pos = {t: [prev[s] for s in prev if t in succ[s]] for t in columns[r]}
        columns[r].sort(key=lambda t: sum(pos[t]) / len(pos[t]) if pos[t] else len(prev))
    return columns


def _back_edges(ids: list[str], succ: dict[str, list[str]]) -> set[tuple[str, str]]:
    """Edges that close a loop, found by an iterative depth-first search from the roots."""
    has_pred = {t for targets in succ.values() for t in targets}
    roots = [i for i in ids if i not in has_pred] + ids
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    back: set[tuple[str, str]] = set()
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node_id, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                state[node_id] = 2
                stack.pop()
            elif state.get(target) == 1:
                back.add((node_id, target))
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(succ[target])))
    return back


def _topological(
    ids: list[str], succ: dict[str, list[str]], back: set[tuple[str, str]]
) -> list[str]:
    indegree = dict.fromkeys(ids, 0)
    for s, targets in succ.items():
        for t in targets:
            if (s, t) not in back:
                indegree[t] += 1
    ready = [i for i in ids if indegree[i] == 0]
    order: list[str] = []
    while ready:
        node_id = ready.pop(0)
        order.append(node_id)
        for t in succ[node_id]:
            if (node_id, t) not in back:
                indegree[t] -= 1
                if indegree[t] == 0:
                    ready.append(t)
    return order


def _gaps(columns: list[list[str]], edges: list[Edge]) -> list[float]:
    """The space after each column: wider where its edges carry labels (Choice rules)."""
    gaps = []
    for col in columns:
        longest = max((len(e.label) for e in edges if e.source in col), default=0)
        gaps.append(max(GAP, min(220.0, 6.0 * longest + 24.0)))
    return gaps


def _place_columns(
    columns: list[list[str]],
    sizes: Mapping[str, tuple[float, float]],
    top: float,
    gaps: list[float],
) -> dict[str, Box]:
    heights = [sum(sizes[i][1] for i in col) + VGAP * (len(col) - 1) for col in columns]
    tallest = max(heights, default=0.0)
    boxes: dict[str, Box] = {}
    x = MARGIN
    for col, height, gap in zip(columns, heights, gaps, strict=True):
        col_w = max(sizes[i][0] for i in col)
        y = top + (tallest - height) / 2
        for node_id in col:
            w, h = sizes[node_id]
            boxes[node_id] = Box(x + (col_w - w) / 2, y, w, h)
            y += h + VGAP
        x += col_w + gap
    return boxes


def _place_below(
    graph: Graph,
    below: list[str],
    sizes: Mapping[str, tuple[float, float]],
    boxes: dict[str, Box],
    row: float,
) -> None:
    """Each compensation under its step; an unwinding's end left of the last compensation."""
    placed: list[Box] = []
    ordered = [i for i in below if graph.node(i).kind == "compensation"]
    ordered += [i for i in below if i not in ordered]
    for node_id in ordered:
        w, h = sizes[node_id]
        is_comp = graph.node(node_id).kind == "compensation"
        into = [e for e in graph.edges if e.target == node_id]
        anchor = next((e.source for e in into if e.kind == ("undo" if is_comp else "unwind")), None)
        x, y = MARGIN, row
        if anchor is not None and anchor in boxes and is_comp:
            x = boxes[anchor].cx - w / 2
        elif anchor is not None and anchor in boxes:  # level with the compensation before it
            x, y = boxes[anchor].x - GAP - w, boxes[anchor].cy - h / 2
        box = Box(max(x, 0.0), y, w, h)
        while any(_overlaps(box, other) for other in placed):
            box = box.moved(0, h + VGAP)
        placed.append(box)
        boxes[node_id] = box


def _overlaps(a: Box, b: Box) -> bool:
    return a.x < b.right + 8 and b.x < a.right + 8 and a.y < b.bottom and b.y < a.bottom
