"""A step call inside a workflow: replayed from its record, or run for real and recorded.

Cancel rules live here, because a step is where a run spends its time:
- a cancel accepted while a step runs lets the step finish (its result is recorded, so
  its compensation can run), then the run unwinds instead of going on;
- a cancel accepted during a retry backoff cuts the backoff short: no further attempt;
- a pivot step first commits that it is starting, fenced on "no cancel accepted", so a
  cancel accepted before it prevents it and a cancel asked while it runs is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from sagaline.engine.attempts import call_with_retries
from sagaline.engine.context import CancelRun, RunContext, RunInterrupted
from sagaline.engine.transaction import Transaction
from sagaline.model import events as ev
from sagaline.model.errors import PayloadError, SagalineError, StepFailedError
from sagaline.model.history import Call
from sagaline.model.records import NewEvent, OutboxMessage, StepRecord
from sagaline.model.status import StepKind, StepStatus

if TYPE_CHECKING:
    from sagaline.engine.registry import StepDef

WATCH_AFTER, WATCH_EVERY = 1.0, 0.5
"""A backoff longer than WATCH_AFTER seconds looks for a cancel every WATCH_EVERY seconds."""
VISIBLE_AFTER = 0.25
"""A step running longer than this (seconds) is written as RUNNING, riding on the next
group commit, so `sagaline runs show` sees it; shorter steps cost no write."""


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """Who is running: what a step passes to an external API as its idempotency key.

    ``idempotency_key`` is the same for every attempt of this step in this run, on every
    worker and after any crash, and differs between the step and its compensation: give it
    to a payment provider and a step that runs twice charges once.
    """

    run_id: str
    step: str
    seq: int
    attempt: int
    idempotency_key: str
    compensation: bool = False


@dataclasses.dataclass
class _Running:
    run_id: str
    step: str
    seq: int
    key: str
    compensation: bool
    attempt: int = 1
    token: Any = None
    outbox: list[OutboxMessage] = dataclasses.field(default_factory=list)
    """Events this attempt published; they go out with the step's end, if it succeeds."""
    published: int = 0

    def snapshot(self) -> StepInfo:
        return StepInfo(self.run_id, self.step, self.seq, self.attempt, self.key, self.compensation)


_running: ContextVar[_Running | None] = ContextVar("sagaline_step", default=None)


def step_info() -> StepInfo:
    """The running step's identity and attempt; only inside a step or a compensation."""
    running = _running.get()
    if running is None:
        raise SagalineError(
            "sagaline.step_info() was called outside a running step; call it from the body "
            "of a @step (or its compensation) while a workflow runs it"
        )
    return running.snapshot()


def current_step() -> _Running | None:
    """The step or compensation running in this task or thread, if any."""
    return _running.get()


def enter(run_id: str, step: str, seq: int, key: str, compensation: bool) -> _Running:
    """Make ``step_info()`` answer for this step until :func:`leave`."""
    running = _Running(run_id, step, seq, f"{run_id}:{key}", compensation)
    running.token = _running.set(running)
    return running


def leave(running: _Running) -> None:
    _running.reset(running.token)


