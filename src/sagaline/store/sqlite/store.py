"""SQLite store: the embedded default, durable (WAL, synchronous=FULL), one file.

The sqlite3 module blocks, so one dedicated thread owns the connection and every call hops
onto it; that also serialises this process's transactions, which SQLite needs anyway.
Several processes may share the file: writers take the lock with BEGIN IMMEDIATE and wait
on it through busy_timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

from sagaline.model import events as ev
from sagaline.model.errors import (
    DatabaseCorruptError,
    DatabaseError,
    DatabaseNotFoundError,
    DatabaseUnavailableError,
    DiskFullError,
)
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
    new_run_record,
)
from sagaline.model.status import ACTIVE, RunStatus, StepStatus
from sagaline.store.protocol import (
    NewTask,
    RunClaim,
    RunQuery,
    StoreTransaction,
    TaskClosing,
    TaskFinish,
    TaskRecord,
    TaskRules,
    TokenRecord,
    newest_first,
)
from sagaline.store.queries import load_queries
from sagaline.store.rows import (
    event_or_undecodable,
    outbox_from_row,
    run_from_row,
    run_or_undecodable,
    step_from_row,
)
from sagaline.store.sqlite import locks, rates, tasks
from sagaline.store.sqlite.batch import outbox_params, write_batch, write_each
from sagaline.store.sqlite.check import check_file
from sagaline.store.sqlite.faults import no_room_for_index, translate
from sagaline.store.sqlite.schema import migrate
from sagaline.store.sqlite.transaction import TransactionConnection
from sagaline.store.statuses import CLAIM_STARTS, PIVOT_STARTED, status_counts, values

T = TypeVar("T")
log = logging.getLogger("sagaline.sqlite")

_Q = load_queries("sagaline.store.sqlite")
# Status sets are bound as JSON arrays, read by json_each: the SQL names none of them.
_ACTIVE = json.dumps(values(ACTIVE))
_CLAIM_STARTS = json.dumps(values(CLAIM_STARTS))
_PIVOT_STARTED = json.dumps(values(PIVOT_STARTED))
_SUSPENDED = RunStatus.SUSPENDED.value
_SEARCH = {
    "status": "search_runs_by_status",
    "workflow": "search_runs_by_workflow",
    "prefix": "search_runs_by_prefix",
    "created": "search_runs",
}


def path_from_url(url: str) -> str:
    """``sqlite:///rel.db`` is relative, ``sqlite:////abs.db`` absolute, ``sqlite://`` memory."""
    if not url.startswith("sqlite://"):
        raise DatabaseError(f"not a SQLite URL: {url!r}; use sqlite:///path/to/file.db")
    rest = url[len("sqlite://") :]
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise DatabaseError(f"bad SQLite URL {url!r}; use sqlite:///path/to/file.db")
    return rest[1:]


def _check_path(path: Path, create: bool) -> None:
    if path.is_dir():
        raise DatabaseError(
            f"{path} is a folder, not a database file; give a file path, e.g. "
            f"sqlite:///{path / 'sagaline.db'}"
        )
    if not create and not path.exists():
        raise DatabaseNotFoundError(
            f"there is no sagaline database at {path} (nothing was created); point --db or "
            f"SAGALINE_DB at an existing one, e.g. sqlite:///sagaline-demo.db after "
            f"`sagaline demo`"
        )


class SqliteStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.path = path_from_url(url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sagaline-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._transactions: TransactionConnection | None = None
        self._write_lock = asyncio.Lock()
        """Writes of this process take turns here rather than in SQLite's busy handler,
        which sleeps in steps of up to 100 ms: a transactional step's own transaction
        and the group commits never wait on each other's file lock."""

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._conn is not None, "store used before open()"
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                fault = translate(exc, self.path)
                if fault is None:
                    raise
                raise fault from exc

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._write_lock:
            return await self._tx_locked(fn)

    async def _tx_locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself on a full disk
                    conn.execute("ROLLBACK")
                raise
            return result

        return await self._call(run)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, create: bool = True) -> None:
        def connect() -> sqlite3.Connection:
            if self.path != ":memory:":
                _check_path(Path(self.path), create)
                if create:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Nobody has the file open (else its shared-memory index would exist) and there
            # is no room to make one: SQLite keeps the index in memory for a connection that
            # holds the file alone. A reading command holds it a moment; a worker waits for
            # it on busy_timeout.
            alone = not create and no_room_for_index(self.path)
            try:
                return self._connect(create, alone)
            except DiskFullError:
                if create or alone:
                    raise
                return self._connect(create, alone=True)

        self._conn = await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    def _connect(self, create: bool, alone: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            if alone:
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            migrate(conn, self.path, create)
        except sqlite3.Error as exc:
            conn.close()
            fault = translate(exc, self.path)
            if fault is None:
                raise
            raise fault from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def check(self) -> list[str]:
        if self.path == ":memory:":
            return []
        _check_path(Path(self.path), create=False)
        return await asyncio.get_running_loop().run_in_executor(self._thread, check_file, self.path)

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        if self._transactions is None:
            self._transactions = TransactionConnection(self.path, self._write_lock)
        return self._transactions.transaction()

    async def aclose(self) -> None:
        transactions, self._transactions = self._transactions, None
        if transactions is not None:
            await transactions.aclose()
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=True)

    # -- runs ------------------------------------------------------------------------------

    async def create_runs(
        self, batch: Sequence[tuple[NewRun, str | None]], lease_seconds: float
    ) -> list[tuple[RunRecord, bool]]:
        def tx(conn: sqlite3.Connection) -> list[tuple[RunRecord, bool]]:
            return [_create_run(conn, run, owner, lease_seconds) for run, owner in batch]

        return await self._tx(tx)

    async def load_run(self, run_id: str) -> RunRecord | None:
        def q(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(_Q["select_run"], {"run_id": run_id}).fetchone()
            return None if row is None else run_from_row(row)

        return await self._call(q)

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        def q(conn: sqlite3.Connection) -> list[StepRecord]:
            return [step_from_row(r) for r in conn.execute(_Q["select_steps"], {"run_id": run_id})]

        return await self._call(q)

    async def load_steps_many(self, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        found: dict[str, list[StepRecord]] = {run_id: [] for run_id in run_ids}

        def q(conn: sqlite3.Connection) -> None:
            params = {"run_ids": json.dumps(list(found))}
            for r in conn.execute(_Q["select_steps_many"], params):
                found[r["run_id"]].append(step_from_row(r))

        if found:
            await self._call(q)
        return found

    async def list_runs(self, status: RunStatus | None = None, limit: int = 100) -> list[RunRecord]:
        def q(conn: sqlite3.Connection) -> list[RunRecord]:
            if status is None:
                rows = conn.execute(_Q["list_runs"], {"limit": limit})
            else:
                rows = conn.execute(
                    _Q["list_runs_by_status"], {"status": status.value, "limit": limit}
                )
            return [run_or_undecodable(r) for r in rows]

        return await self._call(q)

    async def search_runs(self, query: RunQuery, limit: int) -> list[RunRecord]:
        at, run_id = query.keyset()
        low, high = query.prefix_range()
        params: dict[str, Any] = {
            "at": at,
            "id": run_id,
            "limit": limit,
            "workflow": query.workflow,
            "after": query.created_after,
            "low": low,
            "high": high,
        }
        lead = query.leading()

        def q(conn: sqlite3.Connection) -> list[RunRecord]:
            if lead != "status":
                rows = conn.execute(_Q[_SEARCH[lead]], params)
                return [run_or_undecodable(r) for r in rows]
            pages = [
                [
                    run_or_undecodable(r)
                    for r in conn.execute(_Q[_SEARCH[lead]], {**params, "status": s})
                ]
                for s in sorted(set(query.statuses))
            ]
            return newest_first(pages, limit)

        return await self._call(q)

    async def count_runs(self, query: RunQuery) -> dict[RunStatus, int]:
        low, high = query.prefix_range()
        params = {
            "workflow": query.workflow,
            "after": query.created_after,
            "before": query.created_before,
            "low": low,
            "high": high,
        }

        which = "count_runs_fast" if query.counted() else "count_runs"
        if which == "count_runs" and low is not None and high is not None:
            which = "count_runs_by_prefix"

        def q(conn: sqlite3.Connection) -> dict[RunStatus, int]:
            return status_counts((r[0], r[1]) for r in conn.execute(_Q[which], params))

        return await self._call(q)

    async def child_runs(self, run_id: str) -> list[RunRecord]:
        def q(conn: sqlite3.Connection) -> list[RunRecord]:
            return [run_from_row(r) for r in conn.execute(_Q["child_runs"], {"run_id": run_id})]

        return await self._call(q)

    async def queue_depths(
        self, statuses: Collection[RunStatus]
    ) -> dict[str, dict[RunStatus, int]]:
        params = {"statuses": json.dumps(values(statuses))}

        def q(conn: sqlite3.Connection) -> dict[str, dict[RunStatus, int]]:
            depths: dict[str, dict[RunStatus, int]] = {}
            for queue, status, n in conn.execute(_Q["queue_depths"], params):
                depths.setdefault(queue, {}).update(status_counts([(status, n)]))
            return depths

        return await self._call(q)

    async def create_token(self, token: TokenRecord) -> bool:
        params = {
            "name": token.name,
            "digest": token.digest,
            "role": token.role,
            "payloads": int(token.payloads),
            "at": token.created_at,
        }
        return bool(await self._tx(lambda c: c.execute(_Q["insert_token"], params).rowcount))

    async def find_token(self, digest: str) -> TokenRecord | None:
        def q(conn: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute(_Q["find_token"], {"digest": digest}).fetchone()
            return None if row is None else _token(row)

        return await self._call(q)

    async def list_tokens(self) -> list[TokenRecord]:
        def q(conn: sqlite3.Connection) -> list[TokenRecord]:
            return [_token(r) for r in conn.execute(_Q["list_tokens"])]

        return await self._call(q)

    async def revoke_token(self, name: str, at: float) -> bool:
        params = {"name": name, "at": at}
        return bool(await self._tx(lambda c: c.execute(_Q["revoke_token"], params).rowcount))

    async def read_events(self, run_id: str) -> list[EventRecord]:
        def q(conn: sqlite3.Connection) -> list[EventRecord]:
            return [
                event_or_undecodable(r)
                for r in conn.execute(_Q["select_events"], {"run_id": run_id})
            ]

        return await self._call(q)

    # -- leases ----------------------------------------------------------------------------

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
        if not workflows:
            return RunClaim([])
        params: dict[str, Any] = {
            "now": now,
            "owner": owner,
            "lease": lease_seconds,
            "workflows": json.dumps(list(workflows)),
            "limit": limit,
            "queue": queue,
            "run_id": run_id,
            "active": _ACTIVE,
            "claim_starts": _CLAIM_STARTS,
            "running": RunStatus.RUNNING.value,
            "suspended": _SUSPENDED,
        }

        def tx(conn: sqlite3.Connection) -> RunClaim:
            wanted = params["limit"] = min(limit, _free_slots(conn, queue))
            if wanted <= 0:
                return RunClaim([])
            granted = rates.grant(conn, queue, wanted)
            if granted is not None:
                params["limit"] = granted.allowed
                if granted.allowed <= 0:
                    return RunClaim([], granted.retry_after(wanted, 0))
            runs = [run_from_row(r) for r in conn.execute(_Q["claim"], params).fetchall()]
            for run in runs:
                # Stamped by the engine's clock, as the rest of the audit trail is.
                claimed = ev.RunClaimed(owner=owner, epoch=run.lease_epoch)
                _insert_event(conn, run.run_id, NewEvent(claimed, now or run.updated_at))
            if granted is None:
                return RunClaim(runs)
            rates.spend(conn, queue, granted, len(runs))
            return RunClaim(runs, granted.retry_after(wanted, len(runs)))

        return await self._tx(tx)

    async def heartbeat(self, owner: str, lease_seconds: float, run_ids: Sequence[str]) -> int:
        params = {"owner": owner, "lease": lease_seconds, "run_ids": json.dumps(list(run_ids))}

        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute(_Q["heartbeat"], params).rowcount

        return await self._tx(tx)

    async def release(self, owner: str, run_id: str | None = None) -> None:
        await self._tx(lambda conn: conn.execute(_Q["release"], {"owner": owner, "run_id": run_id}))

    async def listen(self, wake: Callable[[], None]) -> None:
        """SQLite has no notifications: workers in other processes poll."""

    async def set_queue_limit(self, queue: str, limit: int | None) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if limit is None:
                conn.execute(_Q["drop_queue_limit"], {"queue": queue})
            else:
                conn.execute(_Q["set_queue_limit"], {"queue": queue, "limit": limit})

        await self._tx(tx)

    async def set_queue_rate(self, queue: str, rate: QueueRate | None) -> None:
        await self._tx(lambda conn: rates.set_rate(conn, queue, rate))

    async def queue_rates(self) -> dict[str, QueueRate]:
        return await self._call(rates.queue_rates)

    async def send_signal(
        self, run_id: str, name: str, payload: bytes, at: float, statuses: Collection[RunStatus]
    ) -> RunStatus | None:
        def tx(conn: sqlite3.Connection) -> RunStatus | None:
            row = conn.execute(_Q["run_status"], {"run_id": run_id}).fetchone()
            if row is None:
                return None
            status = RunStatus(row[0])
            if status not in statuses:
                return status
            key = {"run_id": run_id, "at": at}
            conn.execute(_Q["insert_signal"], {**key, "name": name, "payload": payload})
            conn.execute(_Q["wake_for_signal"], {**key, "suspended": _SUSPENDED})
            _insert_event(conn, run_id, NewEvent(ev.SignalReceived(signal=name), at))
            return status

        return await self._tx(tx)

    async def load_signals(self, run_id: str) -> list[SignalRecord]:
        def q(conn: sqlite3.Connection) -> list[SignalRecord]:
            rows = conn.execute(_Q["select_signals"], {"run_id": run_id})
            return [
                SignalRecord(r["id"], r["run_id"], r["name"], bytes(r["payload"]), r["sent_at"])
                for r in rows
            ]

        return await self._call(q)

    async def load_signals_many(self, run_ids: Sequence[str]) -> dict[str, list[SignalRecord]]:
        found: dict[str, list[SignalRecord]] = {run_id: [] for run_id in run_ids}

        def q(conn: sqlite3.Connection) -> None:
            for r in conn.execute(_Q["select_signals_many"], {"run_ids": json.dumps(list(found))}):
                found[r["run_id"]].append(
                    SignalRecord(r["id"], r["run_id"], r["name"], bytes(r["payload"]), r["sent_at"])
                )

        if found:
            await self._call(q)
        return found

    async def next_wake_at(self, queues: Sequence[str], workflows: Sequence[str]) -> float | None:
        params = {
            "queues": json.dumps(list(queues)),
            "workflows": json.dumps(list(workflows)),
            "suspended": _SUSPENDED,
        }

        def q(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(_Q["next_wake"], params).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._call(q)

    async def queue_limits(self) -> dict[str, int]:
        def q(conn: sqlite3.Connection) -> dict[str, int]:
            return {row[0]: row[1] for row in conn.execute(_Q["queue_limits"])}

        return await self._call(q)

    async def expire_owners(self, owners: Sequence[str]) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            return sum(conn.execute(_Q["expire_owner"], {"owner": o}).rowcount for o in owners)

        return await self._tx(tx)

    async def active_owners(self) -> list[str]:
        def q(conn: sqlite3.Connection) -> list[str]:
            return [row[0] for row in conn.execute(_Q["active_owners"])]

        return await self._call(q)

    # -- progress --------------------------------------------------------------------------

    async def commit(self, batch: Sequence[Checkpoint]) -> list[CommitResult]:
        try:
            try:
                return await self._tx(lambda conn: write_batch(conn, batch))
            except sqlite3.OperationalError:
                raise
            except DatabaseCorruptError as exc:
                log.warning(
                    "a batch of %d checkpoint(s) met a damaged page (%s); writing each in a "
                    "transaction of its own",
                    len(batch),
                    exc,
                )
                return [await self._commit_alone(cp) for cp in batch]
            except (sqlite3.Error, OverflowError) as exc:
                log.warning(
                    "a batch of %d checkpoint(s) was refused (%s); writing them one at a time",
                    len(batch),
                    exc,
                )
                return await self._tx(lambda conn: write_each(conn, batch))
        except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk I/O
            raise DatabaseUnavailableError(f"commit failed: {exc}") from exc

    async def _commit_alone(self, cp: Checkpoint) -> CommitResult:
        """One checkpoint in its own transaction; refused if it meets a damaged page.

        Refused, not raised: the same page refuses it every time, so its run is parked
        with this message after a few tries instead of running its step again each lease.
        Its own transaction, because a transaction that met a damaged page cannot commit
        even after rolling back to a savepoint: the others of the batch land.
        """
        try:
            return (await self._tx(lambda conn: write_each(conn, [cp])))[0]
        except DatabaseCorruptError as exc:
            return CommitResult(cp.run_id, landed=False, rejected=str(exc))

    async def append_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        params = [outbox_params(m) for m in messages]
        await self._tx(lambda conn: conn.executemany(_Q["insert_outbox"], params))

    async def claim_outbox(self, limit: int, lease_seconds: float) -> list[OutboxMessage]:
        now = time.time()  # every process on this file shares the machine's clock
        params = {"now": now, "until": now + lease_seconds, "limit": limit}

        def tx(conn: sqlite3.Connection) -> list[OutboxMessage]:
            rows = conn.execute(_Q["claim_outbox"], params).fetchall()
            return [outbox_from_row(r) for r in sorted(rows, key=lambda r: r["seq"])]

        return await self._tx(tx)

    async def delete_outbox(self, ids: Sequence[str]) -> None:
        await self._tx(
            lambda conn: conn.execute(_Q["delete_outbox"], {"ids": json.dumps(list(ids))})
        )

    async def outbox_size(self) -> int:
        return int(await self._call(lambda c: c.execute(_Q["outbox_size"]).fetchone()[0]))

    async def add_event_wait(self, run_id: str, topic: str, correlation_id: str) -> None:
        key = {"run_id": run_id, "topic": topic, "correlation_id": correlation_id}
        await self._tx(lambda conn: conn.execute(_Q["add_event_wait"], key))

    async def drop_event_wait(self, run_id: str, topic: str, correlation_id: str) -> None:
        key = {"run_id": run_id, "topic": topic, "correlation_id": correlation_id}
        await self._tx(lambda conn: conn.execute(_Q["drop_event_wait"], key))

    async def event_waiters(self, topic: str, correlation_id: str) -> list[str]:
        key = {"topic": topic, "correlation_id": correlation_id}
        rows = await self._call(lambda c: c.execute(_Q["event_waiters"], key).fetchall())
        return [r[0] for r in rows]

    async def event_wait_topics(self) -> list[str]:
        rows = await self._call(lambda c: c.execute(_Q["event_wait_topics"]).fetchall())
        return [r[0] for r in rows]

    # -- locks (sagaline.store.sqlite.locks) -----------------------------------------------

    async def lock_answer(self, run_id: str, seq: int) -> LockAnswer:
        return await self._call(lambda c: locks.answer(c, run_id, seq))

    async def withdraw_lock(
        self, run_id: str, seq: int, owner: str, epoch: int, row: StepRecord, event: NewEvent
    ) -> LockAnswer:
        return await self._tx(lambda c: locks.withdraw(c, run_id, seq, owner, epoch, row, event))

    async def locks(self, key: str) -> LockInfo:
        return await self._call(lambda c: locks.locks_of(c, key))

    async def list_locks(self, prefix: str | None = None, limit: int = 1000) -> list[LockRequest]:
        return await self._call(lambda c: locks.list_locks(c, prefix, limit))

    # -- tasks (sagaline.store.sqlite.tasks) -----------------------------------------------

    async def create_task(
        self, task: NewTask, row: StepRecord, owner: str, epoch: int, event: NewEvent
    ) -> bool:
        return await self._tx(lambda c: tasks.create_task(c, task, row, owner, epoch, event))

    async def claim_tasks(
        self, queue: str, worker: str, limit: int, rules: TaskRules
    ) -> list[TaskRecord]:
        if not await self._call(lambda c: tasks.any_due(c, queue, rules)):
            return []
        return await self._tx(lambda c: tasks.claim_tasks(c, queue, worker, limit, rules))

    async def close_task(self, task_id: str, run_id: str, owner: str, epoch: int) -> TaskClosing:
        return await self._tx(lambda c: tasks.close_task(c, task_id, run_id, owner, epoch))

    async def heartbeat_task(self, task_id: str, token: str) -> tuple[float, bool] | None:
        return await self._tx(lambda c: tasks.heartbeat_task(c, task_id, token))

    async def load_task(self, task_id: str) -> TaskRecord | None:
        def q(conn: sqlite3.Connection) -> TaskRecord | None:
            row = conn.execute(_Q["select_task"], {"id": task_id}).fetchone()
            return None if row is None else tasks.task_from_row(row)

        return await self._call(q)

    async def finish_task(
        self,
        task_id: str,
        token: str,
        finish: TaskFinish,
        rules: TaskRules,
    ) -> bool:
        return await self._tx(lambda c: tasks.finish_task(c, task_id, token, finish, rules))

    async def list_tasks(self, queue: str | None = None) -> list[TaskRecord]:
        return await self._call(lambda c: tasks.list_tasks(c, queue))

    async def operate(self, change: OperatorChange) -> RunRecord | None:
        def tx(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                _Q["operate"],
                {
                    "run_id": change.run_id,
                    "to_status": change.to_status.value if change.to_status else None,
                    "cancel": int(change.request_cancel),
                    "at": change.event.at,
                    "from_statuses": json.dumps([s.value for s in change.from_statuses]),
                    "unless_pivot": int(change.unless_pivot),
                    "suspended": _SUSPENDED,
                    "pivot_started": _PIVOT_STARTED,
                    "succeeded": StepStatus.SUCCEEDED.value,
                },
            ).fetchone()
            if row is None:
                return None
            key = {"run_id": change.run_id}
            if change.delete_step_seq is not None:
                conn.execute(_Q["delete_step"], {**key, "seq": change.delete_step_seq})
                conn.execute(_Q["delete_task"], {**key, "seq": change.delete_step_seq})
            if change.skip_step_seq is not None:
                skip = {**key, "seq": change.skip_step_seq, "skipped": StepStatus.SKIPPED.value}
                conn.execute(_Q["skip_step"], skip)
            _insert_event(conn, change.run_id, change.event)
            if change.to_status is not None and change.to_status.is_terminal:
                locks.release_runs(conn, [change.run_id], change.event.at)
            return run_from_row(row)

        return await self._tx(tx)


def _create_run(
    conn: sqlite3.Connection, run: NewRun, owner: str | None, lease_seconds: float
) -> tuple[RunRecord, bool]:
    if owner is not None and (_free_slots(conn, run.queue) <= 0 or rates.limited(conn, run.queue)):
        owner = None  # the queue is at its limit, or has a rate: wait to be claimed in turn
    status = RunStatus.RUNNING if owner else RunStatus.PENDING
    cur = conn.execute(
        _Q["insert_run"],
        {
            "run_id": run.run_id,
            "workflow": run.workflow,
            "status": status.value,
            "input": run.input,
            "queue": run.queue,
            "owner": owner,
            "lease": lease_seconds,
            "parent_run_id": run.parent_run_id,
            "at": run.at,
            "traceparent": run.traceparent,
        },
    )
    if cur.rowcount != 1:
        return run_from_row(
            conn.execute(_Q["select_run"], {"run_id": run.run_id}).fetchone()
        ), False
    _insert_event(conn, run.run_id, NewEvent(ev.RunStarted(workflow=run.workflow), run.at))
    return new_run_record(run, owner), True


def _free_slots(conn: sqlite3.Connection, queue: str) -> int:
    """How many more runs of ``queue`` may be in flight (one writer at a time: no race)."""
    row = conn.execute(_Q["queue_limit"], {"queue": queue}).fetchone()
    if row is None:
        return 2**31
    busy = conn.execute(_Q["in_flight"], {"queue": queue, "active": _ACTIVE}).fetchone()[0]
    return int(row[0]) - int(busy)


def _insert_event(conn: sqlite3.Connection, run_id: str, event: NewEvent) -> None:
    conn.execute(
        _Q["insert_event"],
        {
            "run_id": run_id,
            "at": event.at,
            "type": event.type,
            "seq": event.seq,
            "data": event.json,
        },
    )


def _token(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        name=row["name"],
        digest=row["digest"],
        role=row["role"],
        payloads=bool(row["payloads"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
