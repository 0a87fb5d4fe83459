"""The graph of an Amazon States Language machine, read straight from its JSON.

Drawing needs only the document's shape (``StartAt``, ``States``, ``Next``, ``End``,
Choice rules, ``Catch``, Parallel branches, Map's item processor), so this reads the
public format itself and needs no interpreter: a machine that does not run yet — a
missing resource, a half-written definition — can still be looked at. It draws what is
there and skips what is not (a ``Next`` to no state); validation is ``sagaline asl
validate``'s job.

A Catch is an error route (an ``error`` edge labelled with its error names); the states
reached only through such routes are a saga's compensation states and are marked
``recovery``. A ``sagaline:STEP`` task whose step is registered in this process takes the
step's pivot flag and its compensation, as the step carries them when the machine runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sagaline.diagrams.graph import CONTAINERS, Graph, GraphBuilder, NodeKind
from sagaline.engine.registry import get_step
from sagaline.model.errors import DefinitionError, UnknownStepError

KINDS: dict[str, NodeKind] = {
    "Choice": "choice",
    "Parallel": "parallel",
    "Map": "map",
    "Succeed": "succeed",
    "Fail": "fail",
    "Wait": "wait",
}
"""ASL state types drawn as something other than a task (Task and Pass are tasks)."""
LABEL_MAX = 60


def load_definition(definition: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    """A definition given as a dict, as JSON text, or as the path of a JSON file."""
    if isinstance(definition, Mapping):
        return definition
    text = definition if isinstance(definition, str) and definition.lstrip()[:1] == "{" else None
    try:
        if text is None:
            text = Path(definition).read_text("utf-8")
        doc = json.loads(text)
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"cannot read the state machine definition: {exc}") from exc
    if not isinstance(doc, dict):
        raise DefinitionError("a state machine definition is a JSON object")
    return doc


def asl_graph(definition: Mapping[str, Any] | str | Path, *, name: str | None = None) -> Graph:
    """The graph of an ASL state machine.

    Args:
        definition: the machine as a dict, JSON text, or a JSON file's path.
        name: the diagram's title (default: the definition's ``Comment``).

    Raises:
        DefinitionError: the definition is not a readable JSON object.
    """
    doc = load_definition(definition)
    b = GraphBuilder(name or str(doc.get("Comment") or "state machine"))
    start = b.node(("start",), "start", "start")
    first, exits = _machine(b, doc, (), None)
    if first is not None:
        b.edge(start, first)
    for node_id in exits:
        if b.get(node_id).kind not in ("succeed", "fail"):
            b.edge(node_id, b.node(("end",), "end", "end"))
    _mark_recovery(b, start)
    return b.build()


def _states(machine: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    states = machine.get("States")
    if not isinstance(states, Mapping):
        return {}
    return {str(k): v for k, v in states.items() if isinstance(v, Mapping)}


def _machine(
    b: GraphBuilder, machine: Mapping[str, Any], scope: tuple[str, ...], parent: str | None
) -> tuple[str | None, list[str]]:
    """Add a machine's (or a branch's) states: the id of its first state, and of the
    states that end it (``End: true``, Succeed, Fail)."""
    states = _states(machine)
    ids = {sn: _state_node(b, sn, st, scope, parent) for sn, st in states.items()}
    exits: list[str] = []
    for sn, st in states.items():
        node_id = ids[sn]
        kind = b.get(node_id).kind
        if kind in CONTAINERS:
            _container(b, node_id, st, (*scope, sn))
        for target, label, edge_kind in _transitions(st):
            if target in ids:
                b.edge(node_id, ids[target], edge_kind, label)
        if st.get("End") is True or kind in ("succeed", "fail"):
            exits.append(node_id)
    return ids.get(str(machine.get("StartAt"))), exits


def _state_node(
    b: GraphBuilder,
    state_name: str,
    state: Mapping[str, Any],
    scope: tuple[str, ...],
    parent: str | None,
) -> str:
    state_type = str(state.get("Type", ""))
    resource = state.get("Resource")
    detail = f"{state_type}: {resource}" if isinstance(resource, str) else state_type
    kind = KINDS.get(state_type, "task")
    node_id = b.node(("state", *scope, state_name), state_name, kind, parent=parent, detail=detail)
    if isinstance(resource, str) and resource.startswith("sagaline:"):
        try:
            sdef = get_step(resource.removeprefix("sagaline:"))
        except UnknownStepError:
            return node_id  # drawn as a plain task until its module is imported
        b.mark(node_id, pivot=sdef.pivot)
        if sdef.compensation is not None:
            comp = b.node(
                ("comp", *scope, state_name),
                sdef.compensation.name,
                "compensation",
                parent=parent,
            )
            b.edge(node_id, comp, "undo", "undo")
    return node_id


def _transitions(state: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(target state, label, edge kind) of every way out of a state, in document order."""
    out: list[tuple[str, str, Any]] = []
    if isinstance(state.get("Next"), str):
        out.append((state["Next"], "", "flow"))
    for rule in state.get("Choices") or []:
        if isinstance(rule, Mapping) and isinstance(rule.get("Next"), str):
            out.append((rule["Next"], _short(_condition(rule)), "flow"))
    if isinstance(state.get("Default"), str):
        out.append((state["Default"], "default", "flow"))
    for catcher in state.get("Catch") or []:
        if isinstance(catcher, Mapping) and isinstance(catcher.get("Next"), str):
            errors = catcher.get("ErrorEquals") or []
            out.append((catcher["Next"], _short(", ".join(map(str, errors))), "error"))
    return out


