"""What the property tests generate: a saga's plan, what each step attempt does, and what
an operator or a crash does to the run. Pure data, JSON through msgspec.

A plan is a list of nodes run in order: a step, a ``gather`` of branches (each a list of
steps run in order), a durable sleep, a signal wait, or a child workflow (steps and
sleeps). Every step carries its fate: what its attempts do, counted across crashes.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Kind(StrEnum):
    PLAIN = "plain"
    """No compensation."""
    UNDOABLE = "undoable"
    """Has a compensation."""
    PIVOT = "pivot"
    """``pivot=True``: once it succeeds, nothing is compensated."""
    SLOW = "slow"
    """Has a compensation; waits 0.5 s between attempts (room for a cancel in the backoff)."""

    @property
    def undoable(self) -> bool:
        return self in (Kind.UNDOABLE, Kind.SLOW)


class Fate(StrEnum):
    """What a step's attempts do; ``n`` counts every attempt, across crashes."""

    OK = "ok"
    FLAKY1 = "flaky1"
    """A retryable failure, then success."""
    FLAKY2 = "flaky2"
    """Two retryable failures, then success (3 attempts are allowed)."""
    FATAL = "fatal"
    """A ``NonRetryable`` failure, every time."""
    EXHAUST = "exhaust"
    """A retryable failure, every time: it gives up after its attempts."""

    @property
    def completes(self) -> bool:
        return self in (Fate.OK, Fate.FLAKY1, Fate.FLAKY2)

    @property
    def retryable(self) -> bool:
        return self is not Fate.FATAL

    def fails(self, n: int) -> bool:
        """Whether attempt ``n`` (1-based) fails."""
        return {Fate.OK: 0, Fate.FLAKY1: 1, Fate.FLAKY2: 2}.get(self, n) >= n


class UndoFate(StrEnum):
    """What a compensation's attempts do."""

    OK = "ok"
    FLAKY = "flaky"
    """One retryable failure, then success."""
    STUCK_RETRY = "stuck-retry"
    """Fails until an operator fixes the cause and retries: the run parks on the way."""
    STUCK_SKIP = "stuck-skip"
    """Fails until an operator skips it (resolved by hand): it never succeeds."""

    def fails(self, n: int) -> bool:
        return self is not UndoFate.OK and (self is not UndoFate.FLAKY or n <= 1)


class Step(msgspec.Struct, frozen=True, tag="step"):
    key: str
    kind: Kind
    fate: Fate = Fate.OK
    undo: UndoFate = UndoFate.OK
    delay: float = 0.0
    """Real seconds each attempt takes, so that parallel branches interleave."""


class Sleep(msgspec.Struct, frozen=True, tag="sleep"):
    key: str
    seconds: float


class Signal(msgspec.Struct, frozen=True, tag="signal"):
    key: str
    sent: bool
    """Sent (and kept until the wait consumes it); else the wait times out."""
    late: bool = False
    """Sent once the run is suspended at the wait, rather than right after the start."""


class Gather(msgspec.Struct, frozen=True, tag="gather"):
    key: str
    branches: list[list[Step | Sleep]]


class Child(msgspec.Struct, frozen=True, tag="child"):
    key: str
    nodes: list[Step | Sleep]


Node = Step | Sleep | Signal | Gather | Child


class CancelMode(StrEnum):
    DURING = "during"
    """Cancelled from inside the target step's attempt, which then succeeds."""
    BACKOFF = "backoff"
    """Cancelled while the target step waits to retry its failed first attempt."""
    SUSPENDED = "suspended"
    """Cancelled while the run sleeps at the target sleep."""


class Cancel(msgspec.Struct, frozen=True):
    target: str
    mode: CancelMode
    via_worker: bool
    """Through the engine executing the run (else through a client engine)."""


class Crash(msgspec.Struct, frozen=True):
    """The worker dies at its ``commit``-th commit, before it lands or just after."""

    commit: int
    before: bool


class Scenario(msgspec.Struct, frozen=True):
    nodes: list[Node]
    fix_after_pivot: bool = False
    """A step that fails after the pivot is fixed, and the run retried (forward)."""
    cancel: Cancel | None = None
    crashes: list[Crash] = []

    def steps(self) -> dict[str, Step]:
        found: dict[str, Step] = {}
        for node in self.nodes:
            for step in steps_of(node):
                found[step.key] = step
        return found

    def main_line_steps(self) -> set[str]:
        return {node.key for node in self.nodes if isinstance(node, Step)}

    def signals(self, late: bool) -> list[str]:
        """The signals sent right after the start (or, ``late``, at their wait)."""
        return [n.key for n in self.nodes if isinstance(n, Signal) and n.sent and n.late == late]

    def describe(self) -> str:
        text = "[" + ", ".join(_describe(node) for node in self.nodes) + "]"
        if self.fix_after_pivot:
            text += " fix-after-pivot"
        if self.cancel is not None:
            via = "worker" if self.cancel.via_worker else "client"
            text += f" cancel {self.cancel.mode.value} {self.cancel.target} via {via}"
        for crash in self.crashes:
            text += f" crash {'before' if crash.before else 'after'} commit {crash.commit}"
        return text


def steps_of(node: Node) -> list[Step]:
    if isinstance(node, Step):
        return [node]
    if isinstance(node, Gather):
        return [step for branch in node.branches for step in branch if isinstance(step, Step)]
    if isinstance(node, Child):
        return [n for n in node.nodes if isinstance(n, Step)]
    return []


def _describe(node: Node) -> str:
    if isinstance(node, Step):
        text = f"{node.kind.value} {node.key} {node.fate.value}"
        if node.kind.undoable and node.undo is not UndoFate.OK:
            text += f"/undo {node.undo.value}"
        return text
    if isinstance(node, Sleep):
        return f"sleep {node.key} {node.seconds:g}s"
    if isinstance(node, Signal):
        sent = ("sent late" if node.late else "sent") if node.sent else "missing"
        return f"signal {node.key} {sent}"
    if isinstance(node, Gather):
        branches = " | ".join(", ".join(_describe(s) for s in b) for b in node.branches)
        return f"gather {node.key}({branches})"
    return f"child {node.key}(" + ", ".join(_describe(n) for n in node.nodes) + ")"
