"""The tracker's tables in a PostgreSQL schema, beside a sagaline store or embedded bus.

As with the embedded bus (:mod:`sagaline.store.postgres.broker`): the tables are all named
``tracker_*``, their version is the row in ``tracker_meta``, they are created under an
advisory lock of their own, and the schema (``?schema=``) is created with the store's own
statement, so that a store, a bus and a tracker may open it at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg

from sagaline.model.choreography import (
    Declaration,
    Envelope,
    Link,
    SagaQuery,
    SagaStatus,
    Subscription,
    Summary,
)
from sagaline.model.errors import DatabaseError, DatabaseUnavailableError
from sagaline.model.urls import redact
from sagaline.store.postgres.store import TRANSIENT, parse_url
from sagaline.store.queries import load_queries
from sagaline.store.tracker import (
    NEWEST,
    Keyset,
    counts_from_rows,
    declaration_from_row,
    declaration_params,
    envelope_from_row,
    envelope_params,
    newest_first,
    saga_filters,
    subscription_params,
    summary_from_row,
    summary_params,
)

T = TypeVar("T")
STALLED, IN_PROGRESS = SagaStatus.STALLED, SagaStatus.IN_PROGRESS

VERSION = 3
"""The version of the tracker's tables that this code writes (``tracker_meta.version``)."""
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0

