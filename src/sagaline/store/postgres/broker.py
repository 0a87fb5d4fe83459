"""The embedded bus's tables in a PostgreSQL schema: every process on the network shares them.

The schema (``?schema=``, else the default search path) may also hold a sagaline store:
the broker's tables are all named ``bus_*``, its version is the row in ``bus_meta``, and
the schema is created under the same advisory lock as the store's, so the two may open
it at once. Times are the server's (``clock_timestamp()``), since members on several
hosts compare them; a subscriber is told how many seconds to wait, never a time.

Claims take rows with ``FOR UPDATE SKIP LOCKED``, so members of a group never wait for
each other. Publishes and nacks ``NOTIFY`` a channel of the schema's own, with the group
as payload; subscribers ``LISTEN`` on a connection that reconnects by itself, and poll
once a second in case a notification was missed while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import asyncpg

from sagaline.model.errors import BusError, BusUnavailableError, DatabaseError
from sagaline.model.urls import redact
from sagaline.store.postgres.store import TRANSIENT, parse_url
from sagaline.store.queries import load_queries

log = logging.getLogger("sagaline.bus.postgres")

VERSION = 1
"""The version of the broker's tables that this code writes (``bus_meta.version``)."""
POLL_INTERVAL = 1.0
"""Seconds a subscriber waits at most without a notification."""
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
PRUNE_BATCH = 1000
# Two sessions publishing the same ids in another order may deadlock; either may retry.
_RETRYABLE = (*TRANSIENT, asyncpg.exceptions.DeadlockDetectedError)

_CLOCK = "extract(epoch FROM clock_timestamp())::double precision"
_TABLES = """
CREATE TABLE bus_meta (version INTEGER NOT NULL);
CREATE TABLE bus_messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BYTEA NOT NULL,
    published_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX bus_messages_by_time ON bus_messages (published_at);
CREATE TABLE bus_groups (
    topic TEXT NOT NULL,
    group_name TEXT NOT NULL,
    PRIMARY KEY (topic, group_name)
);
CREATE TABLE bus_queue (
    group_name TEXT NOT NULL,
    seq BIGINT NOT NULL,
    visible_at DOUBLE PRECISION NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_name, seq)
);
CREATE INDEX bus_queue_by_visible ON bus_queue (group_name, visible_at);
CREATE INDEX bus_queue_by_seq ON bus_queue (seq);
"""
_Q = {
    "lock_migrations": (
        "SELECT pg_advisory_xact_lock(hashtext('sagaline.bus.migrate.' || current_schema()))"
    ),
    "name_schema": "SELECT set_config('sagaline.schema', $1, false)",
    "has_meta": "SELECT to_regclass('bus_meta') IS NOT NULL",
    "version": "SELECT max(version) FROM bus_meta",
    "set_version": "INSERT INTO bus_meta (version) VALUES ($1)",
    # The queue rows and the notifications go in the same statement, so in the same
    # transaction as the messages: a subscriber woken by one finds the rows.
    "publish": f"""
        WITH incoming AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
                AS t (id, topic, headers, body)
        ), added AS (
            INSERT INTO bus_messages (id, topic, headers, body, published_at)
            SELECT id, topic, headers, body, {_CLOCK} FROM incoming
            ON CONFLICT (id) DO NOTHING
            RETURNING seq, topic
        ), queued AS (
            INSERT INTO bus_queue (group_name, seq, visible_at, deliveries)
            SELECT g.group_name, a.seq, {_CLOCK}, 0
            FROM added AS a JOIN bus_groups AS g ON g.topic = a.topic
            RETURNING group_name
        )
        SELECT group_name, pg_notify($5, group_name)
        FROM (SELECT DISTINCT group_name FROM queued) AS woken
    """,
    "drop_topics": "DELETE FROM bus_groups WHERE group_name = $1 AND topic <> ALL($2::text[])",
    "add_topics": """
        INSERT INTO bus_groups (topic, group_name) SELECT DISTINCT t, $1 FROM unnest($2::text[]) t
        ON CONFLICT DO NOTHING
    """,
    "claim": f"""
        WITH clock AS (SELECT {_CLOCK} AS now), picked AS (
            SELECT q.group_name, q.seq FROM bus_queue AS q
            WHERE q.group_name = $1 AND q.visible_at <= (SELECT now FROM clock)
            ORDER BY q.seq LIMIT $2
            FOR UPDATE OF q SKIP LOCKED
        ), claimed AS (
            UPDATE bus_queue AS q
            SET visible_at = (SELECT now FROM clock) + $3, deliveries = q.deliveries + 1
            FROM picked WHERE q.group_name = picked.group_name AND q.seq = picked.seq
            RETURNING q.seq, q.deliveries
        )
        SELECT c.seq, c.deliveries, m.id, m.topic, m.headers, m.body
        FROM claimed AS c JOIN bus_messages AS m ON m.seq = c.seq
        ORDER BY c.seq
    """,
    "next_visible": f"SELECT min(visible_at) - {_CLOCK} FROM bus_queue WHERE group_name = $1",
    "ack": """
        DELETE FROM bus_queue AS q USING unnest($1::text[], $2::bigint[]) AS a (group_name, seq)
        WHERE q.group_name = a.group_name AND q.seq = a.seq
    """,
    "nack": f"""
        WITH moved AS (
            UPDATE bus_queue AS q SET visible_at = {_CLOCK} + a.delay
            FROM unnest($1::text[], $2::bigint[], $3::int[], $4::float8[])
                AS a (group_name, seq, deliveries, delay)
            WHERE q.group_name = a.group_name AND q.seq = a.seq AND q.deliveries = a.deliveries
            RETURNING q.group_name
        )
        SELECT pg_notify($5, group_name) FROM (SELECT DISTINCT group_name FROM moved) AS woken
    """,
    "prune": f"""
        DELETE FROM bus_messages WHERE seq IN (
            SELECT m.seq FROM bus_messages AS m
            WHERE m.published_at < {_CLOCK} - $1
              AND NOT EXISTS (SELECT 1 FROM bus_queue AS q WHERE q.seq = m.seq)
            LIMIT $2
        )
    """,
    "ping": "SELECT 1",
}


