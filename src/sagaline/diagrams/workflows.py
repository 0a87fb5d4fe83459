"""The graph of a Python workflow: what its code declares, merged with what its runs did.

A workflow is ordinary Python: which steps it calls, and in which order, is only certain
once it has run (an ``if`` picks one step or another; a loop calls one many times). So the
graph has two sources:

- the **declaration**: the registered steps that the workflow function's source calls
  (found by reading its syntax tree, in source order), with their compensations and pivot
  flags from the registry. For a workflow that never ran, this is the whole graph: a
  straight line in source order.
- the **recorded paths**: each run's step records, in sequence order. Each run adds its
  transitions (and counts them on the edges); a declared step that no run took is still
  drawn, linked to its neighbours in source order, with edges that no run counted.

Compensations hang under their steps (``undo`` edges); the order they run in when a saga
unwinds — the reverse of the steps before the first pivot — is drawn as ``unwind`` edges.

One run (:func:`run_graph`, the web UI's run page) is drawn on its workflow's declaration
merged with its own path alone, or, in a process that never imported the workflow, on its
path alone.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

from sagaline.diagrams.graph import Graph, GraphBuilder, NodeKind
from sagaline.engine.registry import StepDef, WorkflowDef, get_step, get_workflow
from sagaline.model.errors import UnknownStepError, UnknownWorkflowError
from sagaline.model.records import RunRecord, StepRecord
from sagaline.model.status import StepKind, StepStatus

FORWARD: dict[StepKind, tuple[str, NodeKind, str]] = {
    StepKind.STEP: ("step", "task", ""),
    StepKind.SLEEP: ("sleep", "wait", "timer"),
    StepKind.SIGNAL: ("signal", "wait", "signal"),
    StepKind.CHILD: ("child", "task", "child workflow"),
}
"""The record kinds that are places on a run's path: (key prefix, node kind, detail).
Publishes, patch markers and child results are bookkeeping, not places."""


def declared_steps(workflow: WorkflowDef[Any, Any]) -> list[StepDef[Any, Any]]:
    """The registered steps the workflow function's source calls, in source order, once each.

    Read from the syntax tree rather than by running anything: a diagram must never have
    side effects. Names are resolved the way the function would resolve them (its closure,
    then its module's globals); a function whose source is not available (built in a
    string, a compiled module) declares nothing, and only its recorded runs draw it.
    """
    fn = workflow.fn
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return []
    scope: dict[str, Any] = dict(fn.__globals__)
    scope.update(inspect.getclosurevars(fn).nonlocals)
    calls = sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Call)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    found: dict[str, StepDef[Any, Any]] = {}
    for call in calls:
        target = _resolve(call.func, scope)
        if isinstance(target, StepDef):
            found.setdefault(target.name, target)
    return list(found.values())


def _resolve(expr: ast.expr, scope: dict[str, Any]) -> object:
    if isinstance(expr, ast.Name):
        return scope.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _resolve(expr.value, scope)
        return None if base is None else getattr(base, expr.attr, None)
    return None


def workflow_graph(
    workflow: WorkflowDef[Any, Any] | str, runs: Iterable[Sequence[StepRecord]] = ()
) -> Graph:
    """The graph of a registered Python workflow, merged with the paths its runs took.

    Args:
        workflow: the workflow, or its registered name.
        runs: the step records of each run to merge (``engine.steps(run_id)``), best of
            settled runs: a run that just finished a step draws an edge from it to the end.

    Raises:
        UnknownWorkflowError: the name is not registered in this process.
    """
    wdef = get_workflow(workflow) if isinstance(workflow, str) else workflow
    return _graph(wdef.name, declared_steps(wdef), runs)


def run_graph(run: RunRecord, step_records: Sequence[StepRecord]) -> Graph:
    """The graph one run is drawn on: its workflow's, merged with this run's path.

    A process that never imported the workflow (a server started without its module)
    still draws the run, from its records alone: the path it took so far and its
    compensations (with, for the steps it did import, their declared compensations not
    run yet). So, unlike :func:`workflow_graph`, an unknown workflow is not an error. A
    run that has not finished draws no edge to an end: its path goes on.

    Args:
        run: the run (its workflow's name and status are read).
        step_records: the run's step records, as the store returns them.
    """
    try:
        wdef = get_workflow(run.workflow)
    except UnknownWorkflowError:
        return _graph(run.workflow, [], [step_records], run.status.is_terminal)
    return _graph(wdef.name, declared_steps(wdef), [step_records], run.status.is_terminal)


def _graph(
    name: str,
    declared: list[StepDef[Any, Any]],
    runs: Iterable[Sequence[StepRecord]],
    ended: bool = True,
) -> Graph:
    """``ended``: the runs are over, so each path's last place leads to an end."""
    b = GraphBuilder(name)
    start = b.node(("start",), "start", "start")
    paths = [records for records in (list(r) for r in runs) if _forward(records)]
    seen: set[str] = set()
    for records in paths:
        seen.update(_add_run(b, start, records, ended))
    now = None if ended or not paths else b.find(_key(_forward(paths[-1])[-1]))
    _add_declared(b, start, declared, seen, draw_all=not paths, now=now)
    lines = [[_step_id(b, d) for d in declared]] if not paths else []
    lines += [[b.find(_key(r)) or "" for r in _forward(records)] for records in paths]
    _add_unwinding(b, lines)
    return b.build()


def _forward(records: Sequence[StepRecord]) -> list[StepRecord]:
    return sorted((r for r in records if r.kind in FORWARD), key=lambda r: r.seq)


def _key(rec: StepRecord) -> tuple[str, str]:
    return (FORWARD[rec.kind][0], rec.name)


def _step_id(b: GraphBuilder, sdef: StepDef[Any, Any]) -> str:
    node_id = b.node(("step", sdef.name), sdef.name, "task", pivot=sdef.pivot)
    if sdef.compensation is not None:
        comp = b.node(("comp", sdef.name), sdef.compensation.name, "compensation")
        b.edge(node_id, comp, "undo", "undo")
    return node_id


def _place(b: GraphBuilder, rec: StepRecord) -> str:
    """The node of a forward record, with what the registry knows of its step."""
    if rec.kind is StepKind.STEP:
        try:
            node_id = _step_id(b, get_step(rec.name))
        except UnknownStepError:  # recorded by code this process has not imported
            node_id = b.node(_key(rec), rec.name, "task")
        b.mark(node_id, pivot=rec.pivot)
        return node_id
    _, kind, detail = FORWARD[rec.kind]
    return b.node(_key(rec), rec.name, kind, detail=detail)


def _add_run(b: GraphBuilder, start: str, records: Sequence[StepRecord], ended: bool) -> set[str]:
    """Add one run's path and its recorded unwinding; the step names it passed."""
    forward = _forward(records)
    ids = [_place(b, rec) for rec in forward]
    for source, target in zip([start, *ids], ids, strict=False):
        b.edge(source, target, runs=1)
    by_seq = {r.seq: r for r in records}
    undone = sorted(
        (r for r in records if r.kind is StepKind.COMPENSATION and r.compensates_seq in by_seq),
        key=lambda r: r.seq,
    )
    comps = [_undo(b, by_seq[r.compensates_seq or 0], r) for r in undone]
    for later, earlier in pairwise(comps):
        b.edge(later, earlier, "unwind", runs=1)
    if ended and comps and all(r.status is not StepStatus.FAILED for r in undone):
        b.edge(comps[-1], b.node(("compensated",), "compensated", "end"), "unwind", runs=1)
    elif ended and not undone and forward and forward[-1].status is StepStatus.SUCCEEDED:
        b.edge(ids[-1], b.node(("end",), "completed", "end"), runs=1)
    return {r.name for r in forward}


def _undo(b: GraphBuilder, step: StepRecord, comp: StepRecord) -> str:
    """The compensation node of a recorded compensation (registered or not)."""
    step_id = b.find(_key(step)) or _place(b, step)
    comp_id = b.node(("comp", step.name), comp.name, "compensation")
    b.edge(step_id, comp_id, "undo", "undo", runs=1)
    return comp_id


def _add_declared(
    b: GraphBuilder,
    start: str,
    declared: list[StepDef[Any, Any]],
    seen: set[str],
    draw_all: bool,
    now: str | None = None,
) -> None:
    """Declared steps no run passed: linked to their source-order neighbours, uncounted.

    ``now``: where an unfinished run is. A step it has not reached, whose neighbour before
    it in the source it has passed (or that has none), comes after where the run is: the
    run may have gone through places the source does not declare (a signal, a sleep).
    """
    ids = [_step_id(b, d) for d in declared]
    for i, sdef in enumerate(declared):
        if draw_all or sdef.name not in seen:
            before = ids[i - 1] if i else start
            if now is not None and (not i or declared[i - 1].name in seen):
                before = now
            after = ids[i + 1] if i + 1 < len(ids) else b.node(("end",), "completed", "end")
            b.edge(before, ids[i])
            b.edge(ids[i], after)


def _add_unwinding(b: GraphBuilder, lines: list[list[str]]) -> None:
    """Along each line of steps, the compensations run in reverse up to the first pivot."""
    for line in lines:
        comps: list[str] = []
        for node_id in line:
            if not node_id or b.get(node_id).pivot:
                break
            comp = next((e.target for e in b.outgoing(node_id) if e.kind == "undo"), None)
            if comp is not None:
                comps.append(comp)
        for earlier, later in pairwise(comps):
            b.edge(later, earlier, "unwind")
        if comps:
            b.edge(comps[0], b.node(("compensated",), "compensated", "end"), "unwind")
