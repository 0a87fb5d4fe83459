"""``sagaline db check`` on a SQLite file: SQLite's own integrity check, and ours.

It reads through a read-only connection, so a damaged file is looked at, never written
(nor checkpointed into, nor migrated): the file a person restores from or sends for
diagnosis stays as it was found.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sagaline.model.errors import DatabaseUnavailableError
from sagaline.store.protocol import migrated_tables
from sagaline.store.queries import load_migrations
from sagaline.store.sqlite.faults import has_sqlite_header, is_corrupt, no_room_for_index, translate
from sagaline.store.sqlite.schema import APPLICATION_ID

MAX_PROBLEMS = 100
INTEGRITY_CHECK = "PRAGMA integrity_check(100)"  # PRAGMA arguments take no parameters
"""``integrity_check`` stops after this many: enough to judge, short enough to read."""


def check_file(where: str) -> list[str]:
    """What is wrong with the sagaline database at ``where``; empty when nothing is."""
    if not has_sqlite_header(where):
        return [f"{where} is not a SQLite database (its first bytes are not SQLite's header)"]
    conn = _reader(where)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        return _schema_problems(conn, where) + _page_problems(conn)
    except sqlite3.DatabaseError as exc:
        if is_corrupt(exc):
            return [f"SQLite cannot read {where}: {exc}"]
        # Not the file's fault (a full disk, a lock held too long): no verdict on it.
        fault = translate(exc, where)
        raise (fault or DatabaseUnavailableError(f"cannot check {where}: {exc}")) from exc
    finally:
        conn.close()


def _reader(where: str) -> sqlite3.Connection:
    """A connection that cannot write: read-only, or on a full disk with nobody else on
    the file, one that keeps SQLite's index in memory (a read-only one needs the
    shared-memory file, which there is no room to make) and refuses writes."""
    if no_room_for_index(where):
        conn = sqlite3.connect(where, isolation_level=None)
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("PRAGMA query_only = 1")
        return conn
    uri = f"file:{quote(str(Path(where).resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def _schema_problems(conn: sqlite3.Connection, where: str) -> list[str]:
    problems = []
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID:
        problems.append(f"{where} is not marked as a sagaline database (application_id {app_id})")
    migrations = load_migrations("sagaline.store.sqlite")
    version, known = conn.execute("PRAGMA user_version").fetchone()[0], migrations[-1][0]
    if version < known:
        problems.append(
            f"schema version {version} is older than this sagaline's {known}: "
            f"`sagaline db migrate` brings it up to date"
        )
    elif version > known:
        problems.append(f"schema version {version} is newer than this sagaline's {known}")
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    present = {row[0] for row in rows}
    for table in migrated_tables(script for n, script in migrations if n <= version):
        if table not in present:
            problems.append(f"table {table!r} is missing")
    return problems


def _page_problems(conn: sqlite3.Connection) -> list[str]:
    try:
        rows = conn.execute(INTEGRITY_CHECK).fetchall()
    except sqlite3.DatabaseError as exc:
        # Some damage stops the check itself: say at least which tables cannot be read.
        return [f"SQLite's integrity check stopped: {exc}", *_unreadable_tables(conn)]
    found = [str(row[0]) for row in rows]
    return [] if found == ["ok"] else found


def _unreadable_tables(conn: sqlite3.Connection) -> list[str]:
    """Which of sagaline's own tables (the allow-list: what its migrations create) fail a
    full scan; a name read from the file is never put into SQL."""
    problems = []
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    present = {str(name) for (name,) in rows.fetchall()}
    for name, scan in _SCANS.items():
        if name not in present:
            continue
        try:  # every row of the table's own b-tree (an index could answer a count)
            for _ in conn.execute(scan):
                pass
        except sqlite3.DatabaseError as exc:
            problems.append(f"table {name!r} cannot be read: {exc}")
    return problems


_SCANS = {
    table: 'SELECT * FROM "' + table + '" NOT INDEXED'
    for table in sorted(
        migrated_tables(script for _, script in load_migrations("sagaline.store.sqlite"))
    )
    if table.isidentifier()
}
"""A full-scan statement per table sagaline's migrations create (names from our own SQL)."""
