"""What SQLite's errors mean: a full disk, a damaged file, or neither.

sqlite3 raises ``OperationalError`` for a full disk and a locked file alike, and a bare
``DatabaseError`` for a damaged page as for a file that is no database; only the result
code tells them apart, and each calls for something else: wait for space, restore a
backup, or look elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

from sagaline.model.errors import (
    DatabaseCorruptError,
    DatabaseError,
    DiskFullError,
    NotASagalineDatabaseError,
)

SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_IOERR = 10
SQLITE_NOTADB = 26
HEADER = b"SQLite format 3\0"
"""The first 16 bytes of every SQLite database file."""
_NEARLY_NONE = 64 * 1024
"""Free bytes below which an I/O error is taken for a full disk (a few pages' worth)."""


def primary_code(exc: BaseException) -> int | None:
    """The primary result code (extended codes carry it in their low byte)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_corrupt(exc: BaseException) -> bool:
    """SQLite found a malformed page (or a file that stopped being a database)."""
    return primary_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def translate(exc: sqlite3.Error, where: str) -> DatabaseError | None:
    """The sagaline error ``exc`` means for the file at ``where``, or None (keep it as is).

    An I/O error counts as a full disk when the disk has (next to) no space left: SQLite
    reports ENOSPC on its shared-memory file or on a WAL append as SQLITE_IOERR, not
    SQLITE_FULL.
    """
    code = primary_code(exc)
    if code == SQLITE_FULL or (code == SQLITE_IOERR and _no_space_left(where)):
        return DiskFullError(where, str(exc))
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        if where != ":memory:" and not has_sqlite_header(where):
            return not_sqlite(where, exc)  # never was a database: nothing to restore
        return DatabaseCorruptError(where, str(exc))
    return None


def not_sqlite(where: str, exc: BaseException) -> NotASagalineDatabaseError:
    return NotASagalineDatabaseError(
        f"{where} is not a SQLite database ({exc}); point --db / Engine(url) at a "
        f"sagaline database file, or at a new path to create one"
    )


def has_sqlite_header(where: str) -> bool:
    """Whether the file starts as a SQLite database does (a damaged one still does)."""
    try:
        with open(where, "rb") as f:
            return f.read(len(HEADER)) == HEADER
    except OSError:
        return False


def no_room_for_index(where: str) -> bool:
    """No shared-memory index beside the file (nobody has it open) and no space for one."""
    return where != ":memory:" and not os.path.exists(where + "-shm") and _no_space_left(where)


def _no_space_left(where: str) -> bool:
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(where))).free < _NEARLY_NONE
    except OSError:
        return False
