"""Semantic locks: a saga holds a business key (``"order:42"``) across its steps.

A saga has no isolation: others see its intermediate states and two sagas can interleave
on one object. ``async with sagaline.lock(key)`` makes the run the key's holder for the
block, durably: across steps, crashes and workers. A run that must wait is suspended (no
worker memory) in arrival order and woken when the key is free. The lock is released when
the block ends normally or the run completes; a run that fails or is cancelled keeps it
until its compensation has finished, so the object stays protected while it is undone.

Each acquire and release is a durable call with its own sequence number, so replay meets
them in order: the store's queue (``locks`` rows) is the truth, and the call's step row
says what the run learned from it.
"""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType
from typing import Any

import msgspec

from sagaline.engine.context import LostLease, RunContext, StoreInterrupted, current_context
from sagaline.model import events as ev
from sagaline.model import locks as lk
from sagaline.model.errors import (
    DatabaseUnavailableError,
    DeadlockError,
    LockTimeoutError,
    SagalineError,
)
from sagaline.model.history import Call
from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind, StepStatus


def _ctx(what: str) -> RunContext:
    ctx = current_context()
    if ctx is None:
        raise SagalineError(
            f"sagaline.{what}() was called outside a running workflow; it only works inside "
            f"a @workflow started with engine.start(...) (read locks from outside with "
            f"engine.locks(key))"
        )
    return ctx


def _seconds(timeout: timedelta | float | None) -> float | None:
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not seconds >= 0:
        raise SagalineError(f"a lock timeout is a duration of 0 or more; got {timeout!r}")
    return seconds


def _interrupted(ctx: RunContext, exc: Exception) -> StoreInterrupted:
    return StoreInterrupted(ctx.run.run_id, isinstance(exc, DatabaseUnavailableError))


def _failed(ctx: RunContext, key: str, error: dict[str, Any]) -> SagalineError:
    if error.get("type") == "DeadlockError":
        return DeadlockError(key, ctx.run.run_id, list(error.get("cycle", [])))
    return LockTimeoutError(key, ctx.run.run_id)


async def acquire(
    key: str, *, mode: lk.LockMode = "exclusive", timeout: timedelta | float | None = None
) -> None:
    """Take the lock on ``key`` for this run, waiting durably until it is free.

    ``mode="shared"`` lets other shared holders in at the same time; an exclusive holder
    excludes everyone. Grants are first in, first out. The lock is this run's until
    :func:`release` or the run's end (after its compensation, when it unwinds).

    Raises:
        LockTimeoutError: ``timeout`` passed before the lock was free.
        DeadlockError: this wait closed a cycle of runs waiting on each other and this run
            is the youngest of them.
        SagalineError: this run already holds (or waits for) ``key``.
    """
    ctx = _ctx("acquire")
    lk.check_key(key)
    lk.check_mode(mode)
    seconds = _seconds(timeout)
    call = ctx.begin(StepKind.LOCK, key)
    rec = call.recorded
    if rec is not None and rec.status is StepStatus.SUCCEEDED:
        return
    if rec is not None and rec.status is StepStatus.FAILED:
        raise _failed(ctx, key, rec.error or {})
    if rec is None:
        rec = await _request(ctx, call, key, mode, seconds)
        if rec.status is StepStatus.SUCCEEDED:
            return
    await _wait(ctx, call, key, rec)


def _holds(ctx: RunContext, key: str) -> bool:
    """Whether this run holds (or waits for) ``key`` by its own history."""
    holding = False
    for rec in sorted(ctx.records.values(), key=lambda r: r.seq):
        if rec.name != key:
            continue
        if rec.kind is StepKind.LOCK:
            holding = rec.status in (StepStatus.SUCCEEDED, StepStatus.WAITING)
        elif rec.kind is StepKind.UNLOCK:
            holding = False
    return holding


async def _request(
    ctx: RunContext, call: Call, key: str, mode: str, seconds: float | None
) -> StepRecord:
    """Queue the request with its WAITING row, in one checkpoint (so a batch of runs'
    requests shares one commit); the row as the store answered it (WAITING or SUCCEEDED)."""
    rt = ctx.rt
    if _holds(ctx, key):
        raise SagalineError(
            f"run {ctx.run.run_id!r} already holds or waits for lock {key!r}; a run takes "
            f"each key once at a time (release it first, or take it once around both uses)"
        )
    started = rt.clock()
    deadline = None if seconds is None else started + seconds
    output = rt.codec.encode_json({"mode": mode, "deadline": deadline}, "lock wait")
    row = ctx.row(call, StepKind.LOCK, key, StepStatus.WAITING, output=output)
    request = lk.NewLock(key, ctx.run.run_id, call.seq, mode, started)
    result = await ctx.checkpoint(steps=[row], lock_ops=[request])
    answer = result.locks[0] if result.locks else lk.LockAnswer("waiting")
    if answer.state == "granted":
        row = _with(row, StepStatus.SUCCEEDED)
        ctx.records[row.seq] = row
    ctx.recorded(call, row)
    if answer.state == "deadlock":
        await _refuse(ctx, call, key, row, list(answer.cycle))
    return row


