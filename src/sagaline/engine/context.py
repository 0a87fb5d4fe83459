"""The replay context: the one command path every durable call of a workflow goes through.

A durable call (a step, a timer, a signal wait, a child) asks :meth:`RunContext.begin` for
its place; the pure :class:`~sagaline.model.history.History` says whether the history
recorded it there (replay returns that outcome) or not (the call happens for real and its
outcome is committed with :meth:`RunContext.finish` before the workflow sees it). The
context travels in a ``ContextVar``; each asyncio task that makes a durable call gets its
own branch cursor, so parallel branches replay whatever their timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any, NoReturn

import msgspec

from sagaline.engine.handlers import HandlerDef, get_handler
from sagaline.engine.observe import outgoing_traceparent
from sagaline.engine.runtime import Runtime
from sagaline.model import envelope, stack
from sagaline.model import events as ev
from sagaline.model.errors import (
    DatabaseUnavailableError,
    NonDeterminismError,
    PayloadError,
    SagalineError,
)
from sagaline.model.events import Event
from sagaline.model.history import Call, Cursor, History
from sagaline.model.locks import NewLock, ReleaseLock
from sagaline.model.records import (
    Checkpoint,
    CommitResult,
    NewEvent,
    NewRun,
    OutboxMessage,
    RunChange,
    RunRecord,
    SignalRecord,
    StepRecord,
)
from sagaline.model.retry import RetryPolicy
from sagaline.model.status import RunStatus, StepKind, StepStatus
from sagaline.store.protocol import StoreTransaction

_current: ContextVar[RunContext | None] = ContextVar("sagaline_run", default=None)
_branch: ContextVar[_Branch | None] = ContextVar("sagaline_branch", default=None)


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


class CheckpointRejected(RunInterrupted):
    """The database refused this run's checkpoint for a reason of its own (``message``)."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(run_id)
        self.message = message


@dataclasses.dataclass
class _Branch:
    cursor: Cursor
    task: asyncio.Task[Any] | None
    ctx: RunContext


FAILURE_ENDS = frozenset({RunStatus.FAILED, RunStatus.COMPENSATED, RunStatus.CANCELLED})
"""The ends of a handler's run that publish its ``on_failure`` event."""

