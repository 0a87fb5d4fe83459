"""The replay context: what a step call does inside a running workflow.

Each step call takes the next sequence number. If the run's history holds a record at that
number, the call returns the recorded result (or raises the recorded failure) without
running anything; otherwise the step runs for real and its outcome is committed before the
workflow sees it. The context travels in a ``ContextVar``, so ``asyncio.gather`` over steps
shares it; numbers are taken when each call starts, which asyncio does in a fixed order.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NoReturn

from sagaline.engine.attempts import call_with_retries
from sagaline.engine.runtime import Runtime
from sagaline.model import events as ev
from sagaline.model import stack
from sagaline.model.errors import (
    DatabaseUnavailableError,
    NonDeterminismError,
    PayloadError,
    SagalineError,
    StepFailedError,
)
from sagaline.model.records import (
    Checkpoint,
    NewEvent,
    NewRun,
    RunChange,
    RunRecord,
    SignalRecord,
    StepRecord,
)
from sagaline.model.status import StepKind, StepStatus

if TYPE_CHECKING:
    from sagaline.engine.registry import StepDef

_current: ContextVar[RunContext | None] = ContextVar("sagaline_run", default=None)


def current_context() -> RunContext | None:
    return _current.get()


class RunInterrupted(BaseException):
    """Unwinds the workflow's stack past any ``except Exception`` in user code."""


class CancelRun(RunInterrupted):
    """An operator cancelled the run: stop at this step boundary and compensate."""


class LostLease(RunInterrupted):
    """Another worker owns the run now: stop without writing anything more."""


class Suspend(RunInterrupted):
    """The workflow waits on a timer, a signal or a child: release it until then."""


class Drained(RunInterrupted):
    """The worker is shutting down gracefully: stop at this step boundary, resume elsewhere."""


class Stopped(RunInterrupted):
    """The workflow already ended; a straggling parallel branch may not start a step."""


class StoreInterrupted(RunInterrupted):
    """A checkpoint could not be written: stop; resume later.

    Whether the commit landed is unknown, so the run is not continued from memory; replay
    reads what really reached the database. ``transient`` (the connection dropped) means
    hand the run back at once; anything else is a fault worth a lease's pause.
    """

    def __init__(self, run_id: str, transient: bool) -> None:
        super().__init__(run_id)
        self.transient = transient