def _with(row: StepRecord, status: StepStatus, error: dict[str, Any] | None = None) -> StepRecord:
    return msgspec.structs.replace(row, status=status, error=error)


async def _refuse(ctx: RunContext, call: Call, key: str, row: StepRecord, cycle: list[str]) -> None:
    err = DeadlockError(key, ctx.run.run_id, cycle)
    failed = _with(
        row, StepStatus.FAILED, {"type": "DeadlockError", "message": str(err), "cycle": cycle}
    )
    await ctx.finish(call, failed, ctx.event(ev.LockDeadlock(key=key, cycle=cycle), call.seq))
    raise err


async def _wait(ctx: RunContext, call: Call, key: str, rec: StepRecord) -> None:
    """A queued request: granted, refused, timed out, or suspend until one of them."""
    rt = ctx.rt
    run_id = ctx.run.run_id
    wait = rt.codec.decode_json(rec.output or b"{}", dict[str, Any], "lock wait")
    deadline: float | None = wait.get("deadline")
    mode = str(wait.get("mode", lk.EXCLUSIVE))
    try:
        answer = await rt.store.lock_answer(run_id, call.seq)
    except Exception as exc:
        raise _interrupted(ctx, exc) from exc
    if answer.state == "waiting" and deadline is not None and rt.clock() >= deadline:
        timed_out = _with(
            rec,
            StepStatus.FAILED,
            {"type": "LockTimeoutError", "message": str(LockTimeoutError(key, run_id))},
        )
        event = ctx.event(ev.LockTimedOut(key=key), call.seq)
        try:
            answer = await rt.store.withdraw_lock(
                run_id, call.seq, rt.owner, ctx.run.lease_epoch, timed_out, event
            )
        except Exception as exc:
            raise _interrupted(ctx, exc) from exc
        rt.wake()  # leaving the queue may have let others in
        if answer.state == "gone":  # withdrawn: the FAILED row landed with it
            ctx.records[timed_out.seq] = timed_out
            ctx.recorded(call, timed_out)
            raise LockTimeoutError(key, run_id)
    if answer.state == "lost":
        raise LostLease(run_id)
    if answer.state == "granted":
        done = _with(rec, StepStatus.SUCCEEDED)
        await ctx.finish(call, done, ctx.event(ev.LockAcquired(key=key, mode=mode), call.seq))
        return
    if answer.state == "deadlock":
        await _refuse(ctx, call, key, rec, [])
    if answer.state != "waiting":
        raise ctx.block(
            SagalineError(
                f"run {run_id!r} waited for lock {key!r} but its place in the queue is gone "
                f"(the locks table was changed by hand?); retry the run to ask again"
            )
        )
    ctx.wait(rec, deadline)


async def release(key: str) -> None:
    """Give the lock on ``key`` back before the run ends; the next waiters get it.

    Releasing a key this run does not hold does nothing.
    """
    ctx = _ctx("release")
    lk.check_key(key)
    call = ctx.begin(StepKind.UNLOCK, key)
    if call.recorded is not None:
        return
    row = ctx.row(call, StepKind.UNLOCK, key, StepStatus.SUCCEEDED)
    event = ctx.event(ev.LockReleased(key=key), call.seq)
    release = lk.ReleaseLock(key, ctx.run.run_id, event.at)
    await ctx.finish(call, row, event, lock_ops=[release])


class lock:
    """``async with sagaline.lock(key, mode=..., timeout=...):`` holds ``key`` for the block.

    The lock is released when the block ends normally. When it ends with an exception the
    lock stays held until the run ends: if that exception fails the run, the compensations
    run with the object still protected, and the lock goes when they have finished.
    """

    def __init__(
        self,
        key: str,
        *,
        mode: lk.LockMode = "exclusive",
        timeout: timedelta | float | None = None,
    ) -> None:
        self.key = key
        self.mode = mode
        self.timeout = timeout

    async def __aenter__(self) -> None:
        await acquire(self.key, mode=self.mode, timeout=self.timeout)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await release(self.key)
