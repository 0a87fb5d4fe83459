"""Driving one claimed run to its end, or to a point where it waits for a person."""

from __future__ import annotations

from typing import Any

from sagaline.engine import children
from sagaline.engine.attempts import error_info
from sagaline.engine.context import (
    CancelRun,
    CheckpointRejected,
    Drained,
    LostLease,
    RunContext,
    RunInterrupted,
    StoreInterrupted,
    Suspend,
)
from sagaline.engine.registry import get_workflow
from sagaline.engine.unwind import original_cause, unwind
from sagaline.model import events as ev
from sagaline.model import operations, stack
from sagaline.model.errors import (
    NonDeterminismError,
    PayloadError,
    SagalineError,
    StepFailedError,
)
from sagaline.model.records import RunChange, RunRecord
from sagaline.model.status import RunStatus

CANCELLED_CAUSE = {"type": "Cancelled", "message": "cancelled by an operator"}


async def execute(ctx: RunContext) -> None:
    """Replay and continue the run; returns once it is settled or this worker lost it.

    With metrics or tracing on, the execution is one span of the run's trace, and a run
    that settles here is counted (by the observer, around it).
    """
    observer = ctx.rt.observer
    if observer is None:
        await _execute(ctx)
    else:
        with observer.run(ctx):
            await _execute(ctx)


async def _execute(ctx: RunContext) -> None:
    try:
        if ctx.run.status is RunStatus.COMPENSATING or stack.unwinding(ctx.records.values()):
            await unwind(ctx, _unwinding_cause(ctx.run), ctx.run.cancel_requested)
        else:
            await _drive(ctx)
    except (LostLease, Drained):
        return  # another worker owns it now, or will: nothing more to write here
    except CheckpointRejected as exc:
        await _park_rejected(ctx, exc)


def _unwinding_cause(run: RunRecord) -> dict[str, Any]:
    cause = original_cause(run.error)
    if not cause:
        # Only a parent moves a completed run to COMPENSATING (with no error of its own).
        return {
            "type": operations.PARENT_UNWINDING,
            "message": f"undone because its parent run {run.parent_run_id!r} is unwinding",
        }
    return cause


async def _drive(ctx: RunContext) -> None:
    wdef = get_workflow(ctx.run.workflow)
    tokens = ctx.activate()
    failure: BaseException | None = None
    stop: RunInterrupted | None = None
    suspended = False
    result: Any = None
    try:
        try:
            values = wdef.signature.decode_args(ctx.rt.codec, ctx.run.input)
        except PayloadError as exc:
            raise ctx.block(exc) from None
        args, kwargs = wdef.signature.call_parts(values)
        ctx.check_boundary()
        result = await wdef.fn(*args, **kwargs)
    except CancelRun:
        failure = CancelRun()
    except Suspend:
        suspended = True
    except (LostLease, Drained, StoreInterrupted, CheckpointRejected) as exc:
        stop = exc
    except Exception as exc:
        failure = exc
    finally:
        ctx.deactivate(tokens)
    await ctx.drain()  # parallel branches finish the step they are in
    if stop is not None:
        raise stop

    if ctx.blocked is None and failure is None and not suspended:
        left = ctx.unconsumed()
        if left is not None:
            ctx.block(NonDeterminismError(ctx.run.run_id, left.seq, left.name, "end of workflow"))
    if ctx.blocked is not None:
        await _park(ctx, RunStatus.BLOCKED, ev.RunBlocked, _info(ctx.blocked))
    elif isinstance(failure, CancelRun):
        await unwind(ctx, CANCELLED_CAUSE, cancelled=True)
    elif failure is not None:
        await _fail(ctx, _info(failure))
    elif suspended:
        await _suspend(ctx)
    else:
        try:
            await _complete(ctx, wdef.name, result)
        except CancelRun:  # a cancel accepted before the completion committed wins
            await unwind(ctx, CANCELLED_CAUSE, cancelled=True)


async def _park_rejected(ctx: RunContext, exc: CheckpointRejected) -> None:
    """The database keeps refusing this run's progress: park it where a person sees why,
    instead of letting the lease run out and the step run again, without bound."""
    error = {
        "type": "CheckpointRejected",
        "message": f"the database refused this run's checkpoint: {exc.message}",
    }
    await _park(ctx, RunStatus.BLOCKED, ev.RunBlocked, error)


async def _suspend(ctx: RunContext) -> None:
    waits = [f"{rec.kind.value} {rec.name}" for rec in ctx.waits]
    await ctx.checkpoint(
        steps=ctx.waits,
        events=[ctx.event(ev.RunSuspended(waits=waits, wake_at=ctx.wake_at))],
        change=RunChange(
            RunStatus.SUSPENDED,
            release=True,
            wake_at=ctx.wake_at,
            seen_signal_id=ctx.seen_signal_id,
            awaited_runs=tuple(ctx.awaited_runs),
        ),
    )


async def _complete(ctx: RunContext, name: str, result: Any) -> None:
    if ctx.cancel_requested and ctx.pivot is None:
        raise CancelRun()  # known here already; the commit's fence catches a later one
    try:
        output = ctx.rt.codec.encode(result, f"workflow {name!r} result")
    except PayloadError as exc:
        await _fail(ctx, _info(exc))
        return
    await ctx.checkpoint(
        events=[ctx.event(ev.RunCompleted())],
        change=RunChange(RunStatus.COMPLETED, output=output, release=True),
        unless_cancelled=True,
    )


async def _fail(ctx: RunContext, cause: dict[str, Any]) -> None:
    pivot = ctx.pivot or await children.past_pivot(ctx)
    if pivot is not None:
        cause = {**cause, "pivot": pivot}
        await _park(ctx, RunStatus.FAILED_AFTER_PIVOT, ev.RunFailedAfterPivot, cause)
    else:
        await unwind(ctx, cause, cancelled=False)


async def _park(
    ctx: RunContext,
    status: RunStatus,
    event: type[ev.RunBlocked | ev.RunFailedAfterPivot],
    error: dict[str, Any],
) -> None:
    await ctx.checkpoint(
        events=[ctx.event(event(error=error))],
        change=RunChange(status, error=error, release=True),
    )


def _info(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, StepFailedError):
        return {"type": exc.error_type, "message": exc.error_message, "step": exc.step}
    if isinstance(exc, SagalineError):
        return {"type": type(exc).__name__, "message": str(exc)}
    return error_info(exc)
