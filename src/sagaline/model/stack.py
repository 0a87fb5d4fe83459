"""The compensation stack, derived from a run's step records.

A succeeded step with a compensation is on the stack until its compensation succeeds or is
skipped by an operator. Once a pivot step has succeeded the stack is sealed: the run only
goes forward. Deriving the stack from the durable step rows (instead of keeping a second
copy) means a worker that recovers a run after a crash sees exactly what is left to undo.
"""

from __future__ import annotations

from collections.abc import Iterable

from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind, StepStatus


def passed_pivot(steps: Iterable[StepRecord]) -> str | None:
    """The name of the pivot step that sealed the stack, if one succeeded."""
    for rec in steps:
        if rec.kind is StepKind.STEP and rec.pivot and rec.status is StepStatus.SUCCEEDED:
            return rec.name
    return None


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
    todo = [
        rec
        for rec in steps
        if rec.kind is StepKind.STEP
        and rec.compensable
        and rec.status is StepStatus.SUCCEEDED
        and rec.seq not in resolved
    ]
    return sorted(todo, key=lambda rec: rec.done_index, reverse=True)


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
