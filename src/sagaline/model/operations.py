"""What an operator's cancel, retry or skip does to a run, decided from its records alone.

The store applies the change only if the run is still in one of the statuses the decision
was made for, so a decision never lands on a run that moved on in the meantime.
"""

from __future__ import annotations

from sagaline.model import events as ev
from sagaline.model import stack
from sagaline.model.errors import InvalidOperationError
from sagaline.model.records import NewEvent, OperatorChange, RunRecord, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus

PARENT_UNWINDING = "ParentUnwinding"
"""The cause a completed child unwinds with when its parent asks it to."""


def plan_cancel(run: RunRecord, steps: list[StepRecord], at: float) -> OperatorChange:
    rid, status = run.run_id, run.status
    pivot = stack.passed_pivot(steps)
    running = stack.running_pivot(steps)
    if running is not None and pivot is None and not status.is_terminal:
        raise InvalidOperationError(
            f"run {rid!r} is running its pivot step {running!r}; from there the saga can only "
            f"go forward, so it cannot be cancelled (it was not changed)"
        )
    if status.is_terminal:
        raise InvalidOperationError(f"run {rid!r} already ended {status.value}; nothing to cancel")
    if status is RunStatus.COMPENSATING or status is RunStatus.COMPENSATION_FAILED:
        raise InvalidOperationError(
            f"run {rid!r} is already being compensated ({status.value}); use "
            f"`sagaline runs retry {rid}` or `sagaline runs skip {rid}` to move it on"
        )
    if (
        pivot is not None
        and status is not RunStatus.FAILED_AFTER_PIVOT
        and (status is not RunStatus.BLOCKED)
    ):
        raise InvalidOperationError(
            f"run {rid!r} has passed its pivot step {pivot!r} and can only go forward; "
            f"it cannot be cancelled while it runs"
        )
    event = NewEvent(ev.CancelRequested(status=status.value), at)
    if pivot is not None:
        # Parked past the pivot: nothing may be undone, so cancelling only closes the run.
        event = NewEvent(ev.RunCancelled(compensated=False, pivot=pivot), at)
        return OperatorChange(rid, frozenset({status}), event, to_status=RunStatus.CANCELLED)
    if status is RunStatus.BLOCKED:
        return OperatorChange(
            rid, frozenset({status}), event, to_status=RunStatus.COMPENSATING, request_cancel=True
        )
    return OperatorChange(
        rid,
        frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED}),
        event,
        request_cancel=True,
        unless_pivot=True,
    )


def plan_undo_child(run: RunRecord, parent: str, at: float) -> OperatorChange:
    """A completed child whose parent unwinds: compensate it, in the child."""
    event = NewEvent(ev.UndoRequested(parent=parent), at)
    return OperatorChange(
        run.run_id, frozenset({RunStatus.COMPLETED}), event, to_status=RunStatus.COMPENSATING
    )


def plan_retry(run: RunRecord, steps: list[StepRecord], at: float) -> OperatorChange:
    rid, status = run.run_id, run.status
    if status is RunStatus.COMPENSATION_FAILED:
        failed = stack.failed_compensation(steps)
        return OperatorChange(
            rid,
            frozenset({status}),
            NewEvent(ev.RunRetried(status=status.value), at),
            to_status=RunStatus.COMPENSATING,
            delete_step_seq=None if failed is None else failed.seq,
        )
    if status is RunStatus.FAILED_AFTER_PIVOT:
        failed_steps = [
            r for r in steps if r.kind is StepKind.STEP and r.status is StepStatus.FAILED
        ]
        last = max(failed_steps, key=lambda r: r.seq, default=None)
        return OperatorChange(
            rid,
            frozenset({status}),
            NewEvent(ev.RunRetried(status=status.value), at),
            to_status=RunStatus.RUNNING,
            delete_step_seq=None if last is None else last.seq,
        )
    if status is RunStatus.BLOCKED:
        return OperatorChange(
            rid,
            frozenset({status}),
            NewEvent(ev.RunRetried(status=status.value), at),
            to_status=RunStatus.RUNNING,
        )
    raise InvalidOperationError(
        f"run {rid!r} is {status.value}; only runs parked in COMPENSATION_FAILED, "
        f"FAILED_AFTER_PIVOT or BLOCKED can be retried"
    )


def plan_skip(
    run: RunRecord, steps: list[StepRecord], reason: str, by: str, at: float
) -> OperatorChange:
    rid = run.run_id
    failed = stack.failed_compensation(steps)
    if run.status is not RunStatus.COMPENSATION_FAILED or failed is None:
        raise InvalidOperationError(
            f"run {rid!r} is {run.status.value}; only a run parked in COMPENSATION_FAILED has "
            f"a failed compensation to skip"
        )
    if not reason.strip() or not by.strip():
        raise InvalidOperationError(
            "skipping a compensation needs a reason and who resolved it (reason=..., by=...)"
        )
    event = NewEvent(
        ev.CompensationSkipped(compensation=failed.name, reason=reason, by=by), at, failed.seq
    )
    return OperatorChange(
        rid,
        frozenset({RunStatus.COMPENSATION_FAILED}),
        event,
        to_status=RunStatus.COMPENSATING,
        skip_step_seq=failed.seq,
    )
