"""The SQLite file's schema: created, migrated, or refused when foreign or too new."""

from __future__ import annotations

import sqlite3

from sagaline.model.errors import NotASagalineDatabaseError, SchemaTooNewError
from sagaline.store.queries import load_migrations

APPLICATION_ID = 0x5341474C  # "SAGL": marks the file as a sagaline database


def migrate(conn: sqlite3.Connection, where: str) -> None:
    """Bring the file to the current schema; refuse files that are not ours or too new.

    The checks run before anything is written (even the switch to WAL), so a file that is
    refused is left exactly as it was.
    """
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise NotASagalineDatabaseError(
            f"{where} is not a SQLite database ({exc}); point --db / Engine(url) at a "
            f"sagaline database file, or at a new path to create one"
        ) from exc
    if app_id != APPLICATION_ID and tables:
        raise NotASagalineDatabaseError(
            f"{where} is a SQLite database but not a sagaline one (it has other tables); "
            f"use a new file for sagaline"
        )
    migrations = load_migrations("sagaline.store.sqlite")
    known = migrations[-1][0]
    if conn.execute("PRAGMA user_version").fetchone()[0] > known:
        raise SchemaTooNewError(where, conn.execute("PRAGMA user_version").fetchone()[0], known)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
        for number, script in migrations:
            if number > version:
                for statement in _statements(script):
                    conn.execute(statement)
                _set_pragma(conn, "user_version", number)
        _set_pragma(conn, "application_id", APPLICATION_ID)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _set_pragma(conn: sqlite3.Connection, name: str, value: int) -> None:
    """PRAGMAs take no bound parameters: the name comes from an allow-list, the value is
    an integer of our own."""
    if name not in ("user_version", "application_id"):
        raise ValueError(f"unexpected pragma {name!r}")
    statement = "PRAGMA " + name + " = " + str(int(value))
    conn.execute(statement)


def _statements(script: str) -> list[str]:
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out
