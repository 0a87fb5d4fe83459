"""Unwinding a failed or cancelled run: its compensations, last completed first.

Needs no workflow code, only the step definitions: after a crash a worker resumes unwinding
from the durable step rows alone. Each compensation is a durable step with its own retry
policy; one that gives up parks the run in COMPENSATION_FAILED for an operator.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sagaline.engine import children, steps, tasks
from sagaline.engine.attempts import Outcome, call_with_retries
from sagaline.engine.context import RunContext
from sagaline.engine.pending import Pending as _Pending
from sagaline.engine.registry import get_step
from sagaline.model import events as ev
from sagaline.model import operations, stack
from sagaline.model.errors import SagalineError
from sagaline.model.records import RunChange, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus


async def unwind(ctx: RunContext, cause: dict[str, Any], cancelled: bool) -> None:
    """Undo what the run did, last completed first; ends, parks or waits on a child."""
    wake = await tasks.close_outstanding(ctx)
    if wake is not None:  # a worker holds one of its tasks: wait for its answer first
        await ctx.checkpoint(
            events=[ctx.event(ev.RunSuspended(waits=["task in flight"], wake_at=wake))],
            change=RunChange(RunStatus.SUSPENDED, release=True, wake_at=wake, cancel_seen=True),
        )
        return
    records = list(ctx.records.values())
    await children.stop_running(ctx)
    todo = stack.pending_compensations(records)
    # COMPENSATED when something was undone (here or in a child), else FAILED; decided
    # for the commit that ends the run, once the last entry's outcome is known.
    undone = cause.get("type") == operations.PARENT_UNWINDING or _undone_before(records)
    pending = _Pending()
    if todo and ctx.run.status is not RunStatus.COMPENSATING and not stack.unwinding(records):
        names = [r.name for r in todo]
        pending.events.append(ctx.event(ev.RunCompensating(error=cause, steps=names)))
        pending.change = RunChange(RunStatus.COMPENSATING, error=cause)
    for i, rec in enumerate(todo):
        seq = _seq_for(ctx, rec)
        started = ctx.rt.clock()
        if rec.kind is StepKind.CHILD:
            child, error, count = await children.undo(ctx, rec)
            if error is children.WAIT:
                await _wait_for_child(ctx, rec, seq, child, cause, pending)
                return
            name = f"undo child {child}"
            outcome = Outcome(error is None, None, error, count, started)
            undone = undone or count > 0
        elif _by_task(rec):
            await _compensate_by_task(ctx, rec, seq, cause, pending)
            return
        else:
            try:
                name, outcome = await _run_compensation(ctx, rec, seq, started, pending)
            except steps.DurableBackoff as sleep:
                await _sleep_between_attempts(ctx, rec, seq, cause, pending, sleep)
                return
            undone = True
        last = i == len(todo) - 1  # the last compensation's commit also ends the run
        ending = _ending(cause, cancelled, undone) if last else None
        if not await _record(ctx, rec, seq, name, outcome, cause, pending, ending):
            return
    if not todo:
        events, _ = pending.take()
        event, change = _ending(cause, cancelled, undone)
        await ctx.checkpoint(events=[*events, ctx.event(event)], change=change)


def _ending(cause: dict[str, Any], cancelled: bool, undone: bool) -> tuple[ev.Event, RunChange]:
    event: ev.Event
    if cancelled:
        final, event = RunStatus.CANCELLED, ev.RunCancelled(error=cause)
    elif undone:
        final, event = RunStatus.COMPENSATED, ev.RunCompensated(error=cause)
    else:
        final, event = RunStatus.FAILED, ev.RunFailed(error=cause)
    return event, RunChange(final, error=cause, release=True)


def _undone_before(records: list[StepRecord]) -> bool:
    """Something was undone by an earlier pass (before a crash, a wait or a retry).

    A compensation of a step counts (done or skipped by hand); the undoing of a child counts
    when compensations ran in it (their number is kept as the entry's attempts).
    """
    by_seq = {r.seq: r for r in records}
    for rec in records:
        if rec.kind is not StepKind.COMPENSATION:
            continue
        if rec.status not in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
            continue
        target = by_seq.get(rec.compensates_seq or 0)
        if target is None or target.kind is not StepKind.CHILD or rec.attempts > 0:
            return True
    return False


def _seq_for(ctx: RunContext, rec: StepRecord) -> int:
    """The number of ``rec``'s compensation: the one it waits under, or a new one."""
    for other in ctx.records.values():
        if (
            other.kind is StepKind.COMPENSATION
            and other.compensates_seq == rec.seq
            and other.status is StepStatus.WAITING
        ):
            return other.seq
    return stack.next_seq(ctx.records.values())


async def _wait_for_child(
    ctx: RunContext,
    rec: StepRecord,
    seq: int,
    child: str,
    cause: dict[str, Any],
    pending: _Pending,
) -> None:
    """Suspend the unwinding until the child being undone settles (it wakes this run)."""
    events, _ = pending.take()
    now = ctx.rt.clock()
    waiting = _compensation_row(
        ctx, rec, seq, f"undo child {child}", StepStatus.WAITING, None, 0, now
    )
    await ctx.checkpoint(
        steps=[waiting],
        events=[
            *events,
            ctx.event(ev.CompensationStarted(step=rec.name, child=child), seq),
            ctx.event(ev.RunSuspended(waits=[f"child {child}"])),
        ],
        change=RunChange(RunStatus.SUSPENDED, error=cause, release=True, awaited_runs=(child,)),
    )
    ctx.waits.append(waiting)


def _by_task(rec: StepRecord) -> bool:
    """Whether ``rec`` is undone by a task compensation (run in an external worker)."""
    try:
        comp = get_step(rec.name).compensation
    except SagalineError:
        return False  # the in-process path says what is missing
    return comp is not None and comp.task_queue is not None


async def _compensate_by_task(
    ctx: RunContext, rec: StepRecord, seq: int, cause: dict[str, Any], pending: _Pending
) -> None:
    """Record ``rec``'s compensation as a task and suspend on it; or, once a worker gave it
    up (its row FAILED by the task service), park the run for an operator."""
    sdef = get_step(rec.name)
    comp = sdef.compensation
    assert comp is not None
    events, change = pending.take()
    failed = next(
        (
            r
            for r in ctx.records.values()
            if r.kind is StepKind.COMPENSATION
            and r.compensates_seq == rec.seq
            and r.status is StepStatus.FAILED
        ),
        None,
    )
    if failed is not None:
        detail = {
            "step": rec.name,
            "compensation": comp.name,
            "attempts": failed.attempts,
            "error": failed.error,
        }
        parked = RunChange(
            RunStatus.COMPENSATION_FAILED, error={**cause, "compensation": detail}, release=True
        )
        await ctx.checkpoint(events=events, change=parked)
        return
    if seq not in ctx.records:  # not yet recorded (a WAITING one is still out)
        if events or change is not None:
            await ctx.checkpoint(events=events, change=change)  # RunCompensating first
            events = []
        codec = ctx.rt.codec
        try:
            values = sdef.signature.decode_args(codec, rec.input or b"[]")
            result = None  # the step timed out: its result is unknown
            if rec.status is StepStatus.SUCCEEDED:
                where = f"step {rec.name!r} result"
                result = codec.decode(rec.output or b"null", sdef.signature.return_type, where)
        except SagalineError as exc:
            error = {"type": type(exc).__name__, "message": str(exc)}
            outcome = Outcome(False, None, error, 0, ctx.rt.clock())
            await _record(ctx, rec, seq, comp.name, outcome, cause, pending, None)
            return
        await tasks.record_compensation(ctx, rec, comp, seq, values, result)
    await ctx.checkpoint(
        events=[*events, ctx.event(ev.RunSuspended(waits=[f"compensation task {comp.name}"]))],
        change=RunChange(RunStatus.SUSPENDED, error=cause, release=True),
    )


async def _sleep_between_attempts(
    ctx: RunContext,
    rec: StepRecord,
    seq: int,
    cause: dict[str, Any],
    pending: _Pending,
    sleep: steps.DurableBackoff,
) -> None:
    """A compensation backs off longer than the durable threshold: the unwinding sleeps in
    the database (its WAITING row keeps the attempts and the last error) until it is due."""
    events, _ = pending.take()
    comp = get_step(rec.name).compensation
    name = comp.name if comp is not None else f"compensation of {rec.name}"
    last = {**sleep.error, "retry_at": sleep.retry_at}
    waiting = _compensation_row(
        ctx, rec, seq, name, StepStatus.WAITING, last, sleep.attempt, ctx.rt.clock()
    )
    prior = ctx.records.get(seq)
    if prior is not None:
        waiting = msgspec.structs.replace(waiting, started_at=prior.started_at)
    await ctx.checkpoint(
        steps=[waiting],
        events=[*events, ctx.event(ev.RunSuspended(waits=[name], wake_at=sleep.retry_at))],
        change=RunChange(RunStatus.SUSPENDED, error=cause, release=True, wake_at=sleep.retry_at),
    )


async def _run_compensation(
    ctx: RunContext, rec: StepRecord, seq: int, started: float, pending: _Pending
) -> tuple[str, Outcome]:
    """Call ``rec``'s compensation with its retry policy; the name it ran under."""
    name = f"compensation of {rec.name}"
    # "Started" is written with the compensation's first commit, stamped with its real start.
    pending.events.append(ctx.event(ev.CompensationStarted(step=rec.name), seq))
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
        result = None  # the step timed out: its result is unknown
        if rec.status is StepStatus.SUCCEEDED:
            result = codec.decode(
                rec.output or b"null", sdef.signature.return_type, f"step {rec.name!r} result"
            )
    except SagalineError as exc:
        return name, Outcome(
            False, None, {"type": type(exc).__name__, "message": str(exc)}, 0, started
        )
    args, kwargs = sdef.signature.call_parts(values)
    backoff = ctx.records.get(seq)  # the WAITING row of a durable backoff, to take up
    if backoff is not None and backoff.status is not StepStatus.WAITING:
        backoff = None
    first_attempt = 1
    if backoff is not None:
        pending.events.clear()  # started before the sleep: written then
        retry_at = float((backoff.error or {}).get("retry_at", 0.0))
        if ctx.rt.clock() < retry_at:
            raise steps.DurableBackoff(backoff.attempts, backoff.error or {}, retry_at)
        started, first_attempt = backoff.started_at, backoff.attempts + 1
    await ctx.ensure_lease()
    running = steps.enter(ctx.run.run_id, comp.name, seq, f"compensation:{rec.seq}", True)

    async def on_failure(attempt: int, error: dict[str, Any], delay: float) -> None:
        running.attempt = attempt + 1
        events, change = pending.take()
        failed = ctx.event(
            ev.CompensationAttemptFailed(
                step=rec.name,
                compensation=comp.name,
                attempt=attempt,
                error=error,
                retry_in=round(delay, 3),
            ),
            seq,
        )
        running.outbox.clear()  # what a failed attempt published never goes out
        await ctx.checkpoint(events=[*events, failed], change=change)
        if delay > ctx.rt.durable_backoff_after:
            raise steps.DurableBackoff(attempt, error, ctx.rt.clock() + delay)

    observer = ctx.rt.observer
    probe = None if observer is None else observer.probe(ctx, comp.name, "compensation")
    try:
        outcome = await call_with_retries(
            ctx.rt,
            comp.fn,
            comp.is_async,
            [*args, result],
            kwargs,
            comp.retry,
            comp.timeout,
            on_failure,
            before_retry=ctx.ensure_lease,
            probe=probe,
            first_attempt=first_attempt,
            started_at=started,
        )
    finally:
        steps.leave(running)
    if outcome.ok:
        pending.outbox = running.outbox
    return name, outcome


def _compensation_row(
    ctx: RunContext,
    rec: StepRecord,
    seq: int,
    name: str,
    status: StepStatus,
    error: dict[str, Any] | None,
    attempts: int,
    started: float,
) -> StepRecord:
    return StepRecord(
        seq=seq,
        name=name,
        kind=StepKind.COMPENSATION,
        status=status,
        input=None,
        output=None,
        error=error,
        attempts=attempts,
        compensable=False,
        pivot=False,
        compensates_seq=rec.seq,
        done_index=0,
        started_at=started,
        finished_at=ctx.rt.clock(),
    )


async def _record(
    ctx: RunContext,
    rec: StepRecord,
    seq: int,
    name: str,
    outcome: Outcome,
    cause: dict[str, Any],
    pending: _Pending,
    ending: tuple[ev.Event, RunChange] | None,
) -> bool:
    """Commit one compensation's end: go on (True), or park the run (False)."""
    status = StepStatus.SUCCEEDED if outcome.ok else StepStatus.FAILED
    crec = _compensation_row(
        ctx, rec, seq, name, status, outcome.error, outcome.attempts, outcome.started_at
    )
    detail: dict[str, Any] = {"step": rec.name, "compensation": name, "attempts": outcome.attempts}
    events, change = pending.take()
    if outcome.ok:
        succeeded = ev.CompensationSucceeded(
            step=rec.name, compensation=name, attempts=outcome.attempts
        )
        outbox, pending.outbox = pending.outbox, []
        done = [*events, ctx.event(succeeded, seq), *ctx.published(outbox, seq)]
        if ending is not None:
            done.append(ctx.event(ending[0]))
            change = ending[1]
        await ctx.checkpoint(steps=[crec], events=done, change=change, outbox=outbox)
        return True
    failure = {**detail, "error": outcome.error}
    await ctx.checkpoint(
        steps=[crec],
        events=[
            *events,
            ctx.event(
                ev.CompensationFailed(
                    step=rec.name,
                    compensation=name,
                    attempts=outcome.attempts,
                    error=outcome.error,
                ),
                seq,
            ),
        ],
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
