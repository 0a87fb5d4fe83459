"""Hypothesis strategies for scenarios: plans, fates, crashes and an operator's cancel."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from tests.property.plans import (
    Cancel,
    CancelMode,
    Child,
    Crash,
    Fate,
    Gather,
    Kind,
    Node,
    Scenario,
    Signal,
    Sleep,
    Step,
    UndoFate,
)

# Mostly successes, so that runs get somewhere before they fail.
FATES = [Fate.OK] * 5 + [Fate.FLAKY1, Fate.FLAKY2, Fate.FATAL, Fate.EXHAUST]
SAFE_FATES = [Fate.OK] * 3 + [Fate.FLAKY1, Fate.FLAKY2]
UNDO_FATES = [UndoFate.OK] * 5 + [UndoFate.FLAKY, UndoFate.STUCK_RETRY, UndoFate.STUCK_SKIP]
CHILD_UNDO_FATES = [UndoFate.OK, UndoFate.OK, UndoFate.FLAKY]
DELAYS = [0.0, 0.0, 0.002, 0.01]
SLEEPS = [0.0, 1.0, 3600.0, 86400.0]


@dataclass(frozen=True)
class Shape:
    max_nodes: int = 5
    branch_len: int = 1
    """The longest parallel branch, in steps."""
    waits: bool = True
    """Sleeps and signal waits."""
    children: bool = True
    pivots: bool = True
    failures: bool = True
    """Steps that give up, signals that never come."""
    undo_in_completed_children: bool = True
    """Whether a child that completes may have compensations (its parent must undo them)."""
    undoable: bool = True
    """Whether steps may have compensations at all."""


class _Plan:
    """Draws nodes with keys unique in the scenario."""

    def __init__(self, draw: st.DrawFn, shape: Shape) -> None:
        self.draw = draw
        self.shape = shape
        self.count = 0

    def key(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def fate(self) -> Fate:
        return self.draw(st.sampled_from(FATES if self.shape.failures else SAFE_FATES))

    def step(
        self, kinds: list[Kind], undo: list[UndoFate] = UNDO_FATES, delay: bool = False
    ) -> Step:
        kind = self.draw(st.sampled_from(kinds))
        return Step(
            self.key("s"),
            kind,
            self.fate(),
            self.draw(st.sampled_from(undo)) if kind.undoable else UndoFate.OK,
            self.draw(st.sampled_from(DELAYS)) if delay else 0.0,
        )

    def node(self) -> Node:
        shape = self.shape
        choices = ["step"] * 3 + ["gather"]
        choices += ["sleep", "signal"] if shape.waits else []
        choices += ["child"] if shape.children else []
        what = self.draw(st.sampled_from(choices))
        if what == "step":
            return self.step(self.kinds() + [Kind.PIVOT] * shape.pivots)
        if what == "gather":
            return self.gather(shape.branch_len)
        if what == "sleep":
            return self.sleep(SLEEPS)
        if what == "signal":
            sent = self.draw(st.booleans()) or not shape.failures
            return Signal(self.key("g"), sent, sent and self.draw(st.booleans()))
        return self.child(shape.undo_in_completed_children)

    def kinds(self) -> list[Kind]:
        return [Kind.PLAIN, *[Kind.UNDOABLE] * 2 * self.shape.undoable]

    def nodes(self, low: int, high: int) -> list[Node]:
        return [self.node() for _ in range(self.draw(st.integers(low, high)))]

    def sleep(self, seconds: list[float]) -> Sleep:
        return Sleep(self.key("z"), self.draw(st.sampled_from(seconds)))

    def gather(self, branch_len: int, min_len: int = 1) -> Gather:
        key = self.key("p")
        lengths = st.lists(st.integers(1, branch_len), min_size=2, max_size=3)
        sizes = self.draw(lengths.filter(lambda ls: max(ls) >= min_len))
        branches = [[self.branch_node() for _ in range(n)] for n in sizes]
        return Gather(key, branches)

    def branch_node(self) -> Step | Sleep:
        if self.shape.waits and self.draw(st.integers(0, 3)) == 3:
            return self.sleep([0.0, 60.0])
        return self.step(self.kinds(), delay=True)

    def child(self, undo_if_completed: bool, min_undoable: int = 0) -> Child:
        key = self.key("c")
        nodes: list[Step | Sleep] = []
        for _ in range(self.draw(st.integers(1, 3))):
            if self.shape.waits and self.draw(st.integers(0, 3)) == 3:
                nodes.append(self.sleep([1.0, 3600.0]))
            else:
                kinds = self.kinds()[:2] + [Kind.PIVOT] * self.shape.pivots
                nodes.append(self.step(kinds, CHILD_UNDO_FATES))
        steps = [n for n in nodes if isinstance(n, Step)]
        completes = all(s.fate.completes for s in steps)
        if completes and not undo_if_completed:
            nodes = [_plain(n) for n in nodes]
        elif len([s for s in steps if s.kind.undoable]) < min_undoable:
            nodes.append(Step(self.key("s"), Kind.UNDOABLE))
        return Child(key, nodes)


def _plain(node: Step | Sleep) -> Step | Sleep:
    if isinstance(node, Step) and node.kind.undoable:
        return Step(node.key, Kind.PLAIN, node.fate)
    return node


def _crashes(most: int, last_commit: int = 12) -> st.SearchStrategy[list[Crash]]:
    crash = st.builds(Crash, commit=st.integers(1, last_commit), before=st.booleans())
    return st.lists(crash, min_size=1, max_size=most)


@st.composite
def scenarios(draw: st.DrawFn, shape: Shape = Shape(), crashes: int = 0) -> Scenario:
    """Any plan of ``shape``; with ``crashes``, the worker dies up to that many times."""
    plan = _Plan(draw, shape)
    nodes = plan.nodes(1, shape.max_nodes)
    fix = shape.pivots and draw(st.booleans())
    return Scenario(nodes, fix, crashes=draw(_crashes(crashes)) if crashes else [])


@st.composite
def multi_step_branches(draw: st.DrawFn, replay: bool) -> Scenario:
    """A gather with a branch of two or more steps; with ``replay``, the run replays it
    afterwards (it sleeps, and the worker may also die)."""
    plan = _Plan(draw, Shape(waits=False, children=False, failures=not replay))
    nodes = [*plan.nodes(0, 1), plan.gather(3, min_len=2)]
    if not replay:  # (an operator's retry after the pivot would replay it too)
        return Scenario([*nodes, *plan.nodes(0, 2)])
    nodes += [plan.sleep([1.0, 3600.0]), plan.step([Kind.PLAIN, Kind.UNDOABLE])]
    crashes = draw(st.one_of(st.just([]), _crashes(1, last_commit=10)))
    return Scenario(nodes, crashes=crashes)


@st.composite
def parent_failing_after_a_child(draw: st.DrawFn) -> Scenario:
    """A child with compensations completes; then its parent fails and unwinds."""
    plan = _Plan(draw, Shape(pivots=False, failures=False))
    nodes = [*plan.nodes(0, 2), plan.child(undo_if_completed=True, min_undoable=1)]
    nodes += plan.nodes(0, 1)
    kind = draw(st.sampled_from([Kind.PLAIN, Kind.UNDOABLE]))
    fate = draw(st.sampled_from([Fate.FATAL, Fate.EXHAUST]))
    failing: Node = Step(plan.key("s"), kind, fate)
    if draw(st.booleans()):
        failing = Signal(plan.key("g"), sent=False)
    return Scenario([*nodes, failing])


@st.composite
def failing_with_nothing_compensable(draw: st.DrawFn) -> Scenario:
    """No step has a compensation; a child runs; then the run fails: after the child
    completed, or because the child failed."""
    plan = _Plan(draw, Shape(pivots=False, failures=False, undoable=False))
    nodes = plan.nodes(0, 2)
    child = plan.child(undo_if_completed=False)
    failing = Step(plan.key("s"), Kind.PLAIN, draw(st.sampled_from([Fate.FATAL, Fate.EXHAUST])))
    if draw(st.booleans()):
        return Scenario([*nodes, Child(child.key, [*child.nodes, failing])])
    return Scenario([*nodes, child, *plan.nodes(0, 1), failing])


@st.composite
def cancels(draw: st.DrawFn, modes: list[CancelMode], last: bool = False) -> Scenario:
    """A cancel at a point before any pivot; with ``last``, in the plan's last step."""
    safe = _Plan(draw, Shape(max_nodes=3, pivots=False, failures=False))
    nodes = safe.nodes(0, 3)
    mode = draw(st.sampled_from(modes))
    target: Node
    if mode is CancelMode.SUSPENDED:
        target = safe.sleep([60.0, 86400.0])
    elif mode is CancelMode.BACKOFF:
        target = Step(safe.key("s"), Kind.SLOW, Fate.FLAKY1, draw(st.sampled_from(UNDO_FATES)))
    else:
        target = safe.step([Kind.PLAIN, Kind.UNDOABLE])
        target = Step(target.key, target.kind, Fate.OK, target.undo)
    rest = _Plan(draw, Shape(max_nodes=2))
    rest.count = safe.count
    suffix = [] if last else rest.nodes(1 if mode is CancelMode.DURING else 0, 2)
    cancel = Cancel(target.key, mode, draw(st.booleans()))
    return Scenario([*nodes, target, *suffix], cancel=cancel)