_TABLES = """
CREATE TABLE tracker_meta (version INTEGER NOT NULL);
CREATE TABLE tracker_events (
    id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT,
    causation_id TEXT,
    time DOUBLE PRECISION NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX tracker_events_by_saga ON tracker_events (correlation_id);
CREATE TABLE tracker_sagas (
    correlation_id TEXT PRIMARY KEY,
    name TEXT,
    ended TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    deadline_at DOUBLE PRECISION,
    events BIGINT NOT NULL
);
CREATE INDEX tracker_sagas_by_start ON tracker_sagas (started_at);
CREATE TABLE tracker_links (
    service TEXT NOT NULL,
    cause TEXT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (service, cause, event)
);
CREATE TABLE tracker_handlers (
    handler TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    topic TEXT NOT NULL,
    on_failure TEXT
);
CREATE TABLE tracker_declarations (
    name TEXT PRIMARY KEY,
    start TEXT NOT NULL,
    completed TEXT NOT NULL,
    compensated TEXT NOT NULL,
    failed TEXT NOT NULL,
    deadline DOUBLE PRECISION
);
"""
"""Version 1 of the tables; a new schema gets it, then every upgrade."""
_UPGRADES = {
    # Pages and counts by status over a million sagas (issue 11): each list query seeks an
    # index in its own order, (started_at, correlation_id), from the page's keyset. The
    # open sagas are an index apart because PostgreSQL orders by the rest of an index only
    # after an equality, and IS NULL is none; with their deadlines as a key column, so that
    # stalled or not is an index condition, read without visiting the table.
    2: """
        DROP INDEX tracker_sagas_by_start;
        CREATE INDEX tracker_sagas_by_start ON tracker_sagas (started_at, correlation_id);
        CREATE INDEX tracker_sagas_by_end ON tracker_sagas (ended, started_at, correlation_id)
        WHERE ended IS NOT NULL;
        CREATE INDEX tracker_sagas_open
        ON tracker_sagas (started_at, correlation_id, deadline_at) WHERE ended IS NULL;
    """,
    # The ended sagas by how they ended, kept by triggers in the transaction that ends,
    # changes or deletes a saga (as ``run_counts`` for runs), so that the counts read a
    # few rows instead of every ended saga; the open ones are still counted (their index).
    # Each server process adds to its own slot (pid mod 16), in key order, so that two
    # trackers ending sagas at once do not queue on one counter row; a count sums them.
    3: """
        CREATE TABLE tracker_saga_counts (
            ended TEXT NOT NULL,
            slot INTEGER NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (ended, slot)
        );
        INSERT INTO tracker_saga_counts (ended, slot, n)
        SELECT ended, 0, count(*) FROM tracker_sagas WHERE ended IS NOT NULL GROUP BY ended;

        CREATE FUNCTION tracker_count_sagas() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO tracker_saga_counts (ended, slot, n)
                SELECT ended, pg_backend_pid() % 16, count(*) FROM new_rows
                WHERE ended IS NOT NULL GROUP BY ended ORDER BY ended
                ON CONFLICT (ended, slot) DO UPDATE SET n = tracker_saga_counts.n + excluded.n;
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO tracker_saga_counts (ended, slot, n)
                SELECT ended, pg_backend_pid() % 16, -count(*) FROM old_rows
                WHERE ended IS NOT NULL GROUP BY ended ORDER BY ended
                ON CONFLICT (ended, slot) DO UPDATE SET n = tracker_saga_counts.n + excluded.n;
            END IF;
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER tracker_saga_counts_insert AFTER INSERT ON tracker_sagas
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tracker_count_sagas();
        CREATE TRIGGER tracker_saga_counts_delete AFTER DELETE ON tracker_sagas
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tracker_count_sagas();

        -- How a saga ended, row by row: most updates (its event count, its summary while
        -- open) change no ``ended`` and are filtered by the WHEN clause, calling nothing.
        CREATE FUNCTION tracker_count_saga_moved() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO tracker_saga_counts (ended, slot, n)
            SELECT ended, pg_backend_pid() % 16, d
            FROM (VALUES (OLD.ended, -1), (NEW.ended, 1)) AS moved (ended, d)
            WHERE ended IS NOT NULL ORDER BY ended
            ON CONFLICT (ended, slot) DO UPDATE SET n = tracker_saga_counts.n + excluded.n;
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER tracker_saga_counts_update AFTER UPDATE OF ended ON tracker_sagas
        FOR EACH ROW WHEN (OLD.ended IS DISTINCT FROM NEW.ended)
        EXECUTE FUNCTION tracker_count_saga_moved();
    """,
}
"""The statements that bring the tables from the version before to each version."""
_Q = {
    "lock_migrations": (
        "SELECT pg_advisory_xact_lock(hashtext('sagaline.tracker.migrate.' || current_schema()))"
    ),
    "name_schema": "SELECT set_config('sagaline.schema', $1, false)",
    "has_meta": "SELECT to_regclass('tracker_meta') IS NOT NULL",
    "version": "SELECT max(version) FROM tracker_meta",
    "set_version": "INSERT INTO tracker_meta (version) VALUES ($1)",
    # The events and their sagas' counts in one statement: a duplicate id counts nothing.
    "record": """
        WITH incoming AS (
            SELECT * FROM unnest(
                $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[]
            ) AS t (id, correlation_id, type, source, causation_id, time)
        ), added AS (
            INSERT INTO tracker_events
                (id, correlation_id, type, source, causation_id, time, recorded_at)
            SELECT id, correlation_id, type, source, causation_id, time, $7 FROM incoming
            ON CONFLICT (id) DO NOTHING
            RETURNING id, correlation_id, time
        ), counted AS (
            INSERT INTO tracker_sagas (correlation_id, started_at, updated_at, events)
            SELECT correlation_id, min(time), max(time), count(*) FROM added
            GROUP BY correlation_id
            ON CONFLICT (correlation_id) DO UPDATE SET
                events = tracker_sagas.events + excluded.events,
                started_at = least(tracker_sagas.started_at, excluded.started_at),
                updated_at = greatest(tracker_sagas.updated_at, excluded.updated_at)
        )
        SELECT id FROM added
    """,
    "events": """
        SELECT id, type, correlation_id, source, causation_id, time FROM tracker_events
        WHERE correlation_id = ANY($1::text[])
    """,
    "save_summary": """
        UPDATE tracker_sagas SET name = $2, ended = $3, started_at = $4, updated_at = $5,
            deadline_at = $6
        WHERE correlation_id = $1 AND events = $7
    """,
    "add_links": """
        INSERT INTO tracker_links (service, cause, event)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
        ON CONFLICT DO NOTHING
    """,
    "summary": "SELECT * FROM tracker_sagas WHERE correlation_id = $1",
    # One query per status filter, each seeking its index from the keyset ($1 at, $2 id),
    # $3 limit, then $4 how it ended or the time now: STALLED and IN_PROGRESS are the open
    # sagas past their deadline or not (status_at).
    "list_sagas_all": """
        SELECT * FROM tracker_sagas
        WHERE (started_at, correlation_id) < ($1::float8, $2::text)
        ORDER BY started_at DESC, correlation_id DESC LIMIT $3
    """,
    "list_sagas_ended": """
        SELECT * FROM tracker_sagas
        WHERE ended = $4::text AND (started_at, correlation_id) < ($1::float8, $2::text)
        ORDER BY started_at DESC, correlation_id DESC LIMIT $3
    """,
    "list_sagas_stalled": """
        SELECT * FROM tracker_sagas
        WHERE ended IS NULL AND (started_at, correlation_id) < ($1::float8, $2::text)
          AND deadline_at <= $4::float8
        ORDER BY started_at DESC, correlation_id DESC LIMIT $3
    """,
    # Those without a deadline and those before it apart: an OR is no index condition, and
    # PostgreSQL would read every such saga to sort them; this reads two pages at most.
    "list_sagas_running": """
        (SELECT * FROM tracker_sagas
         WHERE ended IS NULL AND (started_at, correlation_id) < ($1::float8, $2::text)
           AND deadline_at IS NULL
         ORDER BY started_at DESC, correlation_id DESC LIMIT $3)
        UNION ALL
        (SELECT * FROM tracker_sagas
         WHERE ended IS NULL AND (started_at, correlation_id) < ($1::float8, $2::text)
           AND deadline_at > $4::float8
         ORDER BY started_at DESC, correlation_id DESC LIMIT $3)
        ORDER BY started_at DESC, correlation_id DESC LIMIT $3
    """,
    # status_at in SQL: how it ended, else STALLED from its deadline on, else IN_PROGRESS
    # (no deadline: NULL <= $1 is not true). $2 STALLED, $3 IN_PROGRESS. How they ended is
    # the kept counts, summed over the slots; the open sagas are read from their index.
    "count_sagas": """
        SELECT ended, sum(n)::bigint FROM tracker_saga_counts GROUP BY ended
        UNION ALL
        SELECT CASE WHEN deadline_at <= $1::float8 THEN $2::text ELSE $3::text END AS status,
            count(*)
        FROM tracker_sagas WHERE ended IS NULL GROUP BY status
    """,
    "links": "SELECT service, cause, event FROM tracker_links ORDER BY service, cause, event",
    "save_handler": """
        INSERT INTO tracker_handlers (handler, service, topic, on_failure)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (handler) DO UPDATE SET
            service = excluded.service, topic = excluded.topic, on_failure = excluded.on_failure
    """,
    "save_declaration": """
        INSERT INTO tracker_declarations (name, start, completed, compensated, failed, deadline)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (name) DO UPDATE SET
            start = excluded.start, completed = excluded.completed,
            compensated = excluded.compensated, failed = excluded.failed,
            deadline = excluded.deadline
    """,
    "handlers": "SELECT handler, service, topic, on_failure FROM tracker_handlers ORDER BY handler",
    "declarations": "SELECT * FROM tracker_declarations ORDER BY name",
}
_EVENT_COLUMNS = ("id", "correlation_id", "type", "source", "causation_id", "time")
_SUMMARY_COLUMNS = (
    "correlation_id",
    "name",
    "ended",
    "started_at",
    "updated_at",
    "deadline_at",
    "events",
)
_DECLARATION_COLUMNS = ("name", "start", "completed", "compensated", "failed", "deadline")
_HANDLER_COLUMNS = ("handler", "service", "topic", "on_failure")