async def call_step(
    ctx: RunContext, sdef: StepDef[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
) -> Any:
    if sdef.task_queue is not None:  # the one test task steps cost the hot path
        from sagaline.engine.tasks import call_task

        return await call_task(ctx, sdef, args, kwargs)
    values = sdef.signature.bind(args, kwargs)
    call = ctx.begin(StepKind.STEP, sdef.name)
    backoff = call.recorded
    if backoff is not None:
        if backoff.status is not StepStatus.WAITING:
            return _replay(ctx, sdef, backoff)
        retry_at = float((backoff.error or {}).get("retry_at", 0.0))
        if ctx.rt.clock() < retry_at:  # woken early (a signal, a branch): sleep on
            ctx.wait(backoff, retry_at)
    data = sdef.signature.encode_args(ctx.rt.codec, values)
    await ctx.ensure_lease()
    ctx.enter_step()
    try:
        rec = await _run(ctx, sdef, call, values, data, backoff)
    finally:
        ctx.leave_step()
    return _replay(ctx, sdef, rec)


class DurableBackoff(Exception):
    """Raised from a retry's failure report to end the attempts loop: the run sleeps in
    the database until the next attempt is due, instead of in memory."""

    def __init__(self, attempt: int, error: dict[str, Any], retry_at: float) -> None:
        super().__init__(f"attempt {attempt} failed; next attempt at {retry_at}")
        self.attempt, self.error, self.retry_at = attempt, error, retry_at


async def _run(
    ctx: RunContext,
    sdef: StepDef[Any, Any],
    call: Call,
    values: Any,
    data: bytes,
    backoff: StepRecord | None = None,
) -> StepRecord:
    """Attempt the step until it succeeds or gives up (``backoff``: the WAITING row of a
    durable backoff, whose attempts this takes up)."""
    call_args, call_kwargs = sdef.signature.call_parts(values)
    seq = call.seq
    # "Started" is written with the step's first commit (a failed attempt or its end),
    # stamped with when it really started: one commit per step, the audit order kept.
    started: list[NewEvent] = [ctx.event(ev.StepStarted(step=sdef.name), seq)]
    started_at = ctx.rt.clock()
    first_attempt = 1
    if backoff is not None:
        started, started_at, first_attempt = [], backoff.started_at, backoff.attempts + 1
    durable_after = None if sdef.pivot else ctx.rt.durable_backoff_after
    if sdef.pivot:
        row = _record(ctx, sdef, call, StepStatus.RUNNING, data, None, None, 0, started_at)
        await ctx.checkpoint(steps=[row], events=started, unless_cancelled=True)
        started = []
    running = enter(ctx.run.run_id, sdef.name, seq, f"step:{call.key}", False)

    def pending_start() -> list[NewEvent]:
        events, started[:] = started[:], []
        return events

    watchers: list[asyncio.Task[None]] = []

    async def on_failure(attempt: int, error: dict[str, Any], delay: float) -> None:
        running.attempt = attempt + 1
        running.outbox.clear()  # what a failed attempt published never goes out
        if delay > WATCH_AFTER and not watchers:
            watchers.append(asyncio.create_task(_watch_for_cancel(ctx)))
        failed = ctx.event(
            ev.StepAttemptFailed(
                step=sdef.name, attempt=attempt, error=error, retry_in=round(delay, 3)
            ),
            seq,
        )
        await ctx.checkpoint(events=[*pending_start(), failed])
        if durable_after is not None and delay > durable_after:
            raise DurableBackoff(attempt, error, ctx.rt.clock() + delay)

    shown: list[asyncio.Task[None]] = []

    def show() -> None:  # a step that runs long becomes visible while it runs
        row = _record(ctx, sdef, call, StepStatus.RUNNING, data, None, None, 0, started_at)
        shown.append(asyncio.ensure_future(_show(ctx, row, pending_start())))

    committed: list[StepRecord] = []
    fn = sdef.fn
    if sdef.transactional:

        async def fn(*args: Any, **kwargs: Any) -> Any:
            return await _transactional_attempt(
                ctx, sdef, call, data, started, started_at, running, committed, args, kwargs
            )

    # A transactional step commits its own end inside its transaction: a RUNNING marker
    # riding a group commit could land after it and undo it, so it gets none.
    quiet = sdef.pivot or sdef.transactional
    later = None if quiet else asyncio.get_running_loop().call_later(VISIBLE_AFTER, show)
    observer = ctx.rt.observer
    probe = None if observer is None else observer.probe(ctx, sdef.name, "step")
    try:
        outcome = await call_with_retries(
            ctx.rt,
            fn,
            sdef.is_async,
            call_args,
            call_kwargs,
            ctx.retry_policy(sdef.retry, sdef.retry_given),
            sdef.timeout,
            on_failure,
            interrupt=ctx.interrupt,
            before_retry=ctx.ensure_lease,
            probe=probe,
            first_attempt=first_attempt,
            started_at=started_at,
        )
    except DurableBackoff as sleep:
        last = {**sleep.error, "retry_at": sleep.retry_at}
        row = _record(
            ctx, sdef, call, StepStatus.WAITING, data, None, last, sleep.attempt, started_at
        )
        ctx.wait(row, sleep.retry_at)  # raises Suspend: the run sleeps in the database
    finally:
        leave(running)
        for watcher in watchers:
            watcher.cancel()
        if later is not None:
            later.cancel()
        if shown:
            await shown[0]  # before the end's commit: one row per run and seq in a batch
    if outcome.interrupted:
        if pending := pending_start():
            await ctx.checkpoint(events=pending)
        ctx.check_boundary()  # raises: cancelled, draining
        raise CancelRun()
    if outcome.ok and committed:  # the step's own transaction recorded it already
        ctx.recorded(call, committed[0])
        return committed[0]
    output: bytes | None = None
    if outcome.ok:
        try:
            output = ctx.rt.codec.encode(outcome.value, f"step {sdef.name!r} result")
        except PayloadError as exc:
            outcome.ok, outcome.error = False, {"type": type(exc).__name__, "message": str(exc)}
    status = StepStatus.SUCCEEDED if outcome.ok else StepStatus.FAILED
    error = outcome.error
    if not outcome.ok and outcome.unknown:
        error = {**(error or {}), "unknown": True}  # it may have had its effect
    ctx.done_index += 1
    rec = _record(ctx, sdef, call, status, data, output, error, outcome.attempts, started_at)
    if outcome.ok:
        event = ctx.event(ev.StepSucceeded(step=sdef.name, attempts=outcome.attempts), seq)
    else:
        failed_event = ev.StepFailed(step=sdef.name, attempts=outcome.attempts, error=error)
        event = ctx.event(failed_event, seq)
    outbox = running.outbox if outcome.ok else []
    await ctx.finish(call, rec, *pending_start(), event, *ctx.published(outbox, seq), outbox=outbox)
    return rec


async def _transactional_attempt(
    ctx: RunContext,
    sdef: StepDef[Any, Any],
    call: Call,
    data: bytes,
    started: list[NewEvent],
    started_at: float,
    running: _Running,
    committed: list[StepRecord],
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> Any:
    """One attempt: the user's SQL and the step's checkpoint, one transaction. Anything
    that fails on the way (the SQL, the result's encoding, the lease) rolls all of it back
    and the attempt counts as failed."""
    async with ctx.rt.store.transaction() as stx:
        value = await sdef.fn(Transaction(stx), *args, **kwargs)
        output = ctx.rt.codec.encode(value, f"step {sdef.name!r} result")
        ctx.done_index += 1
        rec = _record(
            ctx, sdef, call, StepStatus.SUCCEEDED, data, output, None, running.attempt, started_at
        )
        succeeded = ev.StepSucceeded(step=sdef.name, attempts=running.attempt)
        outbox = list(running.outbox)
        events = [*started, ctx.event(succeeded, call.seq), *ctx.published(outbox, call.seq)]
        await ctx.checkpoint(steps=[rec], events=events, outbox=outbox, via=stx)
    started.clear()
    committed.append(rec)
    return value


async def _watch_for_cancel(ctx: RunContext) -> None:
    """While a step backs off, notice a cancel accepted by another process (this one's
    cancels interrupt at once) within about a second, instead of at the next attempt."""
    with contextlib.suppress(Exception):
        while not ctx.interrupt.is_set():
            await asyncio.sleep(WATCH_EVERY)
            run = await ctx.rt.store.load_run(ctx.run.run_id)
            if run is not None and run.cancel_requested:
                ctx.request_cancel()


async def _show(ctx: RunContext, row: StepRecord, events: list[NewEvent]) -> None:
    """Commit a RUNNING row for a step still in flight. Best effort: whatever goes wrong
    here, the step's own end commits (or fails) on its own terms."""
    with contextlib.suppress(Exception, RunInterrupted):
        await ctx.checkpoint(steps=[row], events=events)


def _record(
    ctx: RunContext,
    sdef: StepDef[Any, Any],
    call: Call,
    status: StepStatus,
    data: bytes,
    output: bytes | None,
    error: dict[str, Any] | None,
    attempts: int,
    started_at: float,
) -> StepRecord:
    return StepRecord(
        seq=call.seq,
        name=sdef.name,
        kind=StepKind.STEP,
        status=status,
        input=data,
        output=output,
        error=error,
        attempts=attempts,
        compensable=sdef.compensation is not None
        and (status is not StepStatus.FAILED or sdef.compensate_unknown),
        pivot=sdef.pivot,
        compensates_seq=None,
        done_index=ctx.done_index,
        started_at=started_at,
        finished_at=ctx.rt.clock(),
        branch=call.branch,
    )


def _replay(ctx: RunContext, sdef: StepDef[Any, Any], rec: StepRecord) -> Any:
    """The recorded outcome, decoded exactly as on the first run."""
    if rec.status is StepStatus.SUCCEEDED:
        if rec.pivot and ctx.pivot is None:
            ctx.pivot = rec.name
        assert rec.output is not None
        try:
            return ctx.rt.codec.decode(
                rec.output, sdef.signature.return_type, f"step {sdef.name!r} result"
            )
        except PayloadError as exc:
            raise ctx.block(exc) from None
    error = rec.error or {}
    raise StepFailedError(
        sdef.name,
        str(error.get("type", "Exception")),
        str(error.get("message", "")),
        rec.attempts,
        rec.seq,
    )
