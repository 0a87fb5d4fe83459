"""Durable waits and replay-safe values, called from inside a workflow.

``sleep``, ``wait_for_signal`` and a child's ``result()`` that cannot be answered yet
suspend the run: it is released from the worker's memory, its wait is recorded, and it is
resumed by replay, by any worker, when the timer is due, the signal arrives or the child
ends. Each call takes a sequence number like a step, so replay meets them in order.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sagaline.engine.children import new_child
from sagaline.engine.context import RunContext, current_context
from sagaline.engine.registry import WorkflowDef
from sagaline.model import events as ev
from sagaline.model import stack
from sagaline.model.errors import (
    PayloadError,
    RunFailedError,
    SagalineError,
    SignalTimeoutError,
)
from sagaline.model.history import Call, take_signal
from sagaline.model.records import StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus

R = TypeVar("R")


def _ctx(what: str) -> RunContext:
    ctx = current_context()
    if ctx is None:
        raise SagalineError(
            f"sagaline.{what}() was called outside a running workflow; it only works inside "
            f"a @workflow started with engine.start(...)"
        )
    return ctx


def _seconds(duration: timedelta | float) -> float:
    return duration.total_seconds() if isinstance(duration, timedelta) else float(duration)


def now() -> datetime:
    """The workflow's current time, the same on replay: when it reached this point, as
    recorded (the end of the latest step or wait before it, or the run's start)."""
    return datetime.fromtimestamp(_ctx("now").cursor().time, UTC)


def uuid4() -> uuidlib.UUID:
    """A random-looking UUID that replay reproduces: derived from the run id and a counter."""
    ctx = _ctx("uuid4")
    ctx.uuids += 1
    digest = hashlib.sha256(f"{ctx.run.run_id}:{ctx.uuids}".encode()).digest()
    return uuidlib.UUID(bytes=digest[:16], version=4)


async def sleep(duration: timedelta | float) -> None:
    """A durable timer: the run is suspended and resumed when it is due, by any worker."""
    ctx = _ctx("sleep")
    seconds = _seconds(duration)
    name = "sleep"
    call = ctx.begin(StepKind.SLEEP, name)
    rec = call.recorded
    if rec is not None:
        if rec.status is StepStatus.SUCCEEDED:
            return
        wake_at = float(ctx.rt.codec.decode_json(rec.output or b"0", float, "timer"))
        started = rec.started_at
    else:
        started = ctx.rt.clock()
        wake_at = started + seconds
    if ctx.rt.clock() >= wake_at:
        done = ctx.row(call, StepKind.SLEEP, name, StepStatus.SUCCEEDED, started_at=started)
        await ctx.finish(call, done, ctx.event(ev.TimerFired(due=wake_at), call.seq))
        return
    output = ctx.rt.codec.encode_json(wake_at, "timer")
    waiting = ctx.row(
        call, StepKind.SLEEP, name, StepStatus.WAITING, output=output, started_at=started
    )
    ctx.wait(waiting, wake_at)


async def wait_for_signal(
    name: str, timeout: timedelta | float | None = None, type: Any = Any
) -> Any:
    """Wait for the named signal and return its payload, decoded to ``type``.

    A signal sent before the workflow waits is kept and delivered now; each signal is
    consumed by exactly one wait. Raises:
        SignalTimeoutError: ``timeout`` passed first (the workflow may catch it).
    """
    return await await_signal(_ctx("wait_for_signal"), name, timeout, type)


async def await_signal(
    ctx: RunContext,
    name: str,
    timeout: timedelta | float | None,
    type: Any,
    before_waiting: Callable[[], Awaitable[None]] | None = None,
) -> Any:
    """``wait_for_signal``'s durable call; ``before_waiting`` runs (again) whenever the
    wait is not yet answered by its history, before a kept signal is looked for."""
    call = ctx.begin(StepKind.SIGNAL, name)
    codec = ctx.rt.codec
    rec = call.recorded
    if rec is not None:
        if rec.status is StepStatus.SUCCEEDED:
            return _decode_signal(ctx, rec.output or b"null", type, name)
        if rec.status is StepStatus.FAILED:
            raise SignalTimeoutError(name, ctx.run.run_id)
        deadline = codec.decode_json(rec.output or b"null", float | None, "signal deadline")
        started = rec.started_at
    else:
        started = ctx.rt.clock()
        deadline = None if timeout is None else started + _seconds(timeout)
    if before_waiting is not None:
        await before_waiting()
    signal = take_signal(ctx.signals, name)
    if signal is not None:
        done = ctx.row(
            call,
            StepKind.SIGNAL,
            name,
            StepStatus.SUCCEEDED,
            output=signal.payload,
            started_at=started,
        )
        event = ctx.event(ev.SignalConsumed(signal=name), call.seq)
        await ctx.finish(call, done, event, consumed_signals=[(signal.id, call.seq)])
        return _decode_signal(ctx, signal.payload, type, name)
    if deadline is not None and ctx.rt.clock() >= deadline:
        error = {"type": "SignalTimeoutError", "message": f"no signal {name!r} in time"}
        done = ctx.row(
            call, StepKind.SIGNAL, name, StepStatus.FAILED, error=error, started_at=started
        )
        await ctx.finish(call, done, ctx.event(ev.SignalTimedOut(signal=name), call.seq))
        raise SignalTimeoutError(name, ctx.run.run_id)
    output = codec.encode_json(deadline, "signal deadline")
    waiting = ctx.row(
        call, StepKind.SIGNAL, name, StepStatus.WAITING, output=output, started_at=started
    )
    ctx.wait(waiting, deadline)


def _decode_signal(ctx: RunContext, payload: bytes, type_: Any, name: str) -> Any:
    """A consumed signal is history, like a step's result: if it no longer decodes to the
    type the code asks for, the run is parked BLOCKED (deploy code that reads it, then
    retry) rather than raising into the workflow, which would change what replay does."""
    try:
        return ctx.rt.codec.decode(payload, type_, f"signal {name!r}")
    except PayloadError as exc:
        raise ctx.block(exc) from None


class ChildHandle(Generic[R]):
    """A child run started by a workflow; ``await handle.result()`` inside the workflow."""

    def __init__(self, run_id: str, workflow: WorkflowDef[Any, R]) -> None:
        self.run_id = run_id
        self.workflow = workflow

    async def result(self) -> R:
        """The child's output; raises ``RunFailedError`` if it did not complete."""
        ctx = _ctx("ChildHandle.result")
        call = ctx.begin(StepKind.CHILD_RESULT, self.run_id)
        rec = call.recorded
        if rec is None or rec.status is StepStatus.WAITING:
            rec = await self._settle(ctx, call)
        if rec.pivot and ctx.pivot is None:
            ctx.pivot = f"child {self.run_id}"
        if rec.status is StepStatus.SUCCEEDED:
            where = f"child run {self.run_id!r} result"
            try:
                value: R = ctx.rt.codec.decode(
                    rec.output or b"null", self.workflow.signature.return_type, where
                )
            except PayloadError as exc:
                raise ctx.block(exc) from None
            return value
        failure: dict[str, Any] = rec.error or {}
        raise RunFailedError(self.run_id, RunStatus(failure["status"]), failure.get("cause"))

    async def _settle(self, ctx: RunContext, call: Call) -> StepRecord:
        """Record the child's end, or suspend until it ends."""
        kind = StepKind.CHILD_RESULT
        child = await ctx.rt.store.load_run(self.run_id)
        if child is None or not child.status.is_settled:
            ctx.wait(ctx.row(call, kind, self.run_id, StepStatus.WAITING), None, self.run_id)
        ok = child.status is RunStatus.COMPLETED
        # A completed child that passed its own pivot cannot be undone: it seals this run too.
        pivot = ok and stack.passed_pivot(await ctx.rt.store.load_steps(self.run_id)) is not None
        error = None if ok else {"status": child.status.value, "cause": child.error}
        status = StepStatus.SUCCEEDED if ok else StepStatus.FAILED
        rec = ctx.row(
            call, kind, self.run_id, status, output=child.output, error=error, pivot=pivot
        )
        event = ctx.event(ev.ChildFinished(child=self.run_id, status=child.status.value), call.seq)
        await ctx.finish(call, rec, event)
        return rec


async def start_child(
    wf: WorkflowDef[Any, R], *args: Any, run_id: str | None = None, **kwargs: Any
) -> ChildHandle[R]:
    """Start ``wf`` as a child of this run (once, even on replay).

    The child is part of this run's saga: when this run unwinds (it fails or is
    cancelled), a running child is cancelled and a completed child is compensated (its
    compensations run in the child), in reverse order with this run's own steps. The
    child's id defaults to ``<parent id>/<sequence number>``.
    """
    ctx = _ctx("start_child")
    values = wf.signature.bind(args, kwargs)
    call = ctx.begin(StepKind.CHILD, wf.name)
    if call.recorded is not None:
        recorded = call.recorded.output or b"null"
        child_id = str(ctx.rt.codec.decode_json(recorded, str, "child run id"))
        return ChildHandle(child_id, wf)
    child_id = run_id or f"{ctx.run.run_id}/{call.seq}"
    data = wf.signature.encode_args(ctx.rt.codec, values)
    output = ctx.rt.codec.encode_json(child_id, "child run id")
    row = ctx.row(call, StepKind.CHILD, wf.name, StepStatus.SUCCEEDED, output=output)
    new = new_child(ctx, child_id, wf.name, data, wf.queue)
    await ctx.finish(
        call, row, ctx.event(ev.ChildStarted(child=child_id), call.seq), new_runs=[new]
    )
    return ChildHandle(child_id, wf)


def patched(change_id: str) -> bool:
    """True where this run takes the code path of ``change_id``.

    Runs that recorded their history before the change keep the old path (False); runs
    that reach this point with the change deployed take the new one (True) and remember
    it, as a marker in their history, for every later replay.
    """
    ctx = _ctx("patched")
    if change_id in ctx.patches:
        return ctx.patches[change_id]
    if ctx.history.patched(ctx.cursor(), change_id) is False:
        ctx.patches[change_id] = False  # recorded by code from before the change
        return False
    call = ctx.begin(StepKind.PATCH, change_id)
    if call.recorded is None:
        marker = ctx.row(call, StepKind.PATCH, change_id, StepStatus.SUCCEEDED)
        ctx.pending_markers.append(marker)
        ctx.history.record(call.branch, call.pos, marker)
    ctx.patches[change_id] = True
    return True
