"""A transactional step's transaction on PostgreSQL: the user's SQL and the step's
checkpoint in one commit, on a pool connection of its own (never a group commit's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from sagaline.model.records import Checkpoint, CommitResult
from sagaline.store.postgres.batch import write_checkpoints


class PostgresTransaction:
    """What a ``@step(transactional=True)`` is handed: ``$1`` placeholders, as asyncpg."""

    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._conn.execute(sql, *params)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._conn.fetch(sql, *params)]

    async def write(self, cp: Checkpoint) -> CommitResult:
        """The step's checkpoint, fenced like any other, inside this transaction."""
        return (await write_checkpoints(self._conn, [cp]))[0]


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[PostgresTransaction]:
    async with pool.acquire() as conn, conn.transaction():
        yield PostgresTransaction(conn)
