"""PostgreSQL store (asyncpg): many worker processes on many hosts share one database.

Claims use ``FOR UPDATE SKIP LOCKED``; leases are judged by the server's clock; every
checkpoint is fenced by the lease's owner and epoch. Idle workers are woken by
LISTEN/NOTIFY. Dropped connections are retried with backoff for the operations that are
safe to repeat; a commit whose outcome is unknown is reported to the engine, which
re-reads the run rather than guess.

asyncpg was chosen over psycopg 3 by measurement (``python -m bench.pg_drivers``): on this
machine the two commit single-row transactions at about the same rate (the server's fsync
dominates), while asyncpg's point reads were 1.2x to 1.6x as fast, and its ``executemany``
pipelines a batch's rows in one round trip, which group commit relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import asyncpg.exceptions as pgx

from sagaline.model import events as ev
from sagaline.model.errors import (
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
from sagaline.model.urls import redact
from sagaline.store.postgres import locks, rates, tasks
from sagaline.store.postgres.batch import insert_outbox, write, write_each
from sagaline.store.postgres.check import check_schema
from sagaline.store.postgres.schema import migrate
from sagaline.store.postgres.transaction import transaction
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
from sagaline.store.statuses import CLAIM_STARTS, PIVOT_STARTED, status_counts, values

T = TypeVar("T")
log = logging.getLogger("sagaline.postgres")
_Q = load_queries("sagaline.store.postgres")
# Status sets are bound as text[] parameters: the SQL names none of them.
_ACTIVE = values(ACTIVE)
_CLAIM_STARTS = values(CLAIM_STARTS)
_PIVOT_STARTED = values(PIVOT_STARTED)
_SUSPENDED = RunStatus.SUSPENDED.value
_SEARCH = {
    "status": "search_runs_by_status",
    "workflow": "search_runs_by_workflow",
    "prefix": "search_runs_by_prefix",
    "created": "search_runs",
}
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.InternalClientError,  # a connection left mid-operation by a dropped backend
)


def parse_url(url: str) -> tuple[str, str | None]:
    """The DSN for asyncpg, and the schema named by ``?schema=`` (default: public)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise DatabaseError(f"not a PostgreSQL URL: {url!r}; use postgresql://user@host:5432/db")
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", None)
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise DatabaseError(
            f"bad schema name {schema!r} in {url!r}; use lower-case letters, digits and _"
        )
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
    return dsn, schema


