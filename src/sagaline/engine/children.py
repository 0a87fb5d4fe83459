"""A parent's children inside its saga: stopped and undone when the parent unwinds.

A child run is a saga of its own, so the parent never runs the child's compensations
itself: it asks the child to unwind (cancel while it runs, compensate once it completed)
through the same compare-and-set operator changes a person would use, then waits durably
for the child to settle, which wakes the parent.
"""

from __future__ import annotations

from typing import Any, Final

from sagaline.engine.context import RunContext
from sagaline.engine.observe import outgoing_traceparent
from sagaline.model import operations, stack
from sagaline.model.errors import InvalidOperationError
from sagaline.model.records import NewRun, RunRecord, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus

WAIT: Final[dict[str, Any]] = {"wait": True}
"""``undo`` answers this when the parent must wait for the child to settle."""

_UNDONE = frozenset({RunStatus.COMPENSATED, RunStatus.CANCELLED, RunStatus.FAILED})
_LIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED, RunStatus.BLOCKED})


def new_child(ctx: RunContext, child_id: str, workflow: str, data: bytes, queue: str) -> NewRun:
    """The row that starts a child of ``ctx``'s run.

    It stores the parent's current span (the run's, as children start in the workflow's
    body) as its ``traceparent``: a child is part of its parent's saga, so its run spans
    belong in the parent's trace rather than one derived from the child's own id.
    """
    traceparent = outgoing_traceparent(ctx.rt.observer, ctx.run.traceparent)
    return NewRun(
        child_id,
        workflow,
        data,
        queue,
        ctx.rt.clock(),
        parent_run_id=ctx.run.run_id,
        traceparent=traceparent,
    )


def child_ids(ctx: RunContext) -> list[str]:
    return [
        stack.child_id(rec)
        for rec in ctx.records.values()
        if rec.kind is StepKind.CHILD and rec.output is not None
    ]


async def stop_running(ctx: RunContext) -> None:
    """Cancel every child still running (idempotent: each unwinding pass may call it)."""
    for child in child_ids(ctx):
        run = await ctx.rt.store.load_run(child)
        if run is not None and run.status in _LIVE and not run.cancel_requested:
            await _cancel(ctx, run)


async def past_pivot(ctx: RunContext) -> str | None:
    """A running child that passed its own pivot seals the parent too: its name, if any."""
    for child in child_ids(ctx):
        run = await ctx.rt.store.load_run(child)
        if run is None or run.status in _UNDONE:
            continue
        pivot = stack.passed_pivot(await ctx.rt.store.load_steps(child))
        if pivot is not None:
            return f"child {child} (past its pivot {pivot!r})"
    return None


async def undo(ctx: RunContext, rec: StepRecord) -> tuple[str, dict[str, Any] | None, int]:
    """Move the child of ``rec`` towards undone.

    Returns (child id, outcome, compensations that ran in the child), the outcome being
    None when the child is undone (or had nothing to undo), WAIT while it unwinds, or the
    error that parks the parent.
    """
    child = stack.child_id(rec)
    for _ in range(3):  # an operator change refused because the child moved on: look again
        run = await ctx.rt.store.load_run(child)
        if run is None:
            return child, None, 0
        steps = await ctx.rt.store.load_steps(child)
        if run.status in _UNDONE:
            return child, None, _compensations(steps)
        if stack.passed_pivot(steps) is not None or run.status is RunStatus.FAILED_AFTER_PIVOT:
            return child, _error(child, run, "it passed its pivot and can only go forward"), 0
        if run.status is RunStatus.COMPLETED and not stack.pending_compensations(steps):
            return child, None, 0  # nothing in it can be undone: it stays COMPLETED
        if run.status is RunStatus.COMPENSATION_FAILED:
            return (
                child,
                _error(
                    child,
                    run,
                    f"resolve it (`sagaline runs retry {child}` or `sagaline runs skip {child}`), "
                    f"then `sagaline runs retry {ctx.run.run_id}`",
                ),
                0,
            )
        if run.status is RunStatus.COMPENSATING:
            return child, WAIT, 0
        if run.status is RunStatus.COMPLETED:
            change = operations.plan_undo_child(run, ctx.run.run_id, ctx.rt.clock())
            if await ctx.rt.store.operate(change) is not None:
                ctx.rt.wake()
                return child, WAIT, 0
            continue
        if run.cancel_requested or await _cancel(ctx, run):
            return child, WAIT, 0
        if stack.running_pivot(steps) is not None:
            why = "it is running its pivot and can only go forward"
            return child, _error(child, run, why), 0
    return child, _error(child, None, "it kept changing status; retry this run"), 0


def _compensations(steps: list[StepRecord]) -> int:
    done = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
    return sum(1 for s in steps if s.kind is StepKind.COMPENSATION and s.status in done)


async def _cancel(ctx: RunContext, run: RunRecord) -> bool:
    try:
        change = operations.plan_cancel(
            run, await ctx.rt.store.load_steps(run.run_id), ctx.rt.clock()
        )
    except InvalidOperationError:
        return False  # compensating already, or past its pivot: judged by undo()
    applied = await ctx.rt.store.operate(change) is not None
    if applied:
        ctx.rt.wake()
    return applied


def _error(child: str, run: RunRecord | None, why: str) -> dict[str, Any]:
    status = "" if run is None else f" ({run.status.value})"
    return {
        "type": "ChildNotUndone",
        "message": f"child run {child!r}{status} could not be undone: {why}",
        "child": child,
    }
