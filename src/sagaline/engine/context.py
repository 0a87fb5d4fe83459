"""The replay context: what a step call does inside a running workflow.

Each step call takes the next sequence number. If the run's history holds a record at that
number, the call returns the recorded result (or raises the recorded failure) without
running anything; otherwise the step runs for real and its outcome is committed before the
workflow sees it. The context travels in a ``ContextVar``, so ``asyncio.gather`` over steps
shares it; numbers are taken when each call starts, which asyncio does in a fixed order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from sagaline.engine.attempts import call_with_retries
from sagaline.engine.runtime import Runtime
from sagaline.model import events as ev
from sagaline.model import stack
from sagaline.model.errors import (
    NonDeterminismError,
    PayloadError,
    SagalineError,
    StepFailedError,
)
from sagaline.model.records import Checkpoint, NewEvent, RunChange, RunRecord, StepRecord
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


class StoreInterrupted(RunInterrupted):
    """A checkpoint could not be written (the database went away): stop; resume later.

    Whether the commit landed is unknown, so the run is not continued from memory; it is
    released and claimed again, and replay reads what really reached the database.
    """


class RunContext:
    def __init__(self, rt: Runtime, run: RunRecord, records: Sequence[StepRecord]) -> None:
        self.rt = rt
        self.run = run
        self.records: dict[int, StepRecord] = {r.seq: r for r in records}
        self.history = {r.seq: r for r in records if r.kind is StepKind.STEP}
        self.seq = 0
        self.done_index = stack.next_done_index(records) - 1
        self.pivot: str | None = stack.passed_pivot(records)
        self.blocked: SagalineError | None = None
        self.cancel_requested = run.cancel_requested
        self.consumed: set[int] = set()

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
    ) -> None:
        """Commit progress under this worker's lease; raises ``LostLease`` if it is gone."""
        cp = Checkpoint(
            self.run.run_id, self.rt.owner, self.run.lease_epoch, list(steps), list(events), change
        )
        try:
            result = await self.rt.committer.commit(cp)
        except Exception as exc:
            raise StoreInterrupted(self.run.run_id) from exc
        if not result.landed:
            raise LostLease(self.run.run_id)
        if result.cancel_requested:
            self.cancel_requested = True
        for rec in cp.steps:
            self.records[rec.seq] = rec

    # -- the step call -------------------------------------------------------------------

    def check_boundary(self) -> None:
        """Between steps: stop a blocked run, and honour a cancel unless past the pivot."""
        if self.blocked is not None:
            raise self.blocked
        if self.cancel_requested and self.pivot is None:
            raise CancelRun()

    def block(self, error: SagalineError) -> SagalineError:
        """Remember that the run cannot go on, even if the workflow catches the error."""
        if self.blocked is None:
            self.blocked = error
        return error

    async def call_step(
        self, sdef: StepDef[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        self.check_boundary()
        self.seq += 1
        seq = self.seq
        recorded = self.history.get(seq)
        if recorded is not None:
            return self._replay(sdef, recorded)
        values = sdef.signature.bind(args, kwargs)
        data = sdef.signature.encode_args(self.rt.codec, values)
        call_args, call_kwargs = sdef.signature.call_parts(values)

        async def on_failure(attempt: int, error: dict[str, Any], delay: float) -> None:
            await self.checkpoint(
                events=[
                    self.event(
                        ev.STEP_ATTEMPT_FAILED,
                        seq,
                        step=sdef.name,
                        attempt=attempt,
                        error=error,
                        retry_in=round(delay, 3),
                    )
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
        await self.checkpoint(steps=[rec], events=[event])
        self.history[seq] = rec
        self.consumed.add(seq)
        return self._replay(sdef, rec)

    def _replay(self, sdef: StepDef[Any, Any], rec: StepRecord) -> Any:
        """The recorded outcome, decoded exactly as on the first run."""
        self.consumed.add(rec.seq)
        if rec.name != sdef.name:
            raise self.block(NonDeterminismError(self.run.run_id, rec.seq, rec.name, sdef.name))
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