class Claimed(NamedTuple):
    """One claimed delivery: the message and the fence (``deliveries``) for answering it."""

    seq: int
    deliveries: int
    id: str
    topic: str
    headers: str
    body: bytes


Settlement = tuple[str, int, int, float | None]
"""(group, seq, deliveries at the claim, delay): ``None`` acks, a number of seconds nacks."""


class PostgresBroker:
    poll_interval = POLL_INTERVAL

    def __init__(self, url: str) -> None:
        try:
            self._dsn, self._schema = parse_url(url)
        except DatabaseError as exc:  # its message quotes the URL, password and all
            raise BusError(str(exc).replace(url, redact(url))) from exc
        self.where = _describe(self._dsn, self._schema)
        self._settings = {"application_name": "sagaline-bus"}
        if self._schema:
            self._settings["search_path"] = self._schema
        digest = hashlib.sha256((self._schema or "").encode()).hexdigest()[:16]
        self._channel = f"sagaline_bus_{digest}"  # notifications are per database, not schema
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            if self._schema:
                await self._create_schema()
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=4,
                server_settings=self._settings,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
            )
        except (*TRANSIENT, asyncpg.PostgresError) as exc:
            raise self._error("cannot open", exc) from exc
        try:
            async with pool.acquire() as conn, conn.transaction():
                await self._migrate(conn)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, (*TRANSIENT, asyncpg.PostgresError)):
                raise self._error("cannot open", exc) from exc
            raise
        self._pool = pool

    async def _create_schema(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
        try:
            # The store's own statement, so that the two take the same lock.
            await conn.execute(_Q["name_schema"], self._schema)
            await conn.execute(load_queries("sagaline.store.postgres")["create_schema"])
        finally:
            await conn.close()

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        await conn.execute(_Q["lock_migrations"])
        if not await conn.fetchval(_Q["has_meta"]):
            await conn.execute(_TABLES)
            await conn.execute(_Q["set_version"], VERSION)
            return
        version = await conn.fetchval(_Q["version"]) or 0
        if version > VERSION:
            raise BusError(
                f"{self.where} holds embedded-bus tables of version {version}, newer than "
                f"this sagaline's {VERSION}; upgrade sagaline in this process"
            )

    async def aclose(self) -> None:
        await self.unwatch()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise BusError("the embedded bus is closed; open() it first")
        return self._pool

    def _error(self, what: str, exc: BaseException) -> BusError:
        if isinstance(exc, _RETRYABLE):
            return BusUnavailableError(
                f"the embedded bus cannot reach PostgreSQL at {self.where}: {what} "
                f"({type(exc).__name__}: {exc}); is the server running? try again later"
            )
        return BusError(f"the embedded bus at {self.where}: {what} ({type(exc).__name__}: {exc})")

    async def _call(self, what: str, op: Callable[[asyncpg.Connection], Any]) -> Any:
        try:
            async with self._p().acquire(timeout=CONNECT_TIMEOUT) as conn:
                return await op(conn)
        except (*TRANSIENT, asyncpg.PostgresError) as exc:
            raise self._error(what, exc) from exc

    # -- the broker ------------------------------------------------------------------------

    async def publish(self, rows: Sequence[tuple[str, str, str, bytes]]) -> list[str]:
        """Store each new message and queue it for every group of its topic, atomically.

        Returns:
            The groups that got a message (to wake their subscribers in this process).
        """
        columns = [list(column) for column in zip(*rows, strict=True)]
        found = await self._call(
            "publish failed", lambda c: c.fetch(_Q["publish"], *columns, self._channel)
        )
        return sorted(row["group_name"] for row in found)

    async def subscribe(self, group: str, topics: Sequence[str]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(_Q["drop_topics"], group, list(topics))
                await conn.execute(_Q["add_topics"], group, list(topics))

        await self._call("subscribe failed", op)

    async def claim(
        self, group: str, limit: int, ack_wait: float
    ) -> tuple[list[Claimed], float | None]:
        """Up to ``limit`` visible deliveries of ``group``, hidden for ``ack_wait`` seconds.

        Returns:
            The deliveries, and in how many seconds the group's next row becomes visible
            (``None``: it has none).
        """

        async def op(conn: asyncpg.Connection) -> tuple[list[Claimed], float | None]:
            rows = await conn.fetch(_Q["claim"], group, limit, ack_wait)
            claimed = [Claimed(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows]
            next_in = await conn.fetchval(_Q["next_visible"], group)
            return claimed, None if next_in is None else float(next_in)

        result: tuple[list[Claimed], float | None] = await self._call("claim failed", op)
        return result

    async def settle(self, items: Sequence[Settlement]) -> None:
        """Acks and nacks in one transaction; a nack only moves a row still at the claim's
        ``deliveries`` (another member may have claimed it since)."""
        ordered = sorted(items, key=lambda item: (item[0], item[1]))  # one lock order
        acks = [item for item in ordered if item[3] is None]
        nacks = [item for item in ordered if item[3] is not None]

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                if acks:
                    await conn.execute(_Q["ack"], [a[0] for a in acks], [a[1] for a in acks])
                if nacks:
                    columns = [list(column) for column in zip(*nacks, strict=True)]
                    await conn.fetch(_Q["nack"], *columns, self._channel)

        await self._call("ack failed", op)

    async def prune(self, older_than: float) -> int:
        """Delete messages published over ``older_than`` seconds ago that no group still
        has queued, a batch per statement."""
        total = 0
        while True:
            status = await self._call(
                "prune failed", lambda c: c.execute(_Q["prune"], older_than, PRUNE_BATCH)
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < PRUNE_BATCH:
                return total

    # -- wake-ups --------------------------------------------------------------------------

    async def watch(self, wake: Callable[[str | None], None]) -> None:
        """Call ``wake(group)`` for each notification, and ``wake(None)`` on (re)connecting,
        as notifications may have been missed while disconnected."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(wake), name="sagaline-bus-listen")

    async def unwatch(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self, wake: Callable[[str | None], None]) -> None:
        def notified(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            wake(payload or None)

        delay = 0.1
        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings=self._settings, timeout=CONNECT_TIMEOUT
                )
            except (*TRANSIENT, asyncpg.PostgresError) as exc:
                log.info("bus listener cannot connect (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                await conn.add_listener(self._channel, notified)
                wake(None)
                while not conn.is_closed():
                    await asyncio.sleep(POLL_INTERVAL)
                    await conn.execute(_Q["ping"], timeout=CONNECT_TIMEOUT)
            except (*TRANSIENT, asyncpg.PostgresError) as exc:
                log.info("bus listener lost its connection (%s); reconnecting", exc)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)


def _describe(dsn: str, schema: str | None) -> str:
    """Where the bus is, for messages: never the password."""
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    where = f"{user}{parts.hostname or 'localhost'}{port}{parts.path or '/'}"
    return f"{where} (schema {schema})" if schema else where