class PostgresTrackerStore:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._dsn, self._schema = parse_url(url)
        except DatabaseError as exc:  # its message quotes the URL, password and all
            raise DatabaseError(str(exc).replace(url, redact(url))) from exc
        self.where = redact(self._dsn) + (f" (schema {self._schema})" if self._schema else "")
        self._settings = {"application_name": "sagaline-tracker"}
        if self._schema:
            self._settings["search_path"] = self._schema
        self._pool: asyncpg.Pool | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, create: bool = True) -> None:
        if self._pool is not None:
            return
        try:
            if self._schema and create:
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
                await self._migrate(conn, create)
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

    async def _migrate(self, conn: asyncpg.Connection, create: bool) -> None:
        if not create:
            if not await conn.fetchval(_Q["has_meta"]):
                raise DatabaseError(
                    f"no tracker has recorded into {self.where}; start one with "
                    f"`sagaline tracker --bus URL --db URL --import MODULE`, or point --db "
                    f"at its database"
                )
        else:
            await conn.execute(_Q["lock_migrations"])
            if not await conn.fetchval(_Q["has_meta"]):
                await conn.execute(_TABLES)
                await _upgrade(conn, 1)
                return
        version = await conn.fetchval(_Q["version"]) or 0
        if version > VERSION:
            raise DatabaseError(
                f"{self.where} holds tracker tables of version {version}, newer than this "
                f"sagaline's {VERSION}; upgrade sagaline in this process"
            )
        if create:  # under the lock: one process upgrades, the others find it done
            await _upgrade(conn, version)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.close()

    def _error(self, what: str, exc: BaseException) -> DatabaseError:
        if isinstance(exc, TRANSIENT):
            return DatabaseUnavailableError(
                f"the tracker cannot reach PostgreSQL at {self.where}: {what} "
                f"({type(exc).__name__}: {exc}); is the server running? try again later"
            )
        return DatabaseError(
            f"the tracker's store at {self.where}: {what} ({type(exc).__name__}: {exc})"
        )

    async def _call(self, what: str, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise DatabaseError("the tracker's store is closed; open() it first")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                return await op(conn)
        except (*TRANSIENT, asyncpg.PostgresError) as exc:
            raise self._error(what, exc) from exc

    # -- events and sagas ------------------------------------------------------------------

    async def record(self, envelopes: Sequence[Envelope], at: float) -> list[str]:
        unique = {e.id: e for e in reversed(envelopes)}  # the first of each id, as SQLite
        # One lock order on the sagas' rows, so that two trackers never deadlock.
        rows = sorted((envelope_params(e) for e in unique.values()), key=_saga_then_id)
        columns = [[row[c] for row in rows] for c in _EVENT_COLUMNS]

        async def op(conn: asyncpg.Connection) -> list[str]:
            return [r["id"] for r in await conn.fetch(_Q["record"], *columns, at)]

        return await self._call("record failed", op)

    async def events(self, correlation_ids: Sequence[str]) -> dict[str, list[Envelope]]:
        async def op(conn: asyncpg.Connection) -> dict[str, list[Envelope]]:
            out: dict[str, list[Envelope]] = {cid: [] for cid in correlation_ids}
            for row in await conn.fetch(_Q["events"], list(correlation_ids)):
                out[row["correlation_id"]].append(envelope_from_row(row))
            return out

        return await self._call("reading events failed", op)

    async def save_summary(self, summary: Summary, links: Iterable[Link]) -> bool:
        params = summary_params(summary)
        found = sorted(links)
        columns = [[k.service for k in found], [k.cause for k in found], [k.event for k in found]]

        async def op(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                if found:
                    await conn.execute(_Q["add_links"], *columns)
                status = await conn.execute(
                    _Q["save_summary"], *(params[c] for c in _SUMMARY_COLUMNS)
                )
            return bool(status.split()[-1] == "1")

        return await self._call("saving a saga failed", op)

    async def summary(self, correlation_id: str) -> Summary | None:
        async def op(conn: asyncpg.Connection) -> Summary | None:
            row = await conn.fetchrow(_Q["summary"], correlation_id)
            return None if row is None else summary_from_row(row)

        return await self._call("reading a saga failed", op)

    async def list_sagas(
        self, query: SagaQuery, now: float, limit: int, before: Keyset | None = None
    ) -> list[Summary]:
        at, cid = before or NEWEST

        async def op(conn: asyncpg.Connection) -> list[Summary]:
            pages = []
            for name in saga_filters(query):
                last = {"all": (), "ended": (query.ended,)}.get(name, (now,))
                rows = await conn.fetch(_Q[f"list_sagas_{name}"], at, cid, limit, *last)
                pages.append([summary_from_row(row) for row in rows])
            return pages[0] if len(pages) == 1 else newest_first(pages, limit)

        return await self._call("listing sagas failed", op)

    async def count_sagas(self, now: float) -> dict[SagaStatus, int]:
        async def op(conn: asyncpg.Connection) -> dict[SagaStatus, int]:
            rows = await conn.fetch(_Q["count_sagas"], now, STALLED.value, IN_PROGRESS.value)
            return counts_from_rows(rows)

        return await self._call("counting sagas failed", op)

    async def links(self) -> list[Link]:
        async def op(conn: asyncpg.Connection) -> list[Link]:
            return [Link(r[0], r[1], r[2]) for r in await conn.fetch(_Q["links"])]

        return await self._call("reading the map failed", op)

    # -- what the tracker processes know -----------------------------------------------------

    async def save_knowledge(
        self, declarations: Iterable[Declaration], subscriptions: Iterable[Subscription]
    ) -> None:
        decls = [_values(declaration_params(d), _DECLARATION_COLUMNS) for d in declarations]
        subs = [_values(subscription_params(s), _HANDLER_COLUMNS) for s in subscriptions]

        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                # By name: one lock order for two trackers saving at once.
                await conn.executemany(_Q["save_declaration"], sorted(decls, key=_first))
                await conn.executemany(_Q["save_handler"], sorted(subs, key=_first))

        await self._call("saving declarations failed", op)

    async def declarations(self) -> list[Declaration]:
        async def op(conn: asyncpg.Connection) -> list[Declaration]:
            return [declaration_from_row(row) for row in await conn.fetch(_Q["declarations"])]

        return await self._call("reading declarations failed", op)

    async def subscriptions(self) -> list[Subscription]:
        async def op(conn: asyncpg.Connection) -> list[Subscription]:
            rows = await conn.fetch(_Q["handlers"])
            return [Subscription(r[0], r[1], r[2], r[3]) for r in rows]

        return await self._call("reading handlers failed", op)


async def _upgrade(conn: asyncpg.Connection, version: int) -> None:
    """Bring tables of ``version`` to :data:`VERSION` (in the caller's transaction)."""
    if version >= VERSION:
        return
    for step in range(version + 1, VERSION + 1):
        await conn.execute(_UPGRADES[step])
    await conn.execute(_Q["set_version"], VERSION)


def _saga_then_id(row: dict[str, Any]) -> tuple[str, str]:
    return (row["correlation_id"], row["id"])


def _first(values: tuple[Any, ...]) -> Any:
    return values[0]


def _values(params: dict[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(params[c] for c in columns)
