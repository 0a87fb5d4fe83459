"""The PostgreSQL schema: migrated from empty, refused when foreign or newer."""

from __future__ import annotations

import re

import asyncpg
import pytest

from sagaline import Engine
from sagaline.model.errors import DatabaseError, NotASagalineDatabaseError, SchemaTooNewError
from sagaline.store.postgres.store import parse_url
from sagaline.store.queries import load_migrations

SCHEMA_QUERY = """
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = $1
ORDER BY table_name, column_name
"""


def _plain(rows: list[asyncpg.Record]) -> list[tuple[object, ...]]:
    """Columns, with sequence defaults stripped of their schema prefix."""
    return [(*r[:4], None if r[4] is None else re.sub(r"'[a-z0-9_]+\.", "'", r[4])) for r in rows]


async def _columns(url: str) -> list[tuple[object, ...]]:
    dsn, schema = parse_url(url)
    conn = await asyncpg.connect(dsn)
    try:
        return _plain(await conn.fetch(SCHEMA_QUERY, schema))
    finally:
        await conn.close()


async def test_migrations_from_empty_equal_the_current_schema(postgres_url: str) -> None:
    async with Engine(postgres_url, worker=False):
        pass
    migrated = await _columns(postgres_url)
    dsn, schema = parse_url(postgres_url)
    conn = await asyncpg.connect(dsn)
    manual = f"{schema}_manual"
    try:
        await conn.execute(f'CREATE SCHEMA "{manual}"')
        await conn.execute(f'SET search_path TO "{manual}"')
        for _, script in load_migrations("sagaline.store.postgres"):
            await conn.execute(script)
        by_hand = _plain(await conn.fetch(SCHEMA_QUERY, manual))
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{manual}" CASCADE')
        await conn.close()
    assert migrated == by_hand
    assert any(r[0] == "queues" for r in migrated)


async def test_a_newer_schema_is_refused_with_upgrade_advice(postgres_url: str) -> None:
    async with Engine(postgres_url, worker=False):
        pass
    dsn, schema = parse_url(postgres_url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
    await conn.execute("UPDATE sagaline_meta SET value = '999' WHERE key = 'schema_version'")
    await conn.close()
    with pytest.raises(SchemaTooNewError, match=r"schema version 999.*upgrade sagaline"):
        async with Engine(postgres_url):
            pass


async def test_a_foreign_runs_table_is_refused_untouched(postgres_url: str) -> None:
    dsn, schema = parse_url(postgres_url)
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'CREATE TABLE "{schema}".runs (id int)')
    await conn.close()
    with pytest.raises(NotASagalineDatabaseError, match="not sagaline's"):
        async with Engine(postgres_url):
            pass
    assert await _columns(postgres_url) == [("runs", "id", "integer", "YES", None)]


async def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError, match="cannot reach PostgreSQL"):
        async with Engine("postgresql://nobody@127.0.0.1:1/none"):
            pass


def test_bad_schema_names_are_refused() -> None:
    with pytest.raises(DatabaseError, match="bad schema name"):
        parse_url("postgresql://u@h/db?schema=Robert'); DROP")


async def test_a_reader_never_creates_a_schema_and_says_where_it_looked(postgres_url: str) -> None:
    from sagaline.model.errors import DatabaseNotFoundError
    from sagaline.store import open_store

    store = open_store(postgres_url)
    with pytest.raises(DatabaseNotFoundError, match="there is no schema 't_"):
        await store.open(create=False)


async def test_a_missing_postgres_database_is_a_clear_error() -> None:
    from sagaline.model.errors import DatabaseNotFoundError
    from sagaline.store import open_store
    from tests.conftest import POSTGRES_URL, require_postgres

    require_postgres()
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_database_x7"
    with pytest.raises(DatabaseNotFoundError, match="has no such database"):
        await open_store(url).open()


async def test_runs_pages_keep_room_for_in_place_updates(postgres_url: str) -> None:
    """Each checkpoint rewrites its run's row: fillfactor leaves room for a HOT update."""
    async with Engine(postgres_url, worker=False):
        pass
    dsn, schema = parse_url(postgres_url)
    conn = await asyncpg.connect(dsn)
    try:
        options = await conn.fetchval(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = 'runs'",
            schema,
        )
    finally:
        await conn.close()
    assert "fillfactor=70" in options
