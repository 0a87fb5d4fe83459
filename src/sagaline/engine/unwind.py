"""Unwinding a failed or cancelled run: its compensations, last completed first.

Needs no workflow code, only the step definitions: after a crash a worker resumes unwinding
from the durable step rows alone. Each compensation is a durable step with its own retry
policy; one that gives up parks the run in COMPENSATION_FAILED for an operator.
"""

from __future__ import annotations

from typing import Any

from sagaline.engine.attempts import Outcome, call_with_retries
from sagaline.engine.context import RunContext
from sagaline.engine.registry import get_step
from sagaline.model import events as ev
from sagaline.model import stack
from sagaline.model.errors import SagalineError
from sagaline.model.records import NewEvent, RunChange, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus


class _Pending:
    """Writes that ride on the unwinding's next commit rather than taking one of their own.

    Safe because each is re-derived after a crash: a run still RUNNING with a failed step
    replays to the same failure and unwinds again; a compensation whose start was not yet
    written simply runs (again), which compensations must tolerate anyway.
    """

    def __init__(self) -> None:
        self.events: list[NewEvent] = []
        self.change: RunChange | None = None

    def take(self) -> tuple[list[NewEvent], RunChange | None]:
        events, change = self.events, self.change
        self.events, self.change = [], None
        return events, change


async def unwind(ctx: RunContext, cause: dict[str, Any], cancelled: bool) -> None:
    records = list(ctx.records.values())
    ever_compensable = any(
        r.kind is StepKind.STEP and r.compensable and r.status is StepStatus.SUCCEEDED
        for r in records
    )
    if cancelled:
        final, event_type = RunStatus.CANCELLED, ev.RUN_CANCELLED
    elif ever_compensable:
        final, event_type = RunStatus.COMPENSATED, ev.RUN_COMPENSATED
    else:
        final, event_type = RunStatus.FAILED, ev.RUN_FAILED
    todo = stack.pending_compensations(records)
    pending = _Pending()
    if todo and ctx.run.status is not RunStatus.COMPENSATING:
        names = [r.name for r in todo]
        pending.events.append(ctx.event(ev.RUN_COMPENSATING, error=cause, steps=names))
        pending.change = RunChange(RunStatus.COMPENSATING, error=cause)
    for i, rec in enumerate(todo):
        last = i == len(todo) - 1  # the last compensation's commit also ends the run
        ending = (event_type, RunChange(final, error=cause, release=True))
        if not await _compensate(ctx, rec, cause, pending, ending if last else None):
            return
    if not todo:
        await ctx.checkpoint(
            events=[ctx.event(event_type, error=cause)],
            change=RunChange(final, error=cause, release=True),
        )


async def _compensate(
    ctx: RunContext,
    rec: StepRecord,
    cause: dict[str, Any],
    pending: _Pending,
    ending: tuple[str, RunChange] | None,
) -> bool:
    """Run one compensation to success (True) or park the run (False)."""
    seq = stack.next_seq(ctx.records.values())
    name = f"compensation of {rec.name}"
    started = ctx.rt.clock()
    # "Started" is written with the compensation's first commit, stamped with its real start.
    pending.events.append(ctx.event(ev.COMPENSATION_STARTED, seq, step=rec.name))
    try:
        sdef = get_step(rec.name)
        comp = sdef.compensation
        if comp is None:
            raise SagalineError(
                f"step {rec.name!r} has no compensation in this process's code, but its run "
                f"recorded one; deploy the code the run started with, or skip it by hand"
            )
        name = comp.name
        codec = ctx.rt.codec
        values = sdef.signature.decode_args(codec, rec.input or b"[]")
        result = codec.decode(
            rec.output or b"null", sdef.signature.return_type, f"step {rec.name!r} result"
        )
    except SagalineError as exc:
        outcome = Outcome(
            False, None, {"type": type(exc).__name__, "message": str(exc)}, 0, started
        )
    else:
        args, kwargs = sdef.signature.call_parts(values)

        async def on_failure(attempt: int, error: dict[str, Any], delay: float) -> None:
            events, change = pending.take()
            failed = ctx.event(
                ev.COMPENSATION_ATTEMPT_FAILED,
                seq,
                step=rec.name,
                compensation=comp.name,
                attempt=attempt,
                error=error,
                retry_in=round(delay, 3),
            )
            await ctx.checkpoint(events=[*events, failed], change=change)

        outcome = await call_with_retries(
            ctx.rt,
            comp.fn,
            comp.is_async,
            [*args, result],
            kwargs,
            comp.retry,
            comp.timeout,
            on_failure,
        )
    crec = StepRecord(
        seq=seq,
        name=name,
        kind=StepKind.COMPENSATION,
        status=StepStatus.SUCCEEDED if outcome.ok else StepStatus.FAILED,
        input=None,
        output=None,
        error=outcome.error,
        attempts=outcome.attempts,
        compensable=False,
        pivot=False,
        compensates_seq=rec.seq,
        done_index=0,
        started_at=outcome.started_at,
        finished_at=ctx.rt.clock(),
    )
    detail: dict[str, Any] = {"step": rec.name, "compensation": name, "attempts": outcome.attempts}
    events, change = pending.take()
    if outcome.ok:
        done = [*events, ctx.event(ev.COMPENSATION_SUCCEEDED, seq, **detail)]
        if ending is not None:
            done.append(ctx.event(ending[0], error=cause))
            change = ending[1]
        await ctx.checkpoint(steps=[crec], events=done, change=change)
        return True
    failure = {**detail, "error": outcome.error}
    await ctx.checkpoint(
        steps=[crec],
        events=[*events, ctx.event(ev.COMPENSATION_FAILED, seq, **failure)],
        change=RunChange(
            RunStatus.COMPENSATION_FAILED,
            error={**cause, "compensation": failure},
            release=True,
        ),
    )
    return False


def original_cause(error: dict[str, Any] | None) -> dict[str, Any]:
    """The failure that started unwinding, without a parked compensation's details."""
    return {k: v for k, v in (error or {}).items() if k != "compensation"}
