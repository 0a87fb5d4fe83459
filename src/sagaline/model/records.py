"""What the store reads and writes: plain records, with payloads as opaque bytes.

msgspec structs rather than dataclasses: a saga builds some thirty of them (step rows,
events, checkpoints, their results), and a frozen dataclass's ``__init__`` sets each
field through ``object.__setattr__``, several times slower than a struct's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from sagaline.model import events
from sagaline.model.events import Event
from sagaline.model.locks import LockAnswer, NewLock, ReleaseLock
from sagaline.model.status import RunStatus, StepKind, StepStatus

_JSON = msgspec.json.Encoder()


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class RunRecord(msgspec.Struct, frozen=True):
    run_id: str
    workflow: str
    status: RunStatus
    input: bytes
    output: bytes | None
    error: dict[str, Any] | None
    queue: str
    owner: str | None
    lease_epoch: int
    cancel_requested: bool
    created_at: float
    updated_at: float
    wake_at: float | None = None
    parent_run_id: str | None = None
    traceparent: str | None = None
    """The W3C trace context the run was started in (its caller's span), so every
    execution of it, on any worker, continues that trace; None: derived from the run id."""

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, UTC)

    @property
    def updated(self) -> datetime:
        return datetime.fromtimestamp(self.updated_at, UTC)


def new_run_record(run: NewRun, owner: str | None) -> RunRecord:
    """The record of a run just inserted: born claimed by ``owner``, or PENDING."""
    return RunRecord(
        run_id=run.run_id,
        workflow=run.workflow,
        status=RunStatus.RUNNING if owner else RunStatus.PENDING,
        input=run.input,
        output=None,
        error=None,
        queue=run.queue,
        owner=owner,
        lease_epoch=1 if owner else 0,
        cancel_requested=False,
        created_at=run.at,
        updated_at=run.at,
        parent_run_id=run.parent_run_id,
        traceparent=run.traceparent,
    )


class StepRecord(msgspec.Struct, frozen=True):
    """One step or compensation of a run, keyed by its sequence number in the run."""

    seq: int
    name: str
    kind: StepKind
    status: StepStatus
    input: bytes | None
    output: bytes | None
    error: dict[str, Any] | None
    attempts: int
    compensable: bool
    pivot: bool
    compensates_seq: int | None
    done_index: int
    started_at: float
    finished_at: float
    branch: str = ""
    """The parallel branch that made the call ("" for the workflow's own line; "2.1" for
    the first task started at the workflow's second call, and so on). Replay finds a call's
    record by (branch, position in the branch), so branches replay whatever their timing."""


class EventRecord(msgspec.Struct, frozen=True):
    id: int
    run_id: str
    at: float
    type: str
    seq: int | None
    data: dict[str, Any]

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    @property
    def event(self) -> Event:
        """The typed event (``events.Unknown`` for a type this version does not know)."""
        return events.decode(self.type, self.data)


class NewRun(msgspec.Struct, frozen=True):
    run_id: str
    workflow: str
    input: bytes
    queue: str
    at: float
    parent_run_id: str | None = None
    traceparent: str | None = None
    """The caller's W3C ``traceparent`` when tracing is on (see ``RunRecord``)."""


class SignalRecord(msgspec.Struct, frozen=True):
    id: int
    run_id: str
    name: str
    payload: bytes
    sent_at: float


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append, as the engine built it."""

    event: Event
    at: float
    seq: int | None = None

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def data(self) -> dict[str, Any]:
        return self.event.fields()

    @property
    def json(self) -> str:
        """The data as the stores keep it: compact JSON text (msgspec; several times
        cheaper than ``json.dumps``, and a saga writes about ten events)."""
        return _JSON.encode(self.event.fields()).decode()


class OutboxMessage(msgspec.Struct, frozen=True):
    """An event waiting in the outbox for the relay to put it on the bus.

    Written in the same transaction as the checkpoint (or the user's SQL) that decided to
    publish it, so a local commit and its event never part; ``id`` is the broker's message
    id, so the relay may publish it again after a crash and the consumers see it once.
    """

    id: str
    topic: str
    body: bytes
    headers: dict[str, str]
    at: float
    run_id: str | None = None


class RunChange(msgspec.Struct, frozen=True):
    """A new status for the run, with its output or error when it ends."""

    status: RunStatus
    output: bytes | None = None
    error: dict[str, Any] | None = None
    release: bool = False
    """Give up the lease: the run is finished, parked or suspended."""
    wake_at: float | None = None
    """SUSPENDED: when a timer is due (None: only a signal or a child wakes it)."""
    seen_signal_id: int = 0
    """SUSPENDED: wake at once if a signal newer than this arrived meanwhile."""
    awaited_runs: tuple[str, ...] = ()
    """SUSPENDED: wake at once if one of these child runs has already settled."""
    cancel_seen: bool = False
    """SUSPENDED: the run knows it was cancelled and sleeps on purpose (it waits for a
    task in flight to be answered); otherwise a cancel already accepted wakes it at once."""


class Checkpoint(msgspec.Struct):
    """One run's progress, written atomically and fenced by the writer's lease.

    Many checkpoints may share one database transaction (group commit); each one lands
    whole or not at all.
    """

    run_id: str
    owner: str
    epoch: int
    steps: list[StepRecord] = msgspec.field(default_factory=list)
    events: list[NewEvent] = msgspec.field(default_factory=list)
    change: RunChange | None = None
    new_runs: list[NewRun] = msgspec.field(default_factory=list)
    """Child runs to create (idempotent by run_id)."""
    consumed_signals: list[tuple[int, int]] = msgspec.field(default_factory=list)
    """(signal id, seq of the wait that consumed it); each signal is consumed once."""
    parent_run_id: str | None = None
    """The run's parent, which a settling run must wake."""
    outbox: list[OutboxMessage] = msgspec.field(default_factory=list)
    """Events to publish once this checkpoint lands (idempotent by message id)."""
    unless_cancelled: bool = False
    """Land only if no cancel was accepted for the run: a completion, or the start of a
    pivot, must lose to a cancel that came first. When refused this way the result has
    ``landed=False`` and ``cancel_requested=True``."""
    release_locks: bool = False
    """The run ends here and has taken semantic locks: they go with this checkpoint, and
    what waited for them is granted."""
    lock_ops: list[NewLock | ReleaseLock] = msgspec.field(default_factory=list)
    """Semantic lock requests and releases, applied in this checkpoint's transaction after
    its step rows; each request's answer comes back in ``CommitResult.locks``."""


class CommitResult(msgspec.Struct, frozen=True):
    run_id: str
    landed: bool
    """False when the writer no longer held the lease: nothing of the checkpoint was written."""
    cancel_requested: bool = False
    rejected: str | None = None
    """The database refused this checkpoint for a reason of its own (its message); nothing
    of it was written, and the other checkpoints of its batch were not affected."""
    locks: tuple[LockAnswer, ...] = ()
    """The answers to the checkpoint's lock requests, in order."""


class OperatorChange(msgspec.Struct, frozen=True):
    """An operator's action on a run, applied only if the run is in one of ``from_statuses``.

    Operator actions are not fenced by a lease: they apply to parked runs (which no worker
    holds), or only raise the cancel flag that the owning worker reads at its next commit.
    """

    run_id: str
    from_statuses: frozenset[RunStatus]
    event: NewEvent
    to_status: RunStatus | None = None
    request_cancel: bool = False
    delete_step_seq: int | None = None
    skip_step_seq: int | None = None
    unless_pivot: bool = False
    """Apply only if no pivot step of the run is running or done (checked in the same
    transaction): a cancel must not be accepted once the saga can only go forward."""
