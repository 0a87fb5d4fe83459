"""The SQLite file: created, migrated, and refused when it is not ours or too new."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sagaline import Engine
from sagaline.model.errors import NotASagalineDatabaseError, SchemaTooNewError
from sagaline.store.queries import load_migrations
from sagaline.store.sqlite.schema import APPLICATION_ID
from sagaline.store.sqlite.store import path_from_url


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    return rows


async def test_migrations_from_empty_equal_the_current_schema(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'a.db'}", worker=False):
        pass
    manual = tmp_path / "b.db"
    conn = sqlite3.connect(manual)
    for _, script in load_migrations("sagaline.store.sqlite"):
        conn.executescript(script)
    conn.close()
    assert _schema(tmp_path / "a.db") == _schema(manual)


async def test_opening_twice_is_idempotent_and_marks_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    for _ in range(2):
        async with Engine(url, worker=False):
            pass
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    latest = load_migrations("sagaline.store.sqlite")[-1][0]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 200)
    before = path.read_bytes()
    with pytest.raises(NotASagalineDatabaseError, match="is not a SQLite database"):
        async with Engine(f"sqlite:///{path}"):
            pass
    assert path.read_bytes() == before


async def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(NotASagalineDatabaseError, match="not a sagaline one"):
        async with Engine(f"sqlite:///{path}"):
            pass
    assert path.read_bytes() == before


async def test_a_newer_schema_is_refused_with_upgrade_advice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    async with Engine(url, worker=False):
        pass
    conn = sqlite3.connect(tmp_path / "new.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(SchemaTooNewError, match=r"schema version 999.*upgrade sagaline"):
        async with Engine(url):
            pass


def test_url_forms() -> None:
    assert path_from_url("sqlite:///rel/x.db") == "rel/x.db"
    assert path_from_url("sqlite:////abs/x.db") == "/abs/x.db"
    assert path_from_url("sqlite://") == ":memory:"