class RunContext:
    def __init__(
        self,
        rt: Runtime,
        run: RunRecord,
        records: Sequence[StepRecord],
        signals: Sequence[SignalRecord] = (),
    ) -> None:
        self.rt = rt
        self.run = run
        self.records: dict[int, StepRecord] = {r.seq: r for r in records}
        self.history = {r.seq: r for r in records if r.kind is not StepKind.COMPENSATION}
        self.seq = 0
        self.done_index = stack.next_done_index(records) - 1
        self.pivot: str | None = stack.passed_pivot(records)
        self.blocked: SagalineError | None = None
        self.cancel_requested = run.cancel_requested
        self.consumed: set[int] = set()
        self.signals = list(signals)
        self.seen_signal_id = max((s.id for s in signals), default=0)
        self.waits: list[StepRecord] = []
        self.wake_at: float | None = None
        self.awaited_runs: list[str] = []
        self.last_time = run.created_at
        self.uuids = 0
        self.patches: dict[str, bool] = {}
        self.pending_markers: list[StepRecord] = []
        self.stopping = False
        self.draining = False
        self.settled: RunRecord | None = None
        """The run as this worker left it, once it ended or was parked."""
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def activate(self) -> object:
        return _current.set(self)

    def deactivate(self, token: Any) -> None:
        _current.reset(token)

    # -- writing -------------------------------------------------------------------------

    def event(self, type_: str, seq: int | None = None, **data: Any) -> NewEvent:
        return NewEvent(type=type_, at=self.rt.clock(), seq=seq, data=data)

    async def checkpoint(
        self,
        steps: Iterable[StepRecord] = (),
        events: Iterable[NewEvent] = (),
        change: RunChange | None = None,
        new_runs: Iterable[NewRun] = (),
        consumed_signals: Iterable[tuple[int, int]] = (),
    ) -> None:
        """Commit progress under this worker's lease; raises ``LostLease`` if it is gone."""
        markers, self.pending_markers = self.pending_markers, []
        cp = Checkpoint(
            self.run.run_id,
            self.rt.owner,
            self.run.lease_epoch,
            [*markers, *steps],
            list(events),
            change,
            list(new_runs),
            list(consumed_signals),
            self.run.parent_run_id,
        )
        try:
            result = await self.rt.committer.commit(cp)
        except Exception as exc:
            transient = isinstance(exc, DatabaseUnavailableError)
            raise StoreInterrupted(self.run.run_id, transient) from exc
        if not result.landed:
            raise LostLease(self.run.run_id)
        if result.cancel_requested:
            self.cancel_requested = True
        if change is not None and change.status.is_settled:
            self.settled = dataclasses.replace(
                self.run,
                status=change.status,
                output=change.output,
                error=change.error,
                owner=None,
                cancel_requested=self.cancel_requested,
            )
        for rec in cp.steps:
            self.records[rec.seq] = rec

    # -- the step call -------------------------------------------------------------------

    def check_boundary(self) -> None:
        """Between steps: stop a blocked run, and honour a cancel unless past the pivot."""
        if self.stopping:
            raise Stopped()
        if self.draining:
            raise Drained()
        if self.blocked is not None:
            raise self.blocked
        if self.cancel_requested and self.pivot is None:
            raise CancelRun()

    def block(self, error: SagalineError) -> SagalineError:
        """Remember that the run cannot go on, even if the workflow catches the error."""
        if self.blocked is None:
            self.blocked = error
        return error

    def next_seq(self) -> tuple[int, StepRecord | None]:
        """The next sequence number, and what the history recorded there."""
        self.check_boundary()
        self.seq += 1
        return self.seq, self.history.get(self.seq)

    def expect(self, rec: StepRecord, kind: StepKind, name: str) -> None:
        """The recorded entry must be the same call as the code makes now."""
        self.consumed.add(rec.seq)
        if rec.kind is not kind or rec.name != name:
            recorded = rec.name if rec.kind is StepKind.STEP else f"{rec.kind.value} {rec.name}"
            actual = name if kind is StepKind.STEP else f"{kind.value} {name}"
            raise self.block(NonDeterminismError(self.run.run_id, rec.seq, recorded, actual))
        if rec.status is not StepStatus.WAITING:
            self.last_time = max(self.last_time, rec.finished_at)

    def wait(
        self, rec: StepRecord, wake_at: float | None, awaited_run: str | None = None
    ) -> NoReturn:
        """Suspend the run on ``rec`` (a timer, signal or child) until ``wake_at`` or woken."""
        self.waits.append(rec)
        if wake_at is not None:
            self.wake_at = wake_at if self.wake_at is None else min(self.wake_at, wake_at)
        if awaited_run is not None:
            self.awaited_runs.append(awaited_run)
        raise Suspend()

    async def record(self, rec: StepRecord, event: NewEvent, **extra: Any) -> None:
        """Commit a finished wait (timer fired, signal consumed, child ended...)."""
        await self.checkpoint(steps=[rec], events=[event], **extra)
        self.history[rec.seq] = rec
        self.consumed.add(rec.seq)
        self.last_time = max(self.last_time, rec.finished_at)

    async def drain(self) -> None:
        """Let parallel branches still in a step finish it; start no new ones."""
        self.stopping = True
        while self._inflight:
            await self._idle.wait()
            await asyncio.sleep(0)

    async def call_step(
        self, sdef: StepDef[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        seq, recorded = self.next_seq()
        if recorded is not None:
            return self._replay(sdef, recorded)
        self._inflight += 1
        self._idle.clear()
        try:
            return await self._run_step(sdef, seq, args, kwargs)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _run_step(
        self, sdef: StepDef[Any, Any], seq: int, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        values = sdef.signature.bind(args, kwargs)
        data = sdef.signature.encode_args(self.rt.codec, values)
        call_args, call_kwargs = sdef.signature.call_parts(values)

        # "Started" is written with the step's first commit (a failed attempt or its end),
        # stamped with when it really started: one commit per step, the audit order kept.
        started = [self.event(ev.STEP_STARTED, seq, step=sdef.name)]

        def pending_start() -> list[NewEvent]:
            events, started[:] = started[:], []
            return events

        async def on_failure(attempt: int, error: dict[str, Any], delay: float) -> None:
            await self.checkpoint(
                events=[
                    *pending_start(),
                    self.event(
                        ev.STEP_ATTEMPT_FAILED,
                        seq,
                        step=sdef.name,
                        attempt=attempt,
                        error=error,
                        retry_in=round(delay, 3),
                    ),
                ]
            )
            self.check_boundary()

        outcome = await call_with_retries(
            self.rt,
            sdef.fn,
            sdef.is_async,
            call_args,
            call_kwargs,
            sdef.retry,
            sdef.timeout,
            on_failure,
        )
        output: bytes | None = None
        if outcome.ok:
            try:
                output = self.rt.codec.encode(outcome.value, f"step {sdef.name!r} result")
            except PayloadError as exc:
                outcome.ok, outcome.error = False, {"type": type(exc).__name__, "message": str(exc)}
        self.done_index += 1
        rec = StepRecord(
            seq=seq,
            name=sdef.name,
            kind=StepKind.STEP,
            status=StepStatus.SUCCEEDED if outcome.ok else StepStatus.FAILED,
            input=data,
            output=output,
            error=outcome.error,
            attempts=outcome.attempts,
            compensable=sdef.compensation is not None,
            pivot=sdef.pivot,
            compensates_seq=None,
            done_index=self.done_index,
            started_at=outcome.started_at,
            finished_at=self.rt.clock(),
        )
        detail = {"step": sdef.name, "attempts": outcome.attempts}
        if outcome.ok:
            event = self.event(ev.STEP_SUCCEEDED, seq, **detail)
        else:
            event = self.event(ev.STEP_FAILED, seq, **detail, error=outcome.error)
        await self.checkpoint(steps=[rec], events=[*pending_start(), event])
        self.history[seq] = rec
        return self._replay(sdef, rec)

    def _replay(self, sdef: StepDef[Any, Any], rec: StepRecord) -> Any:
        """The recorded outcome, decoded exactly as on the first run."""
        self.expect(rec, StepKind.STEP, sdef.name)
        if rec.status is StepStatus.SUCCEEDED:
            if rec.pivot and self.pivot is None:
                self.pivot = rec.name
            assert rec.output is not None
            try:
                return self.rt.codec.decode(
                    rec.output, sdef.signature.return_type, f"step {sdef.name!r} result"
                )
            except PayloadError as exc:
                raise self.block(exc) from None
        error = rec.error or {}
        raise StepFailedError(
            sdef.name,
            str(error.get("type", "Exception")),
            str(error.get("message", "")),
            rec.attempts,
            rec.seq,
        )

    def unconsumed(self) -> StepRecord | None:
        """A recorded step the workflow did not reach: the code changed under the run."""
        left = [rec for seq, rec in self.history.items() if seq not in self.consumed]
        return min(left, key=lambda rec: rec.seq) if left else None