def _condition(rule: Mapping[str, Any]) -> str:
    """A Choice rule in a few words: its JSONata condition, or variable, operator, value."""
    if isinstance(rule.get("Condition"), str):
        return str(rule["Condition"])
    for combinator in ("And", "Or"):
        if isinstance(rule.get(combinator), list):
            parts = [_condition(r) for r in rule[combinator] if isinstance(r, Mapping)]
            return f" {combinator.lower()} ".join(parts)
    if isinstance(rule.get("Not"), Mapping):
        return f"not {_condition(rule['Not'])}"
    operator = next((k for k in rule if k not in ("Variable", "Next", "Comment")), "")
    value = json.dumps(rule.get(operator), ensure_ascii=False) if operator else ""
    return " ".join(p for p in (str(rule.get("Variable", "")), operator, value) if p)


def _short(text: str) -> str:
    return text if len(text) <= LABEL_MAX else text[: LABEL_MAX - 1] + "…"


def _container(
    b: GraphBuilder, node_id: str, state: Mapping[str, Any], scope: tuple[str, ...]
) -> None:
    """A Parallel's branches between a fork and a join, or a Map's item processor, inside."""
    start = b.node(("start", *scope), "start", "start", parent=node_id)
    end = b.node(("end", *scope), "end", "end", parent=node_id)
    if state.get("Type") == "Parallel":
        fork = b.node(("fork", *scope), "fork", "fork", parent=node_id)
        join = b.node(("join", *scope), "join", "join", parent=node_id)
        b.edge(start, fork)
        for i, branch in enumerate(state.get("Branches") or []):
            if isinstance(branch, Mapping):
                _enter(b, fork, join, branch, (*scope, str(i)), node_id)
        b.edge(join, end)
        return
    processor = state.get("ItemProcessor") or state.get("Iterator")
    if isinstance(processor, Mapping):
        _enter(b, start, end, processor, scope, node_id)


def _enter(
    b: GraphBuilder,
    before: str,
    after: str,
    machine: Mapping[str, Any],
    scope: tuple[str, ...],
    parent: str,
) -> None:
    first, exits = _machine(b, machine, scope, parent)
    if first is not None:
        b.edge(before, first)
    for node_id in exits:
        if b.get(node_id).kind != "fail":
            b.edge(node_id, after)


def _mark_recovery(b: GraphBuilder, start: str) -> None:
    """Mark the states reached only through Catch routes: the compensation states."""
    graph = b.build()
    reached = {start}
    todo = [start]
    while todo:
        node_id = todo.pop()
        nexts = [e.target for e in graph.edges if e.source == node_id and e.kind == "flow"]
        nexts += [n.id for n in graph.children(node_id) if n.kind == "start"]
        for target in nexts:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    for node in graph.nodes:
        if node.id not in reached and node.kind not in ("compensation", "end"):
            b.mark(node.id, recovery=True)
