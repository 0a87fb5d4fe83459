"""A transactional step's transaction on SQLite: the user's SQL and the step's checkpoint
in one commit.

It has a connection (and a thread) of its own, so the group commits of other runs never
interleave with it (and their readers never see it before it commits). It holds the
store's write lock while it is open: the process's commits wait for it there, not in
SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sagaline.model.errors import DatabaseUnavailableError, SagalineError
from sagaline.model.records import Checkpoint, CommitResult
from sagaline.store.sqlite.batch import write_batch
from sagaline.store.sqlite.faults import is_corrupt, translate

T = TypeVar("T")


class SqliteTransaction:
    """What a ``@step(transactional=True)`` is handed: ``?`` placeholders, as sqlite3."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._thread = thread

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self._conn)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._call(lambda conn: conn.execute(sql, tuple(params)))

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows = await self._call(lambda conn: conn.execute(sql, tuple(params)).fetchall())
        return [tuple(row) for row in rows]

    async def write(self, cp: Checkpoint) -> CommitResult:
        """The step's checkpoint, fenced like any other, inside this transaction."""
        return (await self._call(lambda conn: write_batch(conn, [cp])))[0]


class TransactionConnection:
    def __init__(self, path: str, lock: asyncio.Lock) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sagaline-sqlite-tx")
        self._conn: sqlite3.Connection | None = None
        self._lock = lock
        """The store's write lock: held for the whole transaction."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._conn is None:
                self._conn = await loop.run_in_executor(self._thread, self._connect)
            conn = self._conn
            try:
                await loop.run_in_executor(self._thread, conn.execute, "BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._fault(exc, "begin") from exc
            try:
                yield SqliteTransaction(conn, self._thread)
            except BaseException:
                await loop.run_in_executor(self._thread, self._rollback, conn)
                raise
            try:
                await loop.run_in_executor(self._thread, conn.execute, "COMMIT")
            except sqlite3.DatabaseError as exc:
                await loop.run_in_executor(self._thread, self._rollback, conn)
                if not isinstance(exc, sqlite3.OperationalError) and not is_corrupt(exc):
                    raise  # the data's own fault (a deferred constraint): the caller's to see
                raise self._fault(exc, "commit") from exc

    def _fault(self, exc: sqlite3.DatabaseError, doing: str) -> SagalineError:
        """A full disk or a damaged file says so; anything else is worth a retry."""
        return translate(exc, self.path) or DatabaseUnavailableError(
            f"transaction could not {doing}: {exc}"
        )

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # SQLite rolls back by itself on a full disk
            conn.execute("ROLLBACK")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=True)
