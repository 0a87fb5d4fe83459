"""The ``Store`` protocol: the one seam between the engine and a database.

Payloads are opaque bytes here. Every method is atomic (one transaction) unless it says
otherwise. Leases are judged by the database's clock, never the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sagaline.model.locks import LockAnswer, LockInfo, LockRequest
from sagaline.model.rates import QueueRate
from sagaline.model.records import (
    Checkpoint,
    CommitResult,
    EventRecord,
    NewEvent,
    NewRun,
    OperatorChange,
    OutboxMessage,
    RunRecord,
    SignalRecord,
    StepRecord,
)
from sagaline.model.status import RunStatus

_CREATE_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
_DROP_TABLE = re.compile(r"DROP TABLE (?:IF EXISTS )?(\w+)", re.IGNORECASE)


def migrated_tables(scripts: Iterable[str]) -> list[str]:
    """The tables a dialect's migration scripts leave behind, in creation order: what
    ``Store.check`` expects to find."""
    tables: list[str] = []
    for script in scripts:
        tables += [t for t in _CREATE_TABLE.findall(script) if t not in tables]
        dropped = set(_DROP_TABLE.findall(script))
        tables = [t for t in tables if t not in dropped]
    return tables


NEWEST = (1e308, "")
"""A keyset before every run: the first page of a runs list."""


@dataclass(frozen=True)
class RunQuery:
    """Which runs a list shows; every filter is optional. Times are Unix seconds.

    Lists are newest first, by ``(created_at, run_id)`` descending, and pages follow that
    key: ``before`` is the last run of the previous page, and a page holds the runs strictly
    after it in that order, so a page never repeats or skips a run while runs are added.
    """

    statuses: tuple[RunStatus, ...] = ()
    workflow: str | None = None
    created_after: float | None = None
    """Strictly after."""
    created_before: float | None = None
    """Strictly before."""
    prefix: str | None = None
    """Run ids that start with this (compared by code point, case-sensitive)."""
    before: tuple[float, str] | None = None

    def counted(self) -> bool:
        """Whether the stores' running counts answer this query's counts by status (no
        time or id filter: those count by scanning)."""
        return self.created_after is None and self.created_before is None and not self.prefix

    def keyset(self) -> tuple[float, str]:
        """Where the page starts: the cursor, or ``created_before``, whichever is older."""
        start = self.before or NEWEST
        if self.created_before is not None and (self.created_before, "") < start:
            return (self.created_before, "")
        return start

    def prefix_range(self) -> tuple[str | None, str | None]:
        """``prefix`` as a half-open range of ids ``[low, high)``, which an index can seek;
        ``high`` is None when no string is above the range (a prefix of U+10FFFF only)."""
        if not self.prefix:
            return None, None
        high = self.prefix
        while high and ord(high[-1]) == 0x10FFFF:
            high = high[:-1]
        if not high:
            return self.prefix, None
        last = ord(high[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:
            last = 0xE000  # no code point in a valid name lies between
        return self.prefix, high[:-1] + chr(last)

    def leading(self) -> str:
        """The filter whose index a page scans: ``status`` (one query per status),
        ``workflow``, ``prefix`` or ``created`` (none: the time index alone)."""
        if self.statuses:
            return "status"
        if self.workflow is not None:
            return "workflow"
        if self.prefix_range()[1] is not None:
            return "prefix"
        return "created"


def newest_first(pages: Sequence[Sequence[RunRecord]], limit: int) -> list[RunRecord]:
    """One page out of several (one per status), each already newest first."""
    runs = [run for page in pages for run in page]
    runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
    return runs[:limit]


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: its SHA-256 digest (hex), never the token itself."""

    name: str
    digest: str
    role: str
    payloads: bool
    """Whether the token may see payload values (inputs, outputs, signals) or only shapes."""
    created_at: float
    revoked_at: float | None = None


TASK_WAITING, TASK_CLAIMED, TASK_DONE = "waiting", "claimed", "done"
"""A task's states: claimable (once ``available_at`` is past), leased to a worker (claimable
again once ``lease_until`` is past), or finished (its step's row holds the outcome)."""


