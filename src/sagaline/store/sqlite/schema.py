"""The SQLite file's schema: created, migrated, or refused when foreign or too new."""

from __future__ import annotations

import sqlite3

from sagaline.model.errors import (
    DatabaseNotFoundError,
    DatabaseUnavailableError,
    NotASagalineDatabaseError,
    SchemaTooNewError,
)
from sagaline.store.queries import load_migrations
from sagaline.store.sqlite.faults import not_sqlite, translate

APPLICATION_ID = 0x5341474C  # "SAGL": marks the file as a sagaline database


def migrate(conn: sqlite3.Connection, where: str, create: bool = True) -> None:
    """Bring the file to the current schema; refuse files that are not ours or too new.

    The checks run before anything is written (even the switch to WAL), so a file that is
    refused is left exactly as it was; and a file already at the current schema is not
    written at all, so opening one to read works on a full disk and changes no byte.
    ``create=False`` (a reading command) also refuses an empty file rather than make a
    database of it.
    """
    conn.execute("PRAGMA busy_timeout = 10000")
    app_id, tables, version = _read_header(conn, where)
    conn.execute("PRAGMA synchronous = FULL")  # a setting of this connection: no write
    if app_id != APPLICATION_ID and tables:
        raise NotASagalineDatabaseError(
            f"{where} is a SQLite database but not a sagaline one (it has other tables); "
            f"use a new file for sagaline"
        )
    migrations = load_migrations("sagaline.store.sqlite")
    known = migrations[-1][0]
    if version > known:
        raise SchemaTooNewError(where, version, known)
    if not tables and not create:
        raise DatabaseNotFoundError(
            f"{where} is an empty file, not a sagaline database (nothing was created); "
            f"point --db or SAGALINE_DB at an existing one, or create it with "
            f"`sagaline db migrate --db sqlite:///{where}`"
        )
    if create and conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    if version == known and app_id == APPLICATION_ID:
        return  # up to date: nothing to write
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
        if conn.in_transaction:  # SQLite rolls back by itself on a full disk
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _read_header(conn: sqlite3.Connection, where: str) -> tuple[int, int, int]:
    """The file's application id, how many schema objects it has, and its user version."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        fault = translate(exc, where)
        if fault is None and isinstance(exc, sqlite3.OperationalError):  # locked, say
            fault = DatabaseUnavailableError(f"cannot read {where} ({exc}); try again")
        raise (fault or not_sqlite(where, exc)) from exc
    return int(app_id), int(tables), int(version)


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
