"""The compensation stack, derived from a run's step records.

A succeeded step with a compensation is on the stack until its compensation succeeds or is
skipped by an operator. A child run is on it too, from its start: a child is part of its
parent's saga, undone (cancelled while it runs, compensated once it completed) in reverse
completion order with the parent's own steps. Once a pivot step has succeeded (or a child
that passed its own pivot completed) the stack is sealed: the run only goes forward.
Deriving the stack from the durable step rows (instead of keeping a second copy) means
a worker that recovers a run after a crash sees exactly what is left to undo.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind, StepStatus

# A child that ended this way has nothing left to undo.
_UNDONE_CHILD = frozenset({"COMPENSATED", "FAILED", "CANCELLED"})


def passed_pivot(steps: Iterable[StepRecord]) -> str | None:
    """The name of the pivot that sealed the stack, if one succeeded."""
    for rec in steps:
        if rec.pivot and rec.status is StepStatus.SUCCEEDED:
            if rec.kind is StepKind.STEP:
                return rec.name
            if rec.kind is StepKind.CHILD_RESULT:
                return f"child {rec.name}"
    return None


def running_pivot(steps: Iterable[StepRecord]) -> str | None:
    """The pivot step in flight, if one has started and not ended."""
    for rec in steps:
        if rec.kind is StepKind.STEP and rec.pivot and rec.status is StepStatus.RUNNING:
            return rec.name
    return None


def child_id(rec: StepRecord) -> str:
    """The run id a CHILD record started (its output, a JSON string)."""
    return str(json.loads(rec.output or b'""'))


def unknown(rec: StepRecord) -> bool:
    """A step whose last attempt timed out, declared ``compensate_unknown``: it may have
    had its effect, so it is compensated as if it had succeeded."""
    return (
        rec.kind is StepKind.STEP
        and rec.status is StepStatus.FAILED
        and rec.compensable
        and bool((rec.error or {}).get("unknown"))
    )


def unwinding(steps: Iterable[StepRecord]) -> bool:
    """Unwinding has begun: some compensation (done, failed or awaited) is recorded."""
    return any(rec.kind is StepKind.COMPENSATION for rec in steps)


def pending_compensations(steps: list[StepRecord]) -> list[StepRecord]:
    """Steps still to compensate, in the order to compensate them (last completed first)."""
    if passed_pivot(steps) is not None:
        return []
    resolved = {
        rec.compensates_seq
        for rec in steps
        if rec.kind is StepKind.COMPENSATION
        and rec.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
    }
    results = {rec.name: rec for rec in steps if rec.kind is StepKind.CHILD_RESULT}
    order: dict[int, int] = {}
    for rec in steps:
        if rec.seq in resolved or not (rec.status is StepStatus.SUCCEEDED or unknown(rec)):
            continue
        if rec.kind is StepKind.STEP and rec.compensable:
            order[rec.seq] = rec.done_index
        elif rec.kind is StepKind.CHILD:
            result = results.get(child_id(rec))
            if result is None:
                order[rec.seq] = rec.done_index  # still running, or never awaited
            elif (result.error or {}).get("status") not in _UNDONE_CHILD:
                order[rec.seq] = result.done_index  # completed (or parked): undo it
    by_seq = {rec.seq: rec for rec in steps}
    return [by_seq[seq] for seq in sorted(order, key=lambda s: order[s], reverse=True)]


def failed_compensation(steps: list[StepRecord]) -> StepRecord | None:
    """The compensation that parked the run, if any."""
    for rec in steps:
        if rec.kind is StepKind.COMPENSATION and rec.status is StepStatus.FAILED:
            return rec
    return None


def next_seq(steps: Iterable[StepRecord]) -> int:
    return max((rec.seq for rec in steps), default=0) + 1


def next_done_index(steps: Iterable[StepRecord]) -> int:
    return max((rec.done_index for rec in steps), default=0) + 1
