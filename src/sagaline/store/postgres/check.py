"""``sagaline db check`` on PostgreSQL: a cheap look, in a read-only transaction.

PostgreSQL guards its own pages (WAL, and checksums where the cluster has them), so this
does not read every page as SQLite's integrity check does; it checks what a sagaline
database needs and what an operator can act on: the schema's version, every table present
and readable, every index valid (a failed ``CREATE INDEX CONCURRENTLY`` leaves one that
is not), and the checksum failures the server has counted.
"""

from __future__ import annotations

import asyncpg

from sagaline.store.protocol import migrated_tables
from sagaline.store.queries import load_migrations, load_queries

_Q = load_queries("sagaline.store.postgres")
_CHECK = {
    "present": "SELECT to_regclass($1) IS NOT NULL",
    "invalid_indexes": """
        SELECT ci.relname, ct.relname FROM pg_index i
        JOIN pg_class ci ON ci.oid = i.indexrelid
        JOIN pg_class ct ON ct.oid = i.indrelid
        WHERE ct.relnamespace = current_schema()::regnamespace
          AND NOT (i.indisvalid AND i.indisready)
        ORDER BY ci.relname
    """,
    "checksum_failures": (
        "SELECT checksum_failures FROM pg_stat_database WHERE datname = current_database()"
    ),
}


async def check_schema(conn: asyncpg.Connection, where: str) -> list[str]:
    """What is wrong with the sagaline schema ``conn`` looks at; empty when nothing is."""
    async with conn.transaction(readonly=True):
        has_meta, has_runs = await conn.fetchrow(_Q["meta_table"])
        if not has_meta:
            what = "a 'runs' table that is not sagaline's" if has_runs else "no sagaline schema"
            return [f"{where} has {what}; `sagaline db migrate` creates one in an empty schema"]
        migrations = load_migrations("sagaline.store.postgres")
        version, known = await conn.fetchval(_Q["schema_version"]), migrations[-1][0]
        problems = _version_problems(version or 0, known)
        scripts = (script for n, script in migrations if n <= (version or 0))
        for table in migrated_tables(scripts):
            problems += await _table_problems(conn, table)
        for index, table in await conn.fetch(_CHECK["invalid_indexes"]):
            problems.append(
                f"index {index!r} on {table!r} is not valid (an interrupted build?): "
                f"REINDEX INDEX {index}"
            )
        failures = await conn.fetchval(_CHECK["checksum_failures"])
        if failures:
            problems.append(
                f"the server counted {failures} data checksum failure(s) in this database "
                f"(pg_stat_database): damaged pages; restore from a backup"
            )
        return problems


def _version_problems(version: int, known: int) -> list[str]:
    if version < known:
        return [
            f"schema version {version} is older than this sagaline's {known}: "
            f"`sagaline db migrate` brings it up to date"
        ]
    if version > known:
        return [f"schema version {version} is newer than this sagaline's {known}"]
    return []


async def _table_problems(conn: asyncpg.Connection, table: str) -> list[str]:
    if not await conn.fetchval(_CHECK["present"], table):
        return [f"table {table!r} is missing"]
    try:
        async with conn.transaction():  # a savepoint: a failed read leaves the rest to run
            # The name is one of our own migrations' tables, quoted as an identifier.
            await conn.fetchval(f'SELECT 1 FROM "{table}" LIMIT 1')
    except asyncpg.PostgresError as exc:
        return [f"table {table!r} cannot be read: {exc}"]
    return []
