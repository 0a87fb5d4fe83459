"""Driving one claimed run to its end, or to a point where it waits for a person."""

from __future__ import annotations

from typing import Any

from sagaline.engine.attempts import error_info
from sagaline.engine.context import CancelRun, Drained, LostLease, RunContext, Suspend
from sagaline.engine.registry import get_workflow
from sagaline.engine.unwind import original_cause, unwind
from sagaline.model import events as ev
from sagaline.model import operations
from sagaline.model.errors import (
    InvalidOperationError,
    NonDeterminismError,
    PayloadError,
    SagalineError,
    StepFailedError,
)
from sagaline.model.records import RunChange
from sagaline.model.status import RunStatus, StepKind

CANCELLED_CAUSE = {"type": "Cancelled", "message": "cancelled by an operator"}


async def execute(ctx: RunContext) -> None:
    """Replay and continue the run; returns once it is settled or this worker lost it."""
    try:
        if ctx.run.status is RunStatus.COMPENSATING:
            await unwind(ctx, original_cause(ctx.run.error), ctx.run.cancel_requested)
        else:
            await _drive(ctx)
    except (LostLease, Drained):
        return  # another worker owns it now, or will: nothing more to write here


async def _drive(ctx: RunContext) -> None:
    wdef = get_workflow(ctx.run.workflow)
    token = ctx.activate()
    failure: BaseException | None = None
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
    except Exception as exc:
        failure = exc
    finally:
        ctx.deactivate(token)
    await ctx.drain()  # parallel branches finish the step they are in

    if ctx.blocked is None and failure is None and not suspended:
        left = ctx.unconsumed()
        if left is not None:
            ctx.block(NonDeterminismError(ctx.run.run_id, left.seq, left.name, "end of workflow"))
    if ctx.blocked is not None:
        await _park(ctx, RunStatus.BLOCKED, ev.RUN_BLOCKED, _info(ctx.blocked))
    elif isinstance(failure, CancelRun):
        await _cancel_children(ctx)
        await unwind(ctx, CANCELLED_CAUSE, cancelled=True)
    elif failure is not None:
        await _fail(ctx, _info(failure))
    elif suspended:
        await _suspend(ctx)
    else:
        await _complete(ctx, wdef.name, result)


async def _suspend(ctx: RunContext) -> None:
    waits = [f"{rec.kind.value} {rec.name}" for rec in ctx.waits]
    await ctx.checkpoint(
        steps=ctx.waits,
        events=[ctx.event(ev.RUN_SUSPENDED, waits=waits, wake_at=ctx.wake_at)],
        change=RunChange(
            RunStatus.SUSPENDED,
            release=True,
            wake_at=ctx.wake_at,
            seen_signal_id=ctx.seen_signal_id,
            awaited_runs=tuple(ctx.awaited_runs),
        ),
    )


async def _cancel_children(ctx: RunContext) -> None:
    """Cancelling a parent cancels (and so compensates) the children it started."""
    store = ctx.rt.store
    for rec in ctx.records.values():
        if rec.kind is not StepKind.CHILD or rec.output is None:
            continue
        child_id = ctx.rt.codec.decode(rec.output, str, "child run id")
        child = await store.load_run(child_id)
        if child is None or child.status.is_terminal:
            continue
        try:
            change = operations.plan_cancel(child, await store.load_steps(child_id), ctx.rt.clock())
        except InvalidOperationError:
            continue  # compensating already, or past its pivot: it goes its own way
        await store.operate(change)


async def _complete(ctx: RunContext, name: str, result: Any) -> None:
    try:
        output = ctx.rt.codec.encode(result, f"workflow {name!r} result")
    except PayloadError as exc:
        await _fail(ctx, _info(exc))
        return
    await ctx.checkpoint(
        events=[ctx.event(ev.RUN_COMPLETED)],
        change=RunChange(RunStatus.COMPLETED, output=output, release=True),
    )


async def _fail(ctx: RunContext, cause: dict[str, Any]) -> None:
    if ctx.pivot is not None:
        cause = {**cause, "pivot": ctx.pivot}
        await _park(ctx, RunStatus.FAILED_AFTER_PIVOT, ev.RUN_FAILED_AFTER_PIVOT, cause)
    else:
        await unwind(ctx, cause, cancelled=False)


async def _park(ctx: RunContext, status: RunStatus, event_type: str, error: dict[str, Any]) -> None:
    await ctx.checkpoint(
        events=[ctx.event(event_type, error=error)],
        change=RunChange(status, error=error, release=True),
    )


def _info(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, StepFailedError):
        return {"type": exc.error_type, "message": exc.error_message, "step": exc.step}
    if isinstance(exc, SagalineError):
        return {"type": type(exc).__name__, "message": str(exc)}
    return error_info(exc)