@dataclass(frozen=True)
class NewTask:
    """A task step the run reached, to be recorded with its WAITING step row."""

    id: str
    run_id: str
    seq: int
    step: str
    queue: str
    lease_seconds: float
    """How long a claim (or heartbeat) leases the task to its worker."""
    at: float
    start_to_close: float | None = None
    """How long one attempt may hold the task from its claim, heartbeats or not."""


@dataclass(frozen=True)
class TaskClosing:
    """What closing a task its run no longer waits for found (``Store.close_task``).

    ``state``: "closed" (it was waiting: no worker has it), "expired" (claimed, but the
    lease ran out: its effect is unknown), "claimed" (a worker holds a live lease:
    ``lease_left`` seconds), "answered" (done: its step row holds the outcome), "missing"
    (no such task), or "lost" (the closing run's lease is lost: nothing was changed).
    """

    state: str
    lease_left: float = 0.0


@dataclass(frozen=True)
class TaskRules:
    """When a task may be claimed and answered, by what its step row is (the engine's rule,
    applied by the store in the claim's and the answer's own statements).

    ``step``: a task step, while its run is in one of these statuses and has not begun
    unwinding (no compensation row yet); claimed only while no cancel is requested (a
    cancelled run in flight still takes the answer, and then compensates the step).
    ``compensation``: a task compensation, while its run is in one of these statuses,
    cancelled or not (a cancel is what unwinds it)."""

    step: frozenset[RunStatus]
    compensation: frozenset[RunStatus]

    def answerable(self, kind: str | None, status: RunStatus, unwinding: bool) -> bool:
        """Whether a run in ``status`` takes the answer to its task on a ``kind`` row."""
        if kind == "compensation":
            return status in self.compensation
        return kind == "step" and status in self.step and not unwinding


@dataclass(frozen=True)
class TaskRecord:
    """A task as stored; ``input`` is its step row's encoded arguments."""

    id: str
    run_id: str
    seq: int
    step: str
    queue: str
    status: str
    attempt: int
    token: str | None
    worker: str | None
    lease_until: float | None
    available_at: float
    created_at: float
    input: bytes | None = None


@dataclass(frozen=True)
class TaskFinish:
    """What a worker's answer changes, planned by the engine and applied by the store only
    if the answering worker still holds the task's lease (its token).

    ``step`` set: the task is done; the step row, ``events`` and the run's wake-up commit
    together. ``step`` None: the attempt failed and is retried: the task becomes claimable
    again ``retry_in`` seconds later (database clock) and ``events`` are written.
    """

    step: StepRecord | None
    events: Sequence[NewEvent]
    retry_in: float = 0.0


@dataclass(frozen=True)
class RunClaim:
    """What a claim of runs took, and when a claim of the same queue should look again."""

    runs: list[RunRecord]
    retry_in: float | None = None
    """Seconds until the queue's rate limit gives the next token, when the rate is what
    cut this claim short; None otherwise (the queue has no rate, or had no more runs)."""


