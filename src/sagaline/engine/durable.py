"""Durable waits and replay-safe values, called from inside a workflow.

``sleep``, ``wait_for_signal`` and a child's ``result()`` that cannot be answered yet
suspend the run: it is released from the worker's memory, its wait is recorded, and it is
resumed by replay, by any worker, when the timer is due, the signal arrives or the child
ends. Each call takes a sequence number like a step, so replay meets them in order.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sagaline.engine.context import RunContext, current_context
from sagaline.engine.registry import WorkflowDef
from sagaline.model import events as ev
from sagaline.model.errors import (
    RunFailedError,
    SagalineError,
    SignalTimeoutError,
)
from sagaline.model.records import NewRun, StepRecord
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


def _row(
    ctx: RunContext,
    seq: int,
    kind: StepKind,
    name: str,
    status: StepStatus,
    output: bytes | None = None,
    error: dict[str, Any] | None = None,
    started_at: float | None = None,
) -> StepRecord:
    now = ctx.rt.clock()
    return StepRecord(
        seq=seq,
        name=name,
        kind=kind,
        status=status,
        input=None,
        output=output,
        error=error,
        attempts=0,
        compensable=False,
        pivot=False,
        compensates_seq=None,
        done_index=0,
        started_at=now if started_at is None else started_at,
        finished_at=now,
    )


def now() -> datetime:
    """The workflow's current time, the same on replay: when it reached this point, as
    recorded (the end of the latest step or wait before it, or the run's start)."""
    return datetime.fromtimestamp(_ctx("now").last_time, UTC)


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
    seq, rec = ctx.next_seq()
    name = "sleep"
    if rec is not None:
        ctx.expect(rec, StepKind.SLEEP, name)
        if rec.status is StepStatus.SUCCEEDED:
            return
        wake_at = float(ctx.rt.codec.decode(rec.output or b"0", float, "timer"))
        started = rec.started_at
    else:
        started = ctx.rt.clock()
        wake_at = started + seconds
    if ctx.rt.clock() >= wake_at:
        done = _row(ctx, seq, StepKind.SLEEP, name, StepStatus.SUCCEEDED, started_at=started)
        await ctx.record(done, ctx.event(ev.TIMER_FIRED, seq, due=wake_at))
        return
    output = ctx.rt.codec.encode(wake_at, "timer")
    waiting = _row(ctx, seq, StepKind.SLEEP, name, StepStatus.WAITING, output, started_at=started)
    ctx.wait(waiting, wake_at)


async def wait_for_signal(
    name: str, timeout: timedelta | float | None = None, type: Any = Any
) -> Any:
    """Wait for the named signal and return its payload, decoded to ``type``.

    A signal sent before the workflow waits is kept and delivered now; each signal is
    consumed by exactly one wait. Raises:
        SignalTimeoutError: ``timeout`` passed first (the workflow may catch it).
    """
    ctx = _ctx("wait_for_signal")
    seq, rec = ctx.next_seq()
    codec = ctx.rt.codec
    if rec is not None:
        ctx.expect(rec, StepKind.SIGNAL, name)
        if rec.status is StepStatus.SUCCEEDED:
            return codec.decode(rec.output or b"null", type, f"signal {name!r}")
        if rec.status is StepStatus.FAILED:
            raise SignalTimeoutError(name, ctx.run.run_id)
        deadline = codec.decode(rec.output or b"null", float | None, "signal deadline")
        started = rec.started_at
    else:
        started = ctx.rt.clock()
        deadline = None if timeout is None else started + _seconds(timeout)
    signal = next((s for s in ctx.signals if s.name == name), None)
    if signal is not None:
        ctx.signals.remove(signal)
        done = _row(
            ctx, seq, StepKind.SIGNAL, name, StepStatus.SUCCEEDED, signal.payload, None, started
        )
        event = ctx.event(ev.SIGNAL_CONSUMED, seq, signal=name)
        await ctx.record(done, event, consumed_signals=[(signal.id, seq)])
        return codec.decode(signal.payload, type, f"signal {name!r}")
    if deadline is not None and ctx.rt.clock() >= deadline:
        error = {"type": "SignalTimeoutError", "message": f"no signal {name!r} in time"}
        done = _row(ctx, seq, StepKind.SIGNAL, name, StepStatus.FAILED, None, error, started)
        await ctx.record(done, ctx.event(ev.SIGNAL_TIMED_OUT, seq, signal=name))
        raise SignalTimeoutError(name, ctx.run.run_id)
    output = codec.encode(deadline, "signal deadline")
    ctx.wait(
        _row(ctx, seq, StepKind.SIGNAL, name, StepStatus.WAITING, output, None, started), deadline
    )


class ChildHandle(Generic[R]):
    """A child run started by a workflow; ``await handle.result()`` inside the workflow."""

    def __init__(self, run_id: str, workflow: WorkflowDef[Any, R]) -> None:
        self.run_id = run_id
        self.workflow = workflow

    async def result(self) -> R:
        """The child's output; raises ``RunFailedError`` if it did not complete."""
        ctx = _ctx("ChildHandle.result")
        seq, rec = ctx.next_seq()
        codec = ctx.rt.codec
        where = f"child run {self.run_id!r} result"
        if rec is not None:
            ctx.expect(rec, StepKind.CHILD_RESULT, self.run_id)
        if rec is None or rec.status is StepStatus.WAITING:
            child = await ctx.rt.store.load_run(self.run_id)
            if child is None or not child.status.is_settled:
                waiting = _row(ctx, seq, StepKind.CHILD_RESULT, self.run_id, StepStatus.WAITING)
                ctx.wait(waiting, None, self.run_id)
            assert child is not None
            ok = child.status is RunStatus.COMPLETED
            error = None if ok else {"status": child.status.value, "cause": child.error}
            status = StepStatus.SUCCEEDED if ok else StepStatus.FAILED
            rec = _row(ctx, seq, StepKind.CHILD_RESULT, self.run_id, status, child.output, error)
            event = ctx.event(ev.CHILD_FINISHED, seq, child=self.run_id, status=child.status.value)
            await ctx.record(rec, event)
        if rec.status is StepStatus.SUCCEEDED:
            value: R = codec.decode(
                rec.output or b"null", self.workflow.signature.return_type, where
            )
            return value
        failure: dict[str, Any] = rec.error or {}
        raise RunFailedError(self.run_id, RunStatus(failure["status"]), failure.get("cause"))


async def start_child(
    wf: WorkflowDef[Any, R], *args: Any, run_id: str | None = None, **kwargs: Any
) -> ChildHandle[R]:
    """Start ``wf`` as a child of this run (once, even on replay); cancelling this run
    cancels it. The child's id defaults to ``<parent id>/<sequence number>``."""
    ctx = _ctx("start_child")
    seq, rec = ctx.next_seq()
    if rec is not None:
        ctx.expect(rec, StepKind.CHILD, wf.name)
        child_id = str(ctx.rt.codec.decode(rec.output or b"null", str, "child run id"))
        return ChildHandle(child_id, wf)
    child_id = run_id or f"{ctx.run.run_id}/{seq}"
    values = wf.signature.bind(args, kwargs)
    data = wf.signature.encode_args(ctx.rt.codec, values)
    output = ctx.rt.codec.encode(child_id, "child run id")
    row = _row(ctx, seq, StepKind.CHILD, wf.name, StepStatus.SUCCEEDED, output)
    new = NewRun(child_id, wf.name, data, wf.queue, ctx.rt.clock(), parent_run_id=ctx.run.run_id)
    await ctx.record(row, ctx.event(ev.CHILD_STARTED, seq, child=child_id), new_runs=[new])
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
    rec = ctx.history.get(ctx.seq + 1)
    if rec is not None and not (rec.kind is StepKind.PATCH and rec.name == change_id):
        ctx.patches[change_id] = False  # recorded by code from before the change
        return False
    seq, rec = ctx.next_seq()
    if rec is None:
        marker = _row(ctx, seq, StepKind.PATCH, change_id, StepStatus.SUCCEEDED)
        ctx.pending_markers.append(marker)
        ctx.history[seq] = marker
    ctx.consumed.add(seq)
    ctx.patches[change_id] = True
    return True