# A rejected checkpoint is tried this many times (without running anything again) before
# the run is parked with the database's message.
REJECTED_TRIES = 3


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
        self.history = History.of(run.run_id, records)
        self.root = Cursor("", run.created_at)
        self.done_index = stack.next_done_index(records) - 1
        self.pivot: str | None = stack.passed_pivot(records)
        self.blocked: SagalineError | None = None
        self.cancel_requested = run.cancel_requested
        self.interrupt = asyncio.Event()
        """Set when a cancel or a drain must cut a retry backoff short."""
        self.signals = list(signals)
        self.seen_signal_id = max((s.id for s in signals), default=0)
        self.waits: list[StepRecord] = []
        self.wake_at: float | None = None
        self.awaited_runs: list[str] = []
        self.uuids = 0
        self.patches: dict[str, bool] = {}
        self.pending_markers: list[StepRecord] = []
        self.stopping = False
        self.draining = False
        self.settled: RunRecord | None = None
        """The run as this worker left it, once it ended or was parked."""
        self.traced = False
        """Whether this execution's run span records (set by the observer): its steps get
        spans only then, decided once per execution instead of once per step."""
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.publishes: list[tuple[StepRecord, OutboxMessage]] = []
        """Events the workflow published, with their rows, riding the next checkpoint."""
        self.handler: HandlerDef | None = get_handler(run.workflow)
        self._trigger: envelope.Event[Any] | None = None

    def activate(self) -> tuple[object, object]:
        branch = _Branch(self.root, asyncio.current_task(), self)
        return _current.set(self), _branch.set(branch)

    def deactivate(self, tokens: tuple[Any, Any]) -> None:
        _branch.reset(tokens[1])
        _current.reset(tokens[0])

    def request_cancel(self) -> None:
        self.cancel_requested = True
        if self.pivot is None:
            self.interrupt.set()

    def request_drain(self) -> None:
        self.draining = True
        self.interrupt.set()

    # -- writing -------------------------------------------------------------------------

    def event(self, event: Event, seq: int | None = None) -> NewEvent:
        """``event`` stamped with the engine's clock, as it is written."""
        return NewEvent(event, self.rt.clock(), seq)

    # -- choreography ----------------------------------------------------------------------

    def trigger(self) -> envelope.Event[Any] | None:
        """The event that started this run, when it is a handler's (data as plain JSON)."""
        if self.handler is not None and self._trigger is None:
            try:
                args = self.rt.codec.decode(self.run.input, list[envelope.Event[Any]], "event")
            except PayloadError:
                return None
            self._trigger = args[0] if args else None
        return self._trigger

    def service(self) -> str | None:
        if self.handler is not None:
            return self.handler.service_in(self.rt.service)
        return self.rt.service

    def retry_policy(self, policy: RetryPolicy, given: bool) -> RetryPolicy:
        """A step's policy: its own, else its handler's ``retry=``, else the default."""
        if given or self.handler is None or self.handler.retry is None:
            return policy
        return self.handler.retry

    def published(self, messages: Iterable[OutboxMessage], seq: int | None) -> list[NewEvent]:
        """The audit trail's record of each message, for the commit that carries it."""
        return [
            self.event(ev.EventPublished(topic=m.topic, message_id=m.id), seq) for m in messages
        ]

    def publish_later(self, call: Call, row: StepRecord, message: OutboxMessage) -> None:
        """A workflow's publish: recorded now for replay, committed with the next checkpoint
        (which every run makes before it ends, waits or hands over)."""
        self.publishes.append((row, message))
        self.history.record(call.branch, call.pos, row)
        cursor = self.cursor()
        cursor.time = max(cursor.time, row.finished_at)

    def _failure_event(self, change: RunChange) -> OutboxMessage | None:
        handler = self.handler
        if handler is None or handler.on_failure is None or change.status not in FAILURE_ENDS:
            return None
        trigger = self.trigger()
        error = change.error or {}
        data = {
            "error": {
                "type": error.get("type", change.status.value),
                "message": error.get("message", ""),
            },
            "event": None if trigger is None else trigger.data,
        }
        at = self.rt.clock()
        headers = envelope.headers(
            correlation_id=trigger.correlation_id if trigger is not None else self.run.run_id,
            causation_id=trigger.id if trigger is not None else None,
            source=self.service(),
            at=at,
            traceparent=outgoing_traceparent(
                self.rt.observer, trigger.traceparent if trigger is not None else None
            ),
        )
        body = self.rt.codec.encode(data, f"event {handler.on_failure!r}")
        run_id = self.run.run_id
        return OutboxMessage(f"{run_id}:on_failure", handler.on_failure, body, headers, at, run_id)

    async def checkpoint(
        self,
        steps: Iterable[StepRecord] = (),
        events: Iterable[NewEvent] = (),
        change: RunChange | None = None,
        new_runs: Iterable[NewRun] = (),
        consumed_signals: Iterable[tuple[int, int]] = (),
        unless_cancelled: bool = False,
        outbox: Iterable[OutboxMessage] = (),
        via: StoreTransaction | None = None,
        lock_ops: Iterable[NewLock | ReleaseLock] = (),
    ) -> CommitResult:
        """Commit progress under this worker's lease; what the store answered.

        Raises:
            LostLease: another worker owns the run now.
            CancelRun: ``unless_cancelled`` and a cancel was accepted first.
            CheckpointRejected: the database kept refusing this checkpoint.
        """
        # A transactional step's transaction carries only that step's writes: what waits
        # for the next commit keeps waiting, whatever becomes of that transaction.
        publishes: list[tuple[StepRecord, OutboxMessage]] = []
        if via is None and (self.pending_markers or self.publishes):
            markers, self.pending_markers = self.pending_markers, []
            publishes = list(self.publishes)
            rows = [*markers, *(row for row, _ in publishes), *steps]
            messages = [*(m for _, m in publishes), *outbox]
            events = [*events, *self.published((m for _, m in publishes), None)]
        else:  # the common checkpoint: nothing waited for it
            rows, messages, events = list(steps), list(outbox), list(events)
        if change is not None and change.status is RunStatus.SUSPENDED and self.cancel_requested:
            # It knows of the cancel and sleeps on purpose (unwinding waits for a task, a
            # child or a backoff): the store must not wake it at once for that cancel.
            change = msgspec.structs.replace(change, cancel_seen=True)
        failure = None if change is None else self._failure_event(change)
        if failure is not None:
            messages.append(failure)
            events.append(self.event(ev.EventPublished(topic=failure.topic, message_id=failure.id)))
        cp = Checkpoint(
            self.run.run_id,
            self.rt.owner,
            self.run.lease_epoch,
            rows,
            events,
            change,
            list(new_runs),
            list(consumed_signals),
            self.run.parent_run_id,
            messages,
            unless_cancelled and self.pivot is None,
            release_locks=change is not None and change.status.is_terminal and self.has_locks(),
            lock_ops=list(lock_ops),
        )
        if via is not None:  # a transactional step's own transaction: one try, the caller's
            result = await via.write(cp)
            if not result.landed:
                raise LostLease(self.run.run_id)  # rolls the transaction back
            self._landed(cp, change, len(publishes), messages)
            return result
        for attempt in range(1, REJECTED_TRIES + 1):
            try:
                result = await self.rt.committer.commit(cp)
            except Exception as exc:
                transient = isinstance(exc, DatabaseUnavailableError)
                raise StoreInterrupted(self.run.run_id, transient) from exc
            if result.rejected is None:
                break
            if attempt == REJECTED_TRIES:
                raise CheckpointRejected(self.run.run_id, result.rejected)
            await asyncio.sleep(0.05 * attempt)
        if result.cancel_requested:
            self.request_cancel()
            if change is not None and change.status is RunStatus.SUSPENDED:
                self.rt.wake()  # the store left it due at once: claim it back and unwind
        if not result.landed:
            if cp.unless_cancelled and result.cancel_requested:
                raise CancelRun()  # the workflow's publishes stay pending, for the unwinding
            raise LostLease(self.run.run_id)
        self._landed(cp, change, len(publishes), messages)
        return result

    def _landed(
        self,
        cp: Checkpoint,
        change: RunChange | None,
        published: int,
        messages: list[OutboxMessage],
    ) -> None:
        del self.publishes[:published]
        if messages:
            self.rt.outbox_written()
        if cp.release_locks or cp.lock_ops:
            self.rt.wake()  # what waited for this run's locks may be this process's
        if change is not None and change.status.is_settled:
            self.settled = msgspec.structs.replace(
                self.run,
                status=change.status,
                output=change.output,
                error=change.error,
                owner=None,
                cancel_requested=self.cancel_requested,
            )
        for rec in cp.steps:
            self.records[rec.seq] = rec

    def has_locks(self) -> bool:
        """Whether this run has rows in a lock queue (they go when it ends): a key it took
        or waits for and did not release, or a wait refused as a deadlock's victim."""
        if not any(r.kind is StepKind.LOCK for r in self.records.values()):
            return False  # the common case, without sorting
        keys: set[str] = set()
        for rec in sorted(self.records.values(), key=lambda r: r.seq):
            if rec.kind is StepKind.UNLOCK:
                keys.discard(rec.name)  # its release dropped every row of the key
            elif rec.kind is StepKind.LOCK and not (
                rec.status is StepStatus.FAILED and (rec.error or {}).get("type") != "DeadlockError"
            ):
                keys.add(rec.name)  # a timed-out wait left the queue: nothing of it stays
        return bool(keys)

    async def ensure_lease(self) -> None:
        """Before a step or compensation begins: make sure this worker still holds the run.

        Its side effect would happen before any fenced checkpoint could refuse it, so a
        worker that was paused past its lease renews it for this run first, and stops
        (writing nothing) if another worker has taken the run over.

        Raises:
            LostLease: the run is no longer this worker's.
            StoreInterrupted: the database could not say.
        """
        leases = self.rt.leases
        run_id = self.run.run_id
        if leases.fresh(run_id):
            return
        sent_at = leases.now()
        try:
            held = await self.rt.store.heartbeat(self.rt.owner, self.rt.lease_seconds, [run_id])
        except Exception as exc:
            raise StoreInterrupted(run_id, isinstance(exc, DatabaseUnavailableError)) from exc
        if not held:
            raise LostLease(run_id)
        leases.granted([run_id], sent_at)

    # -- the command path ----------------------------------------------------------------

    def check_boundary(self) -> None:
        """Between calls: stop a blocked run, and honour a cancel unless past the pivot."""
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

    def cursor(self) -> Cursor:
        """The calling task's branch cursor; a task new to this run forks one."""
        branch = _branch.get()
        task = asyncio.current_task()
        if branch is None or branch.ctx is not self:
            raise SagalineError("a durable call was made outside its run's workflow")
        if branch.task is not task:
            branch = _Branch(branch.cursor.fork(), task, self)
            _branch.set(branch)
        return branch.cursor

    def begin(self, kind: StepKind, name: str) -> Call:
        """Place a durable call: what the history recorded for it, or a fresh number."""
        self.check_boundary()
        try:
            return self.history.take(self.cursor(), kind, name)
        except NonDeterminismError as exc:
            raise self.block(exc) from None

    def row(
        self,
        call: Call,
        kind: StepKind,
        name: str,
        status: StepStatus,
        *,
        output: bytes | None = None,
        error: dict[str, Any] | None = None,
        started_at: float | None = None,
        pivot: bool = False,
    ) -> StepRecord:
        """The record of a durable call that is not a step (timer, signal, child, patch)."""
        now = self.rt.clock()
        self.done_index += 1
        return StepRecord(
            seq=call.seq,
            name=name,
            kind=kind,
            status=status,
            input=None,
            output=output,
            error=error,
            attempts=0,
            compensable=False,
            pivot=pivot,
            compensates_seq=None,
            done_index=self.done_index,
            started_at=now if started_at is None else started_at,
            finished_at=now,
            branch=call.branch,
        )

    async def finish(self, call: Call, rec: StepRecord, *events: NewEvent, **extra: Any) -> None:
        """Commit a call's outcome, then let replay within this execution see it."""
        await self.checkpoint(steps=[rec], events=events, **extra)
        self.recorded(call, rec)

    def recorded(self, call: Call, rec: StepRecord) -> None:
        """A call's outcome has been committed: replay within this execution sees it."""
        self.history.record(call.branch, call.pos, rec)
        cursor = self.cursor()
        cursor.time = max(cursor.time, rec.finished_at)

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

    # -- parallel branches ---------------------------------------------------------------

    def enter_step(self) -> None:
        self._inflight += 1
        self._idle.clear()

    def leave_step(self) -> None:
        self._inflight -= 1
        if not self._inflight:
            self._idle.set()

    async def drain(self) -> None:
        """Let parallel branches still in a step finish it; start no new ones."""
        self.stopping = True
        while self._inflight:
            await self._idle.wait()
            await asyncio.sleep(0)

    def unconsumed(self) -> StepRecord | None:
        return self.history.unconsumed()