class StoreTransaction(Protocol):
    """An open transaction of the store's database, for a transactional step."""

    dialect: str
    """``"sqlite"`` or ``"postgresql"``: which SQL (and placeholder style) it takes."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def write(self, cp: Checkpoint) -> CommitResult:
        """``cp`` inside this transaction, fenced by its lease like any checkpoint."""


class Store(Protocol):
    url: str

    async def open(self, create: bool = True) -> None:
        """Connect, and create or migrate the schema.

        With ``create=False`` (the commands that only read) nothing new is made: no file,
        no folder, no schema; a database that is not there raises
        :class:`DatabaseNotFoundError` naming where it looked. Opening a database whose
        schema is current writes nothing (so reading works on a full disk).

        Raises:
            NotASagalineDatabaseError: the database holds something else.
            SchemaTooNewError: a newer sagaline wrote it.
            DatabaseCorruptError: the file is damaged (SQLite).
            DiskFullError: the schema had to be written and the disk is full.
        """

    async def check(self) -> list[str]:
        """Look the database over without writing a byte: what is wrong, or nothing.

        For ``sagaline db check``: call it on a store that is not open (a damaged database
        may not open). SQLite runs its integrity check over every page; PostgreSQL, which
        checks its own pages, gets a cheap look instead: the schema version, every table
        present and readable, every index valid.

        Raises:
            DatabaseNotFoundError: there is no database at the URL.
            DatabaseError: the database cannot be reached at all.
        """

    async def create_runs(
        self, batch: Sequence[tuple[NewRun, str | None]], lease_seconds: float
    ) -> list[tuple[RunRecord, bool]]:
        """Insert each run unless its id exists, all in one transaction.

        Returns each run and whether it is new. Idempotent by ``run_id``. A run given an
        owner is born claimed (RUNNING, epoch 1), which saves a separate claim's commit,
        unless its queue is at its limit or has a rate limit; otherwise it is PENDING.
        """

    async def load_run(self, run_id: str) -> RunRecord | None: ...

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        """The run's step and compensation records, by sequence number."""

    async def load_steps_many(self, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        """:meth:`load_steps` of each run, in one query (a page of runs, not one each);
        a run with no steps (or no such run) maps to an empty list."""

    async def claim(
        self,
        owner: str,
        lease_seconds: float,
        workflows: Sequence[str],
        limit: int,
        queue: str = "default",
        run_id: str | None = None,
        now: float = 0.0,
    ) -> RunClaim:
        """Take up to ``limit`` active runs of ``queue`` and the given workflows.

        A run is free when it has no owner or its lease has expired. Each claim bumps the
        run's lease epoch, which fences out every write of the previous owner. A queue's
        concurrency limit holds across all workers: claims never put more of its runs in
        flight than the limit allows; nor does a queue's rate limit let more claims through
        than its bucket holds tokens (``retry_in`` says when the next one comes). SUSPENDED
        runs whose ``wake_at`` is at or before ``now`` (the engine's clock, so a test's
        fake clock can drive timers) are claimed too, and become RUNNING. Each claim's
        ``RunClaimed`` event is stamped ``now``, as the rest of the audit trail follows the
        engine's clock.
        """

    async def heartbeat(self, owner: str, lease_seconds: float, run_ids: Sequence[str]) -> int:
        """Extend ``owner``'s lease on the given runs it still holds; returns how many.

        Naming the runs (rather than all of the owner's) lets a run whose executor died
        expire and be claimed again, even while its worker lives on.
        """

    async def release(self, owner: str, run_id: str | None = None) -> None:
        """Let go of one run (or every run) ``owner`` holds, for another claim at once."""

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever a run becomes claimable elsewhere (best effort).

        Lets idle workers sleep instead of polling; stores without notifications do nothing.
        """

    async def set_queue_limit(self, queue: str, limit: int | None) -> None:
        """At most ``limit`` runs of ``queue`` in flight across all workers (None: no limit)."""

    async def queue_limits(self) -> dict[str, int]: ...

    async def set_queue_rate(self, queue: str, rate: QueueRate | None) -> None:
        """At most ``rate.per_second`` claims a second of ``queue`` (runs and tasks alike),
        ``rate.burst`` at once, across all workers (None: no rate).

        A token bucket in the database, judged by the database's clock: each claim of the
        queue takes at most as many runs (or tasks) as the bucket holds whole tokens, and
        spends one for each it took in the claim's own transaction. Every claim spends one,
        including a run's claim after a suspension or a lost lease (see
        :mod:`sagaline.model.rates`). A queue whose rate is set is never born claimed: its
        runs wait for a claim. Setting a rate again keeps the tokens the bucket holds (up to
        the new burst). Idempotent.
        """

    async def queue_rates(self) -> dict[str, QueueRate]: ...

    async def send_signal(
        self, run_id: str, name: str, payload: bytes, at: float, statuses: Collection[RunStatus]
    ) -> RunStatus | None:
        """Keep a signal for the run if its status is one of ``statuses``, and wake it if
        it sleeps; returns the run's status (``None``: no such run).

        The signal, its ``SignalReceived`` event and the wake-up are written only when the
        status allows, checked in the same transaction: a run that ends meanwhile never
        gets a signal after its end. Serialised with the run's own commits, so a run that
        suspends while a signal arrives is always woken. Not idempotent: each call that is
        accepted keeps one more signal.
        """

    async def load_signals(self, run_id: str) -> list[SignalRecord]:
        """The run's signals not yet consumed, oldest first."""

    async def load_signals_many(self, run_ids: Sequence[str]) -> dict[str, list[SignalRecord]]:
        """:meth:`load_signals` of each run, in one query (what a claim just leased), every
        run mapped, to an empty list if it has none."""

    async def next_wake_at(self, queues: Sequence[str], workflows: Sequence[str]) -> float | None:
        """The earliest timer among suspended runs of these queues and workflows."""

    async def expire_owners(self, owners: Sequence[str]) -> int:
        """End the leases of owners known to be dead; returns the runs freed."""

    async def active_owners(self) -> list[str]:
        """Owners holding an unexpired lease on some run."""

    async def commit(self, batch: Sequence[Checkpoint]) -> list[CommitResult]:
        """Write many runs' checkpoints in one transaction (group commit).

        Each checkpoint lands whole, or not at all when its writer no longer holds the
        lease (owner and epoch); the others are unaffected. Results are in batch order.
        A checkpoint with ``unless_cancelled`` whose run has a cancel accepted writes
        nothing either, and comes back with ``landed=False, cancel_requested=True`` (the
        flag is read by the fence, in the same transaction as the write).
        A run that settles wakes its suspended parent; a run that suspends is due at once
        if a newer signal or an awaited child's end arrived meanwhile.

        A checkpoint the database refuses for a reason of its own data (a constraint, a
        trigger, a value out of range) never fails the rest of its batch: the batch is
        written again one checkpoint at a time (each under its own savepoint, still one
        transaction), the others land, and the refused one comes back with
        ``landed=False`` and ``rejected`` set to the database's message, having written
        nothing. Only that failure path pays for this. A checkpoint that meets a damaged
        page (SQLite) is refused so too (each checkpoint then in a transaction of its own):
        the same page refuses it every time, so its run is parked rather than retried.

        Raises:
            DatabaseUnavailableError: the connection dropped or the database stayed locked;
                whether the batch landed is unknown, so re-read the runs.
            DiskFullError: nothing was written; it will be, once there is space.
        """

    async def operate(self, change: OperatorChange) -> RunRecord | None:
        """Apply an operator's action if the run's status allows; ``None`` if it does not.

        With ``unless_pivot``, also ``None`` if a pivot step of the run is running or done
        (or a pivot child's result is in), checked in the same transaction as the change.
        """

    async def list_runs(self, status: RunStatus | None = None, limit: int = 100) -> list[RunRecord]:
        """Most recent first."""

    async def search_runs(self, query: RunQuery, limit: int) -> list[RunRecord]:
        """Up to ``limit`` runs matching ``query``, newest first (see :class:`RunQuery`).

        Each page is an index scan that stops after ``limit`` rows (status, workflow, or
        creation time; a run-id prefix seeks the primary key), whatever the table's size.
        """

    async def count_runs(self, query: RunQuery) -> dict[RunStatus, int]:
        """How many runs match ``query``'s workflow, time and prefix filters, by status
        (its ``statuses`` and ``before`` are ignored); statuses with none are left out."""

    async def child_runs(self, run_id: str) -> list[RunRecord]:
        """The runs started as children of ``run_id``, oldest first."""

    async def queue_depths(
        self, statuses: Collection[RunStatus]
    ) -> dict[str, dict[RunStatus, int]]:
        """By queue, how many runs are in each of ``statuses`` (zeros left out)."""

    async def create_token(self, token: TokenRecord) -> bool:
        """Keep a new token; ``False`` (nothing written) if a token that is not revoked
        already has its name. A revoked token's name may be used again."""

    async def find_token(self, digest: str) -> TokenRecord | None:
        """The token with this digest, unless it is revoked. Read at every request, so a
        revocation takes effect at once."""

    async def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, by name."""

    async def revoke_token(self, name: str, at: float) -> bool:
        """Revoke the token called ``name``; ``False`` if there is none not yet revoked."""

    async def read_events(self, run_id: str) -> list[EventRecord]:
        """The run's audit trail in causal order: by time, then by insertion.

        Timestamps never decrease along the list, although a step's ``StepStarted`` (stamped
        when the step started) is written with its end, after events newer than it.
        """

    async def append_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        """Put events in the outbox on their own (a publish from outside any run).

        Idempotent by message id: an id already there is kept as it was.
        """

    async def claim_outbox(self, limit: int, lease_seconds: float) -> list[OutboxMessage]:
        """Up to ``limit`` outbox messages, oldest first, leased to the caller for
        ``lease_seconds``: no other relay takes them until then. A relay that dies while
        holding them only delays them by the lease."""

    async def delete_outbox(self, ids: Sequence[str]) -> None:
        """The broker confirmed these: they leave the outbox."""

    async def outbox_size(self) -> int:
        """Messages not yet confirmed by the broker."""

    async def add_event_wait(self, run_id: str, topic: str, correlation_id: str) -> None:
        """The run waits for an event on ``topic`` of this saga (idempotent)."""

    async def drop_event_wait(self, run_id: str, topic: str, correlation_id: str) -> None: ...

    async def event_waiters(self, topic: str, correlation_id: str) -> list[str]:
        """The runs waiting for this event."""

    async def event_wait_topics(self) -> list[str]:
        """Every topic some run waits on: what a restarted engine subscribes to."""

    async def lock_answer(self, run_id: str, seq: int) -> LockAnswer:
        """Where the run's request number ``seq`` stands now (``gone`` if not queued)."""

    async def withdraw_lock(
        self, run_id: str, seq: int, owner: str, epoch: int, row: StepRecord, event: NewEvent
    ) -> LockAnswer:
        """A wait that timed out leaves the queue with its FAILED ``row`` (``gone``), unless
        it was answered first (that answer, nothing written); ``lost`` without the lease."""

    async def locks(self, key: str) -> LockInfo:
        """Who holds ``key`` and who waits for it, in order (empty for a free key)."""

    async def list_locks(self, prefix: str | None = None, limit: int = 1000) -> list[LockRequest]:
        """Lock requests (held and waiting), by key and arrival, of keys starting ``prefix``."""

    async def create_task(
        self, task: NewTask, row: StepRecord, owner: str, epoch: int, event: NewEvent
    ) -> bool:
        """Record a task and its WAITING step ``row`` (with ``event``), fenced by the run's
        lease (``owner``, ``epoch``); ``False`` (nothing written) when the lease is lost.

        Idempotent by task id: a task (or a row at its seq) already there is kept as it was,
        so the run's replay may ask again.
        """

    async def claim_tasks(
        self, queue: str, worker: str, limit: int, rules: TaskRules
    ) -> list[TaskRecord]:
        """Lease up to ``limit`` claimable tasks of ``queue`` to ``worker``, oldest first.

        Claimable: waiting and available, or claimed with an expired lease (its worker is
        presumed dead); and ``rules`` allow it for its run. Each claim
        counts one more attempt and draws a new token, which fences out the previous one.
        """

    async def close_task(self, task_id: str, run_id: str, owner: str, epoch: int) -> TaskClosing:
        """Make a task its unwinding run no longer waits for unclaimable and unanswerable,
        unless a worker holds it (then the run waits for its answer or its lease's end),
        fenced by the run's lease and serialised with the task's answers."""

    async def heartbeat_task(self, task_id: str, token: str) -> tuple[float, bool] | None:
        """Extend the lease ``token`` holds: ``(lease_until, stop)``, or None when the token
        no longer holds the task. ``stop``: the task is a step of a run that was cancelled
        or began unwinding, so its answer is no longer wanted (a compensation never stops:
        it is what the unwinding waits for)."""

    async def load_task(self, task_id: str) -> TaskRecord | None: ...

    async def finish_task(
        self,
        task_id: str,
        token: str,
        finish: TaskFinish,
        rules: TaskRules,
    ) -> bool:
        """Apply ``finish`` if ``token`` still holds the task and ``rules`` let its run take
        the answer; ``False`` (nothing written) otherwise. Serialised with the run's
        own commits, so a run that suspends while its task finishes is always woken."""

    async def list_tasks(self, queue: str | None = None) -> list[TaskRecord]:
        """Tasks not yet done (waiting and claimed), oldest first."""

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        """A transaction of its own (not a group commit's): committed when the block ends,
        rolled back when it raises. The user's SQL of a transactional step and the step's
        checkpoint land together or not at all.

        Raises:
            DatabaseUnavailableError: it could not begin or commit (the database is locked
                or unreachable).
        """

    async def aclose(self) -> None: ...
