"""The tracker's tables in a SQLite file, beside a sagaline store or embedded bus or alone.

As with the embedded bus (:mod:`sagaline.store.sqlite.broker`): the tables are all named
``tracker_*``, their version is the row in ``tracker_meta`` (the store's ``user_version``
is never read or written), a new file is marked with the store's ``application_id`` so a
store may share it later, and a file that holds anyone else's tables is refused before
anything is written. One thread owns the connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sagaline.model.choreography import (
    Declaration,
    Envelope,
    Link,
    SagaQuery,
    SagaStatus,
    Subscription,
    Summary,
)
from sagaline.model.errors import DatabaseError, DatabaseUnavailableError, DiskFullError
from sagaline.store.sqlite.faults import has_sqlite_header, no_room_for_index, translate
from sagaline.store.sqlite.schema import APPLICATION_ID
from sagaline.store.sqlite.store import path_from_url
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

_TABLES = (
    "CREATE TABLE tracker_meta (version INTEGER NOT NULL)",
    """CREATE TABLE tracker_events (
        id TEXT PRIMARY KEY,
        correlation_id TEXT NOT NULL,
        type TEXT NOT NULL,
        source TEXT,
        causation_id TEXT,
        time REAL NOT NULL,
        recorded_at REAL NOT NULL
    )""",
    "CREATE INDEX tracker_events_by_saga ON tracker_events (correlation_id)",
    """CREATE TABLE tracker_sagas (
        correlation_id TEXT PRIMARY KEY,
        name TEXT,
        ended TEXT,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        deadline_at REAL,
        events INTEGER NOT NULL
    )""",
    "CREATE INDEX tracker_sagas_by_start ON tracker_sagas (started_at)",
    """CREATE TABLE tracker_links (
        service TEXT NOT NULL,
        cause TEXT NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (service, cause, event)
    ) WITHOUT ROWID""",
    """CREATE TABLE tracker_handlers (
        handler TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        topic TEXT NOT NULL,
        on_failure TEXT
    )""",
    """CREATE TABLE tracker_declarations (
        name TEXT PRIMARY KEY,
        start TEXT NOT NULL,
        completed TEXT NOT NULL,
        compensated TEXT NOT NULL,
        failed TEXT NOT NULL,
        deadline REAL
    )""",
)
"""Version 1 of the tables; a new file gets it, then every upgrade."""
_UPGRADES: dict[int, tuple[str, ...]] = {
    # Pages and counts by status over a million sagas (issue 11): each list query seeks an
    # index in its own order, (started_at, correlation_id), from the page's keyset.
    2: (
        "DROP INDEX tracker_sagas_by_start",
        "CREATE INDEX tracker_sagas_by_start ON tracker_sagas (started_at, correlation_id)",
        """CREATE INDEX tracker_sagas_by_end ON tracker_sagas (ended, started_at, correlation_id)
        WHERE ended IS NOT NULL""",
        # The open sagas with their deadlines: stalled or not is read from the index alone.
        # ``ended`` (always NULL here) only because SQLite counts a partial index covering
        # only if it holds the columns of its own WHERE clause.
        """CREATE INDEX tracker_sagas_open
        ON tracker_sagas (started_at, correlation_id, deadline_at, ended) WHERE ended IS NULL""",
    ),
    # The ended sagas by how they ended, kept by triggers in the transaction that ends,
    # changes or deletes a saga (as ``run_counts`` for runs), so that the counts read a
    # few rows instead of every ended saga; the open ones are still counted (their index).
    3: (
        """CREATE TABLE tracker_saga_counts (
            ended TEXT PRIMARY KEY,
            n INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """INSERT INTO tracker_saga_counts (ended, n)
        SELECT ended, count(*) FROM tracker_sagas WHERE ended IS NOT NULL GROUP BY ended""",
        """CREATE TRIGGER tracker_saga_counts_insert AFTER INSERT ON tracker_sagas
        WHEN NEW.ended IS NOT NULL BEGIN
            INSERT INTO tracker_saga_counts (ended, n) VALUES (NEW.ended, 1)
            ON CONFLICT (ended) DO UPDATE SET n = n + 1;
        END""",
        """CREATE TRIGGER tracker_saga_counts_update AFTER UPDATE OF ended ON tracker_sagas
        WHEN OLD.ended IS NOT NEW.ended BEGIN
            UPDATE tracker_saga_counts SET n = n - 1 WHERE ended = OLD.ended;
            INSERT INTO tracker_saga_counts (ended, n) SELECT NEW.ended, 1
            WHERE NEW.ended IS NOT NULL
            ON CONFLICT (ended) DO UPDATE SET n = n + 1;
        END""",
        """CREATE TRIGGER tracker_saga_counts_delete AFTER DELETE ON tracker_sagas
        WHEN OLD.ended IS NOT NULL BEGIN
            UPDATE tracker_saga_counts SET n = n - 1 WHERE ended = OLD.ended;
        END""",
    ),
}
"""The statements that bring the tables from the version before to each version."""
_Q = {
    "busy_timeout": "PRAGMA busy_timeout = 10000",
    "application_id": "PRAGMA application_id",
    # PRAGMAs take no parameters: the value is the store's own integer constant.
    "mark_file": "PRAGMA application_id = " + str(int(APPLICATION_ID)),
    "wal": "PRAGMA journal_mode = WAL",
    "synchronous": "PRAGMA synchronous = FULL",
    "foreign_tables": r"""
        SELECT count(*) FROM sqlite_master
        WHERE name NOT LIKE 'tracker\_%' ESCAPE '\' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
    """,
    "has_meta": (
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tracker_meta'"
    ),
    "version": "SELECT max(version) FROM tracker_meta",
    "set_version": "INSERT INTO tracker_meta (version) VALUES (:version)",
    "insert_event": """
        INSERT INTO tracker_events
            (id, correlation_id, type, source, causation_id, time, recorded_at)
        VALUES (:id, :correlation_id, :type, :source, :causation_id, :time, :at)
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    """,
    "count_event": """
        INSERT INTO tracker_sagas (correlation_id, started_at, updated_at, events)
        VALUES (:correlation_id, :time, :time, 1)
        ON CONFLICT (correlation_id) DO UPDATE SET
            events = events + 1,
            started_at = min(started_at, excluded.started_at),
            updated_at = max(updated_at, excluded.updated_at)
    """,
    "events": """
        SELECT id, type, correlation_id, source, causation_id, time FROM tracker_events
        WHERE correlation_id IN (SELECT value FROM json_each(:ids))
    """,
    "save_summary": """
        UPDATE tracker_sagas SET name = :name, ended = :ended, started_at = :started_at,
            updated_at = :updated_at, deadline_at = :deadline_at
        WHERE correlation_id = :correlation_id AND events = :events
    """,
    "add_link": """
        INSERT INTO tracker_links (service, cause, event) VALUES (:service, :cause, :event)
        ON CONFLICT DO NOTHING
    """,
    "summary": "SELECT * FROM tracker_sagas WHERE correlation_id = :correlation_id",
    # One query per status filter, each seeking its index from the keyset (:at, :id);
    # STALLED and IN_PROGRESS are the open sagas past their deadline or not (status_at).
    "list_sagas_all": """
        SELECT * FROM tracker_sagas
        WHERE (started_at, correlation_id) < (:at, :id)
        ORDER BY started_at DESC, correlation_id DESC LIMIT :limit
    """,
    "list_sagas_ended": """
        SELECT * FROM tracker_sagas
        WHERE ended = :ended AND (started_at, correlation_id) < (:at, :id)
        ORDER BY started_at DESC, correlation_id DESC LIMIT :limit
    """,
    "list_sagas_stalled": """
        SELECT * FROM tracker_sagas
        WHERE ended IS NULL AND (started_at, correlation_id) < (:at, :id)
          AND deadline_at <= :now
        ORDER BY started_at DESC, correlation_id DESC LIMIT :limit
    """,
    "list_sagas_running": """
        SELECT * FROM tracker_sagas
        WHERE ended IS NULL AND (started_at, correlation_id) < (:at, :id)
          AND (deadline_at IS NULL OR deadline_at > :now)
        ORDER BY started_at DESC, correlation_id DESC LIMIT :limit
    """,
    # status_at in SQL: how it ended (the kept counts), else STALLED from its deadline on,
    # else IN_PROGRESS (no deadline: NULL <= :now is not true), from the open sagas' index.
    "count_sagas": """
        SELECT ended, n FROM tracker_saga_counts
        UNION ALL
        SELECT CASE WHEN deadline_at <= :now THEN :stalled ELSE :in_progress END AS status,
            count(*)
        FROM tracker_sagas WHERE ended IS NULL GROUP BY status
    """,
    "links": "SELECT service, cause, event FROM tracker_links ORDER BY service, cause, event",
    "save_handler": """
        INSERT INTO tracker_handlers (handler, service, topic, on_failure)
        VALUES (:handler, :service, :topic, :on_failure)
        ON CONFLICT (handler) DO UPDATE SET
            service = excluded.service, topic = excluded.topic, on_failure = excluded.on_failure
    """,
    "save_declaration": """
        INSERT INTO tracker_declarations (name, start, completed, compensated, failed, deadline)
        VALUES (:name, :start, :completed, :compensated, :failed, :deadline)
        ON CONFLICT (name) DO UPDATE SET
            start = excluded.start, completed = excluded.completed,
            compensated = excluded.compensated, failed = excluded.failed,
            deadline = excluded.deadline
    """,
    "handlers": "SELECT handler, service, topic, on_failure FROM tracker_handlers ORDER BY handler",
    "declarations": "SELECT * FROM tracker_declarations ORDER BY name",
}


class SqliteTrackerStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.path = path_from_url(url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sagaline-tracker")
        self._conn: sqlite3.Connection | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, create: bool = True) -> None:
        def connect() -> sqlite3.Connection:
            if self.path != ":memory:":
                if not create and not Path(self.path).is_file():  # a reader creates nothing
                    raise DatabaseError(_nothing_at(self.path))
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            try:
                if not create and no_room_for_index(self.path):
                    # As the store does: a full disk leaves no room for the shared-memory
                    # index, which SQLite then keeps in memory for a sole reader.
                    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
                self._migrate(conn, create)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            self._conn = await self._run(connect)
        except sqlite3.Error as exc:
            raise _error(self.path, "cannot open", exc) from exc

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._run(conn.close)
        self._thread.shutdown(wait=True)

    def _migrate(self, conn: sqlite3.Connection, create: bool) -> None:
        conn.execute(_Q["busy_timeout"])
        app_id = conn.execute(_Q["application_id"]).fetchone()[0]
        foreign = conn.execute(_Q["foreign_tables"]).fetchone()[0]
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and foreign):
            raise DatabaseError(
                f"{self.path} is a SQLite database that is not sagaline's (it has other "
                f"tables); give the tracker a file of its own, or a sagaline store's file"
            )
        has_meta = conn.execute(_Q["has_meta"]).fetchone()[0]
        if not has_meta and not create:
            raise DatabaseError(_nothing_at(self.path))
        conn.execute(_Q["synchronous"])
        if not create:  # a reader writes nothing: it works on a full disk, changes no byte
            self._check_version(conn)
            return
        conn.execute(_Q["wal"])
        _transaction(conn, self._create_tables)

    def _check_version(self, conn: sqlite3.Connection) -> None:
        version = conn.execute(_Q["version"]).fetchone()[0] or 0
        if version > VERSION:
            raise DatabaseError(
                f"{self.path} holds tracker tables of version {version}, newer than this "
                f"sagaline's {VERSION}; upgrade sagaline in this process"
            )

    def _create_tables(self, conn: sqlite3.Connection) -> None:
        if conn.execute(_Q["has_meta"]).fetchone()[0]:  # another process may have won
            self._check_version(conn)
            _upgrade(conn, conn.execute(_Q["version"]).fetchone()[0] or 0)
            return
        for statement in _TABLES:
            conn.execute(statement)
        _upgrade(conn, 1)
        if conn.execute(_Q["application_id"]).fetchone()[0] == 0:
            conn.execute(_Q["mark_file"])  # so that a sagaline store may share the file

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def _call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        def run() -> T:
            conn = self._conn
            if conn is None:
                raise DatabaseError("the tracker's store is closed; open() it first")
            return _transaction(conn, fn) if write else fn(conn)

        try:
            return await self._run(run)
        except sqlite3.Error as exc:
            raise _error(self.path, "failed", exc) from exc

    # -- events and sagas ------------------------------------------------------------------

    async def record(self, envelopes: Sequence[Envelope], at: float) -> list[str]:
        def tx(conn: sqlite3.Connection) -> list[str]:
            new = []
            for e in envelopes:
                row = envelope_params(e) | {"at": at}
                if conn.execute(_Q["insert_event"], row).fetchall():
                    conn.execute(_Q["count_event"], row)
                    new.append(e.id)
            return new

        return await self._call(tx, write=True)

    async def events(self, correlation_ids: Sequence[str]) -> dict[str, list[Envelope]]:
        def q(conn: sqlite3.Connection) -> dict[str, list[Envelope]]:
            out: dict[str, list[Envelope]] = {cid: [] for cid in correlation_ids}
            for row in conn.execute(_Q["events"], {"ids": json.dumps(list(correlation_ids))}):
                out[row["correlation_id"]].append(envelope_from_row(row))
            return out

        return await self._call(q)

    async def save_summary(self, summary: Summary, links: Iterable[Link]) -> bool:
        params = summary_params(summary)
        rows = [{"service": k.service, "cause": k.cause, "event": k.event} for k in links]

        def tx(conn: sqlite3.Connection) -> bool:
            conn.executemany(_Q["add_link"], rows)
            return conn.execute(_Q["save_summary"], params).rowcount == 1

        return await self._call(tx, write=True)

    async def summary(self, correlation_id: str) -> Summary | None:
        def q(conn: sqlite3.Connection) -> Summary | None:
            row = conn.execute(_Q["summary"], {"correlation_id": correlation_id}).fetchone()
            return None if row is None else summary_from_row(row)

        return await self._call(q)

    async def list_sagas(
        self, query: SagaQuery, now: float, limit: int, before: Keyset | None = None
    ) -> list[Summary]:
        at, cid = before or NEWEST
        params = {"ended": query.ended, "now": now, "at": at, "id": cid, "limit": limit}

        def q(conn: sqlite3.Connection) -> list[Summary]:
            pages = [
                [summary_from_row(row) for row in conn.execute(_Q[f"list_sagas_{name}"], params)]
                for name in saga_filters(query)
            ]
            return pages[0] if len(pages) == 1 else newest_first(pages, limit)

        return await self._call(q)

    async def count_sagas(self, now: float) -> dict[SagaStatus, int]:
        params = {"now": now, "stalled": STALLED.value, "in_progress": IN_PROGRESS.value}

        def q(conn: sqlite3.Connection) -> dict[SagaStatus, int]:
            return counts_from_rows(conn.execute(_Q["count_sagas"], params))

        return await self._call(q)

    async def links(self) -> list[Link]:
        def q(conn: sqlite3.Connection) -> list[Link]:
            return [Link(r[0], r[1], r[2]) for r in conn.execute(_Q["links"])]

        return await self._call(q)

    # -- what the tracker processes know -----------------------------------------------------

    async def save_knowledge(
        self, declarations: Iterable[Declaration], subscriptions: Iterable[Subscription]
    ) -> None:
        decls = [declaration_params(d) for d in declarations]
        subs = [subscription_params(s) for s in subscriptions]

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany(_Q["save_declaration"], decls)
            conn.executemany(_Q["save_handler"], subs)

        await self._call(tx, write=True)

    async def declarations(self) -> list[Declaration]:
        def q(conn: sqlite3.Connection) -> list[Declaration]:
            return [declaration_from_row(row) for row in conn.execute(_Q["declarations"])]

        return await self._call(q)

    async def subscriptions(self) -> list[Subscription]:
        def q(conn: sqlite3.Connection) -> list[Subscription]:
            return [Subscription(r[0], r[1], r[2], r[3]) for r in conn.execute(_Q["handlers"])]

        return await self._call(q)


def _nothing_at(where: str) -> str:
    return (
        f"no tracker has recorded into {where}; start one with "
        f"`sagaline tracker --bus URL --db URL --import MODULE`, or point --db at its database"
    )


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring tables of ``version`` to :data:`VERSION` (in the caller's transaction)."""
    if version >= VERSION:
        return
    for step in range(version + 1, VERSION + 1):
        for statement in _UPGRADES[step]:
            conn.execute(statement)
    conn.execute(_Q["set_version"], {"version": VERSION})


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _error(path: str, what: str, exc: sqlite3.Error) -> DatabaseError:
    text = str(exc)
    fault = translate(exc, path)
    if isinstance(fault, DiskFullError) or (fault is not None and has_sqlite_header(path)):
        return fault  # a full disk, or a damaged sagaline (or tracker) file
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return DatabaseUnavailableError(f"the tracker's store at {path} is locked ({exc}); retry")
    if "not a database" in text:
        return DatabaseError(f"{path} is not a SQLite database; give the tracker a file of its own")
    return DatabaseError(f"the tracker's store at {path}: {what} ({exc})")