class PostgresStore:
    def __init__(self, url: str, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self._dsn, self._schema = parse_url(url)
        self._settings = {"application_name": "sagaline"}
        if self._schema:
            self._settings["search_path"] = self._schema
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, create: bool = True) -> None:
        try:
            if self._schema:
                conn = await asyncpg.connect(self._dsn)
                try:
                    if create:
                        await conn.execute(
                            "SELECT set_config('sagaline.schema', $1, false)", self._schema
                        )
                        await conn.execute(_Q["create_schema"])
                    elif not await conn.fetchval(_Q["schema_exists"], self._schema):
                        raise DatabaseNotFoundError(
                            f"there is no schema {self._schema!r} in {redact(self._dsn)} "
                            f"(nothing was created); check ?schema= in --db / SAGALINE_DB"
                        )
                finally:
                    await conn.close()
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=self._settings,
            )
        except TRANSIENT as exc:
            raise DatabaseError(
                f"cannot reach PostgreSQL at {redact(self._dsn)} ({exc}); is the server "
                f"running? (pg_ctlcluster <version> main start)"
            ) from exc
        except pgx.InvalidCatalogNameError as exc:
            raise DatabaseNotFoundError(
                f"PostgreSQL at {redact(self._dsn)} has no such database ({exc}); create it "
                f"(createdb NAME) or fix the URL"
            ) from exc
        except (pgx.InvalidAuthorizationSpecificationError, pgx.InvalidPasswordError) as exc:
            raise DatabaseError(
                f"PostgreSQL at {redact(self._dsn)} refused the login ({exc}); check the user "
                f"and password in the URL, and that the role may log in"
            ) from exc
        with self._full_disk():
            async with self._pool.acquire() as conn, conn.transaction():
                await migrate(conn, self._dsn)

    def _where(self) -> str:
        return redact(self._dsn) + (f" (schema {self._schema})" if self._schema else "")

    @contextlib.contextmanager
    def _full_disk(self) -> Iterator[None]:
        """SQLSTATE 53100 as :class:`DiskFullError`, naming the database.

        PostgreSQL reports a full disk (or tablespace) as an ordinary error, but it passes:
        the statement wrote nothing and succeeds once space is freed, so callers treat it
        as the database being away (retry, do not park) and the operator reads what to free.
        Out of memory and too many connections (53200, 53300) stay as asyncpg raises them.
        """
        try:
            yield
        except pgx.DiskFullError as exc:
            raise DiskFullError(self._where(), str(exc)) from exc

    async def check(self) -> list[str]:
        where = self._where()
        try:
            conn = await asyncpg.connect(self._dsn, server_settings=self._settings)
        except TRANSIENT as exc:
            raise DatabaseError(f"cannot reach PostgreSQL at {where} ({exc})") from exc
        except pgx.InvalidCatalogNameError as exc:
            raise DatabaseNotFoundError(f"PostgreSQL at {where} has no such database") from exc
        try:
            if self._schema and not await conn.fetchval(_Q["schema_exists"], self._schema):
                raise DatabaseNotFoundError(
                    f"there is no schema {self._schema!r} in {redact(self._dsn)}; check "
                    f"?schema= in --db / SAGALINE_DB"
                )
            return await check_schema(conn, where)
        finally:
            await conn.close()

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        return transaction(self._p())

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _p(self) -> asyncpg.Pool:
        assert self._pool is not None, "store used before open()"
        return self._pool

    async def _retry(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run an operation that is safe to repeat, riding out dropped connections."""
        delay = 0.05
        for attempt in range(8):
            try:
                with self._full_disk():  # no point retrying here: space comes back slowly
                    async with self._p().acquire() as conn:
                        return await op(conn)
            except TRANSIENT as exc:
                if attempt == 7:
                    raise
                log.info("PostgreSQL connection lost (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def listen(self, wake: Callable[[], None]) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(wake), name="sagaline-listen")

    async def _listen(self, wake: Callable[[], None]) -> None:
        delay = 0.1
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, server_settings=self._settings)
            except TRANSIENT:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                await conn.add_listener("sagaline_wake", lambda *_: wake())
                wake()  # notifications may have been missed while disconnected
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
                    await conn.execute("SELECT 1")
            except TRANSIENT:
                pass
            finally:
                with contextlib.suppress(BaseException):
                    await conn.close(timeout=1)

    # -- runs ------------------------------------------------------------------------------

    async def create_runs(
        self, batch: Sequence[tuple[NewRun, str | None]], lease_seconds: float
    ) -> list[tuple[RunRecord, bool]]:
        runs = [run for run, _ in batch]
        args = (
            [r.run_id for r in runs],
            [r.workflow for r in runs],
            [r.input for r in runs],
            [r.queue for r in runs],
            [owner for _, owner in batch],
            [r.at for r in runs],
            [r.parent_run_id for r in runs],
            lease_seconds,
            [json.dumps(ev.RunStarted(workflow=r.workflow).fields()) for r in runs],
            RunStatus.PENDING.value,
            RunStatus.RUNNING.value,
            ev.RunStarted.__name__,
            [r.traceparent for r in runs],
        )
        rows = await self._retry(lambda c: c.fetch(_Q["create_runs"], *args))
        created = {row["run_id"]: row["owner"] for row in rows}
        out: list[tuple[RunRecord, bool]] = []
        for run, owner in batch:
            if run.run_id in created:
                who = created.pop(run.run_id)  # a duplicate id in the batch is not new twice
                out.append((new_run_record(run, who), True))
            else:
                existing = await self.load_run(run.run_id)
                assert existing is not None
                # A retry after a lost answer finds the run it created itself.
                mine = owner is not None and existing.owner == owner and existing.lease_epoch == 1
                out.append((existing, mine))
        return out

    async def load_run(self, run_id: str) -> RunRecord | None:
        row = await self._retry(lambda c: c.fetchrow(_Q["select_run"], run_id))
        return None if row is None else run_from_row(row)

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._retry(lambda c: c.fetch(_Q["select_steps"], run_id))
        return [step_from_row(r) for r in rows]

    async def load_steps_many(self, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
        found: dict[str, list[StepRecord]] = {run_id: [] for run_id in run_ids}
        if found:
            ids = list(found)
            for r in await self._retry(lambda c: c.fetch(_Q["select_steps_many"], ids)):
                found[r["run_id"]].append(step_from_row(r))
        return found

    async def list_runs(self, status: RunStatus | None = None, limit: int = 100) -> list[RunRecord]:
        if status is None:
            rows = await self._retry(lambda c: c.fetch(_Q["list_runs"], limit))
        else:
            rows = await self._retry(
                lambda c: c.fetch(_Q["list_runs_by_status"], status.value, limit)
            )
        return [run_or_undecodable(r) for r in rows]

    async def search_runs(self, query: RunQuery, limit: int) -> list[RunRecord]:
        at, run_id = query.keyset()
        low, high = query.prefix_range()
        args = (at, run_id, limit, query.workflow, query.created_after, low, high)
        lead = query.leading()
        sql = _Q[_SEARCH[lead]]
        if lead != "status":
            return [run_or_undecodable(r) for r in await self._retry(lambda c: c.fetch(sql, *args))]

        async def op(conn: asyncpg.Connection) -> list[list[RunRecord]]:
            return [
                [run_or_undecodable(r) for r in await conn.fetch(sql, *args, s.value)]
                for s in sorted(set(query.statuses))
            ]

        return newest_first(await self._retry(op), limit)

    async def count_runs(self, query: RunQuery) -> dict[RunStatus, int]:
        low, high = query.prefix_range()
        if query.counted():
            rows = await self._retry(lambda c: c.fetch(_Q["count_runs_fast"], query.workflow))
        else:
            args = (query.workflow, query.created_after, query.created_before, low, high)
            rows = await self._retry(lambda c: c.fetch(_Q["count_runs"], *args))
        return status_counts((r[0], r[1]) for r in rows)

    async def child_runs(self, run_id: str) -> list[RunRecord]:
        rows = await self._retry(lambda c: c.fetch(_Q["child_runs"], run_id))
        return [run_from_row(r) for r in rows]

    async def queue_depths(
        self, statuses: Collection[RunStatus]
    ) -> dict[str, dict[RunStatus, int]]:
        rows = await self._retry(lambda c: c.fetch(_Q["queue_depths"], values(statuses)))
        depths: dict[str, dict[RunStatus, int]] = {}
        for queue, status, n in rows:
            depths.setdefault(queue, {}).update(status_counts([(status, n)]))
        return depths

    async def create_token(self, token: TokenRecord) -> bool:
        args = (token.name, token.digest, token.role, token.payloads, token.created_at)
        status = await self._retry(lambda c: c.execute(_Q["insert_token"], *args))
        return bool(status.split()[-1] == "1")

    async def find_token(self, digest: str) -> TokenRecord | None:
        row = await self._retry(lambda c: c.fetchrow(_Q["find_token"], digest))
        return None if row is None else _token(row)

    async def list_tokens(self) -> list[TokenRecord]:
        return [_token(r) for r in await self._retry(lambda c: c.fetch(_Q["list_tokens"]))]

    async def revoke_token(self, name: str, at: float) -> bool:
        status = await self._retry(lambda c: c.execute(_Q["revoke_token"], name, at))
        return bool(status.split()[-1] == "1")

    async def read_events(self, run_id: str) -> list[EventRecord]:
        rows = await self._retry(lambda c: c.fetch(_Q["select_events"], run_id))
        return [event_or_undecodable(r) for r in rows]

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

        async def op(conn: asyncpg.Connection) -> RunClaim:
            async with conn.transaction():
                wanted = n = min(limit, await _free_slots(conn, queue))
                if n <= 0:
                    return RunClaim([])
                granted = await rates.grant(conn, queue, n)  # after the queue's lock
                if granted is not None:
                    n = granted.allowed
                    if n <= 0:
                        return RunClaim([], granted.retry_after(wanted, 0))
                rows = await conn.fetch(
                    _Q["claim"],
                    owner,
                    lease_seconds,
                    list(workflows),
                    n,
                    queue,
                    run_id,
                    now,
                    _ACTIVE,
                    _CLAIM_STARTS,
                    RunStatus.RUNNING.value,
                    _SUSPENDED,
                )
                runs = [run_from_row(r) for r in rows]
                await conn.executemany(
                    _Q["insert_event"],
                    [
                        (
                            r.run_id,
                            now or r.updated_at,  # the engine's clock, as the rest of the trail
                            ev.RunClaimed.__name__,
                            None,
                            json.dumps(ev.RunClaimed(owner=owner, epoch=r.lease_epoch).fields()),
                        )
                        for r in runs
                    ],
                )
                if granted is None:
                    return RunClaim(runs)
                await rates.spend(conn, queue, granted, len(runs))
                return RunClaim(runs, granted.retry_after(wanted, len(runs)))

        return await self._retry(op)

    async def heartbeat(self, owner: str, lease_seconds: float, run_ids: Sequence[str]) -> int:
        status = await self._retry(
            lambda c: c.execute(_Q["heartbeat"], owner, lease_seconds, list(run_ids))
        )
        return int(status.split()[-1])

    async def release(self, owner: str, run_id: str | None = None) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(_Q["release"], owner, run_id)
                await conn.execute(_Q["notify"], "")

        await self._retry(op)

    async def expire_owners(self, owners: Sequence[str]) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            total = 0
            for owner in owners:
                total += int((await conn.execute(_Q["expire_owner"], owner)).split()[-1])
            return total

        return await self._retry(op)

    async def active_owners(self) -> list[str]:
        rows = await self._retry(lambda c: c.fetch(_Q["active_owners"]))
        return [r[0] for r in rows]

    async def set_queue_limit(self, queue: str, limit: int | None) -> None:
        if limit is None:
            await self._retry(lambda c: c.execute(_Q["drop_queue_limit"], queue))
        else:
            await self._retry(lambda c: c.execute(_Q["set_queue_limit"], queue, limit))

    async def set_queue_rate(self, queue: str, rate: QueueRate | None) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await rates.set_rate(conn, queue, rate)

        await self._retry(op)

    async def queue_rates(self) -> dict[str, QueueRate]:
        return await self._retry(rates.queue_rates)

    async def send_signal(
        self, run_id: str, name: str, payload: bytes, at: float, statuses: Collection[RunStatus]
    ) -> RunStatus | None:
        with self._full_disk():
            return await self._send_signal(run_id, name, payload, at, statuses)

    async def _send_signal(
        self, run_id: str, name: str, payload: bytes, at: float, statuses: Collection[RunStatus]
    ) -> RunStatus | None:
        async with self._p().acquire() as conn, conn.transaction():
            # The row lock orders this against the run's own commits: it cannot end or
            # suspend between the check and the signal.
            found = await conn.fetchval(_Q["lock_run"], run_id)
            if found is None or RunStatus(found) not in statuses:
                return None if found is None else RunStatus(found)
            await conn.execute(_Q["insert_signal"], run_id, name, payload, at)
            await conn.execute(_Q["wake_for_signal"], run_id, at, _SUSPENDED)
            received = ev.SignalReceived(signal=name)
            data = json.dumps(received.fields())
            await conn.execute(_Q["insert_event"], run_id, at, received.type, None, data)
            await conn.execute(_Q["notify"], "")
            return RunStatus(found)

    # -- tasks (sagaline.store.postgres.tasks) ---------------------------------------------

    async def _task_tx(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        with self._full_disk():
            async with self._p().acquire() as conn, conn.transaction():
                return await op(conn)

    async def lock_answer(self, run_id: str, seq: int) -> LockAnswer:
        async with self._p().acquire() as conn:
            return await locks.answer(conn, run_id, seq)

    async def withdraw_lock(
        self, run_id: str, seq: int, owner: str, epoch: int, row: StepRecord, event: NewEvent
    ) -> LockAnswer:
        return await self._task_tx(
            lambda c: locks.withdraw(c, run_id, seq, owner, epoch, row, event)
        )

    async def locks(self, key: str) -> LockInfo:
        async with self._p().acquire() as conn:
            return await locks.locks_of(conn, key)

    async def list_locks(self, prefix: str | None = None, limit: int = 1000) -> list[LockRequest]:
        async with self._p().acquire() as conn:
            return await locks.list_locks(conn, prefix, limit)

    async def create_task(
        self, task: NewTask, row: StepRecord, owner: str, epoch: int, event: NewEvent
    ) -> bool:
        return await self._task_tx(lambda c: tasks.create_task(c, task, row, owner, epoch, event))

    async def claim_tasks(
        self, queue: str, worker: str, limit: int, rules: TaskRules
    ) -> list[TaskRecord]:
        return await self._task_tx(lambda c: tasks.claim_tasks(c, queue, worker, limit, rules))

    async def close_task(self, task_id: str, run_id: str, owner: str, epoch: int) -> TaskClosing:
        return await self._task_tx(lambda c: tasks.close_task(c, task_id, run_id, owner, epoch))

    async def heartbeat_task(self, task_id: str, token: str) -> tuple[float, bool] | None:
        return await self._task_tx(lambda c: tasks.heartbeat_task(c, task_id, token))

    async def load_task(self, task_id: str) -> TaskRecord | None:
        row = await self._retry(lambda c: c.fetchrow(_Q["select_task"], task_id))
        return None if row is None else tasks.task_from_row(row)

    async def finish_task(
        self,
        task_id: str,
        token: str,
        finish: TaskFinish,
        rules: TaskRules,
    ) -> bool:
        return await self._task_tx(lambda c: tasks.finish_task(c, task_id, token, finish, rules))

    async def list_tasks(self, queue: str | None = None) -> list[TaskRecord]:
        return await self._retry(lambda c: tasks.list_tasks(c, queue))

    async def load_signals(self, run_id: str) -> list[SignalRecord]:
        rows = await self._retry(lambda c: c.fetch(_Q["select_signals"], run_id))
        return [
            SignalRecord(r["id"], r["run_id"], r["name"], bytes(r["payload"]), r["sent_at"])
            for r in rows
        ]

    async def load_signals_many(self, run_ids: Sequence[str]) -> dict[str, list[SignalRecord]]:
        found: dict[str, list[SignalRecord]] = {run_id: [] for run_id in run_ids}
        if found:
            ids = list(found)
            for r in await self._retry(lambda c: c.fetch(_Q["select_signals_many"], ids)):
                found[r["run_id"]].append(
                    SignalRecord(r["id"], r["run_id"], r["name"], bytes(r["payload"]), r["sent_at"])
                )
        return found

    async def next_wake_at(self, queues: Sequence[str], workflows: Sequence[str]) -> float | None:
        value = await self._retry(
            lambda c: c.fetchval(_Q["next_wake"], list(queues), list(workflows), _SUSPENDED)
        )
        return None if value is None else float(value)

    async def queue_limits(self) -> dict[str, int]:
        rows = await self._retry(lambda c: c.fetch(_Q["queue_limits"]))
        return {r[0]: r[1] for r in rows}

    # -- progress --------------------------------------------------------------------------

    async def commit(self, batch: Sequence[Checkpoint]) -> list[CommitResult]:
        """One statement, or one transaction of a few, for the whole batch, however large;
        written again one checkpoint at a time only if the database refuses one of them.

        Raises:
            DatabaseUnavailableError: the connection failed; whether it landed is unknown.
            DiskFullError: the database's disk is full; nothing was written.
        """
        try:
            with self._full_disk():
                return await self._commit(batch)
        except TRANSIENT as exc:
            raise DatabaseUnavailableError(f"commit interrupted: {exc!r}") from exc

    async def _commit(self, batch: Sequence[Checkpoint]) -> list[CommitResult]:
        async with self._p().acquire() as conn:
            try:
                return await write(conn, batch)
            except asyncpg.PostgresError as exc:
                # A full disk refuses every checkpoint alike: none of them is at fault.
                if isinstance(exc, (*TRANSIENT, pgx.DiskFullError)):
                    raise
                log.warning(
                    "a batch of %d checkpoint(s) was refused (%s); writing them one at a time",
                    len(batch),
                    exc,
                )
                return await write_each(conn, batch)

    async def append_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        await self._retry(lambda conn: insert_outbox(conn, messages))

    async def claim_outbox(self, limit: int, lease_seconds: float) -> list[OutboxMessage]:
        rows = await self._retry(lambda c: c.fetch(_Q["claim_outbox"], limit, lease_seconds))
        return [outbox_from_row(r) for r in sorted(rows, key=lambda r: r["seq"])]

    async def delete_outbox(self, ids: Sequence[str]) -> None:
        await self._retry(lambda conn: conn.execute(_Q["delete_outbox"], list(ids)))

    async def outbox_size(self) -> int:
        return int(await self._retry(lambda conn: conn.fetchval(_Q["outbox_size"])))

    async def add_event_wait(self, run_id: str, topic: str, correlation_id: str) -> None:
        await self._retry(lambda c: c.execute(_Q["add_event_wait"], topic, correlation_id, run_id))

    async def drop_event_wait(self, run_id: str, topic: str, correlation_id: str) -> None:
        await self._retry(lambda c: c.execute(_Q["drop_event_wait"], topic, correlation_id, run_id))

    async def event_waiters(self, topic: str, correlation_id: str) -> list[str]:
        rows = await self._retry(lambda c: c.fetch(_Q["event_waiters"], topic, correlation_id))
        return [r["run_id"] for r in rows]

    async def event_wait_topics(self) -> list[str]:
        rows = await self._retry(lambda c: c.fetch(_Q["event_wait_topics"]))
        return [r["topic"] for r in rows]

    async def operate(self, change: OperatorChange) -> RunRecord | None:
        with self._full_disk():
            return await self._operate(change)

    async def _operate(self, change: OperatorChange) -> RunRecord | None:
        ev = change.event
        ends = change.to_status is not None and change.to_status.is_terminal
        async with self._p().acquire() as conn, conn.transaction():
            if ends:  # the queues' advisory locks before the run's row, as everywhere
                await locks.take(conn, await locks.keys_of(conn, [change.run_id]))
            if change.unless_pivot:
                # Lock the run first, so that the check of its steps below (a statement of
                # its own, so a snapshot of its own) sees every commit that got the lock
                # before: a pivot that started meanwhile is seen, never missed.
                await conn.fetchval(_Q["lock_run"], change.run_id)
            row = await conn.fetchrow(
                _Q["operate"],
                change.run_id,
                change.to_status.value if change.to_status else None,
                change.request_cancel,
                ev.at,
                [s.value for s in change.from_statuses],
                change.unless_pivot,
                _SUSPENDED,
                _PIVOT_STARTED,
                StepStatus.SUCCEEDED.value,
            )
            if row is None:
                return None
            if change.delete_step_seq is not None:
                await conn.execute(_Q["delete_step"], change.run_id, change.delete_step_seq)
                await conn.execute(_Q["delete_task"], change.run_id, change.delete_step_seq)
            if change.skip_step_seq is not None:
                await conn.execute(
                    _Q["skip_step"], change.run_id, change.skip_step_seq, StepStatus.SKIPPED.value
                )
            await conn.execute(_Q["insert_event"], change.run_id, ev.at, ev.type, ev.seq, ev.json)
            if ends:
                await locks.release_runs(conn, [change.run_id], ev.at)
            await conn.execute(_Q["notify"], row["queue"])
            return run_from_row(row)


async def _free_slots(conn: asyncpg.Connection, queue: str) -> int:
    """How many more runs of ``queue`` may be in flight; holds the queue's lock if limited."""
    limit = await conn.fetchval(_Q["queue_limit"], queue)
    if limit is None:
        return 2**31
    await conn.execute(_Q["lock_queue"], queue)  # serialise claims of a limited queue
    return int(limit) - int(await conn.fetchval(_Q["in_flight"], queue, _ACTIVE))


def _token(row: asyncpg.Record) -> TokenRecord:
    return TokenRecord(
        name=row["name"],
        digest=row["digest"],
        role=row["role"],
        payloads=bool(row["payloads"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
