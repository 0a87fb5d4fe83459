"""The reference model: DESIGN §2 in a page of plain Python, with no engine in it.

Given a scenario (the plan, every step's fate, the operator's script), it says how the run
must end, which steps complete in which order, and which compensations run in which order:

- Steps run in plan order; a step whose fate completes succeeds, the others fail the run.
  A missing signal times out and fails the run; a failed child fails its parent, after it
  has compensated its own completed steps itself.
- Compensations run in reverse completion order, once each; a completed child's steps are
  part of its parent's stack, in the place where the child ran.
- Nothing is compensated once a pivot (of the run, or of a child it ran) has succeeded: a
  later failure parks the run in FAILED_AFTER_PIVOT; if the operator fixes a failed
  main-line step and retries, the run goes forward from it.
- A failure ends COMPENSATED if a step with a compensation completed anywhere in the saga
  (its children included), else FAILED. A compensation that gets stuck parks the run; the
  operator retries it (it then succeeds) or skips it (it never succeeds; unwinding goes on).
- A cancel accepted before any pivot ends the run CANCELLED: the step in flight is
  recorded and compensated with the rest; a step waiting to retry is not retried.
- When a parallel branch fails, the steps already running finish, and every step that
  completed is compensated.

Which steps of parallel branches complete, and in what order, depends on timing: the
model takes that order from the ledger (the test's own record of every step that ran)
and checks it is possible — within a branch, in order, and stopping at its failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sagaline import RunStatus
from tests.property.plans import (
    CancelMode,
    Child,
    Gather,
    Kind,
    Node,
    Scenario,
    Signal,
    Sleep,
    Step,
    UndoFate,
)

Entry = tuple[str, str]
"""A ledger line: (what happened, the step's key). ``try``, ``ok``, ``fail``, ``undo``,
``undo-fail``, ``reach`` (the workflow got to a sleep or signal), ``crash``, ``cancel-*``."""


@dataclass
class Expected:
    status: RunStatus
    completed: list[str]
    """Every step that completes (in children too), in completion order."""
    undone: list[str]
    """Every compensation that succeeds, in the order they run."""
    may_try: set[str]
    """The steps that may be attempted at all."""
    output: list[str] | None
    """The run's result, if it completes."""
    impossible: list[str] = field(default_factory=list)
    """What the ledger shows that no correct engine could have done."""
    disputed: RunStatus | None = None
    """Another final status the engine may defend: it counts a child run as something
    compensable in itself, even when no step of it has a compensation (the model follows
    DESIGN §2: FAILED when nothing was compensable). ``verdict(strict=True)`` refuses it."""


def completion_order(ledger: Sequence[Entry]) -> list[str]:
    """Keys by their last success: after a crash, the success that was recorded."""
    last = {key: i for i, (what, key) in enumerate(ledger) if what == "ok"}
    return sorted(last, key=last.__getitem__)


def expect(sc: Scenario, ledger: Sequence[Entry]) -> Expected:
    run = _Run(sc, completion_order(ledger), main=True)
    finished = run.nodes(sc.nodes)
    undone = list(run.undone_by_children)
    output = None
    if run.cancelled:
        status = RunStatus.CANCELLED
        undone += _unwind(run.stack)
    elif finished:
        status, output = RunStatus.COMPLETED, run.output
    elif run.sealed:
        status = RunStatus.FAILED_AFTER_PIVOT
    else:
        status = RunStatus.COMPENSATED if run.compensable else RunStatus.FAILED
        undone += _unwind(run.stack)
    exp = Expected(status, run.completed, undone, run.may_try, output, run.impossible)
    return exp


def _unwind(stack: list[Step]) -> list[str]:
    return [s.key for s in reversed(stack) if s.undo is not UndoFate.STUCK_SKIP]


class _Run:
    def __init__(self, sc: Scenario, observed: list[str], main: bool) -> None:
        self.sc = sc
        self.observed = observed
        self.main = main
        self.completed: list[str] = []
        self.stack: list[Step] = []
        """Completed steps with a compensation, that this run's unwinding undoes."""
        self.undone_by_children: list[str] = []
        self.may_try: set[str] = set()
        self.output: list[str] = []
        self.sealed = False
        self.cancelled = False
        self.compensable = False
        """A step with a compensation completed, here or in a child."""
        self.ran_child = False
        self.impossible: list[str] = []

    def nodes(self, nodes: Sequence[Node]) -> bool:
        """Run the nodes in order; False when the run failed or was cancelled."""
        return all(self.node(node) for node in nodes)

    def node(self, node: Node) -> bool:
        if isinstance(node, Step):
            return self.step(node)
        if isinstance(node, Sleep):
            return not self.cancel_here(node.key, CancelMode.SUSPENDED)
        if isinstance(node, Signal):
            if node.sent:
                self.output.append(f"sig-{node.key}")
            return node.sent
        if isinstance(node, Gather):
            return self.gather(node)
        return self.child(node)

    def cancel_here(self, key: str, mode: CancelMode) -> bool:
        cancel = self.sc.cancel
        if self.main and cancel is not None and (cancel.target, cancel.mode) == (key, mode):
            self.cancelled = True
        return self.cancelled

    def step(self, step: Step) -> bool:
        self.may_try.add(step.key)
        if self.cancel_here(step.key, CancelMode.BACKOFF):
            return False
        fixed = self.main and self.sealed and self.sc.fix_after_pivot
        if not (step.fate.completes or fixed):
            return False
        self.complete(step)
        self.output.append(f"out-{step.key}")
        return not self.cancel_here(step.key, CancelMode.DURING)

    def complete(self, step: Step) -> None:
        self.completed.append(step.key)
        if step.kind.undoable:
            self.stack.append(step)
            self.compensable = True
        if step.kind is Kind.PIVOT:
            self.sealed = True

    def gather(self, gather: Gather) -> bool:
        branches = [[s for s in b if isinstance(s, Step)] for b in gather.branches]
        fails = any(not s.fate.completes for b in branches for s in b)
        by_key = {s.key: s for b in branches for s in b}
        seen = [key for key in self.observed if key in by_key]
        for branch in branches:
            can = []
            for s in branch:
                self.may_try.add(s.key)
                if not s.fate.completes:
                    break
                can.append(s.key)
            got = [key for key in seen if key in {s.key for s in branch}]
            if got != can[: len(got)] or (not fails and got != can):
                self.impossible.append(
                    f"gather {gather.key}: branch {[s.key for s in branch]} completed {got}"
                )
        for key in seen:
            self.complete(by_key[key])
        if fails:
            return False
        self.output += [f"out-{s.key}" for b in branches for s in b]
        return True

    def child(self, child: Child) -> bool:
        sub = _Run(self.sc, self.observed, main=False)
        ok = sub.nodes(child.nodes)
        self.completed += sub.completed
        self.may_try |= sub.may_try
        self.impossible += sub.impossible
        self.sealed |= sub.sealed  # a child past its pivot seals its parent too
        self.compensable |= sub.compensable
        self.ran_child = True
        if ok:
            self.stack += sub.stack
            self.output += sub.output
            return True
        if not sub.sealed:
            self.undone_by_children += _unwind(sub.stack)  # the child unwinds itself first
        return False
