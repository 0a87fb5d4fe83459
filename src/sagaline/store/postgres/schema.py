"""The PostgreSQL schema: migrated under an advisory lock, refused when foreign or newer."""

from __future__ import annotations

import asyncpg

from sagaline.model.errors import NotASagalineDatabaseError, SchemaTooNewError
from sagaline.store.queries import load_migrations, load_queries

_Q = load_queries("sagaline.store.postgres")


async def migrate(conn: asyncpg.Connection, where: str) -> None:
    """Bring the schema up to date under an advisory lock; refuse foreign or newer ones."""
    await conn.execute(_Q["lock_migrations"])
    has_meta, has_runs = await conn.fetchrow(_Q["meta_table"])
    if has_runs and not has_meta:
        raise NotASagalineDatabaseError(
            f"{where} already has a 'runs' table that is not sagaline's; point sagaline at "
            f"its own database or schema (postgresql://…/db?schema=sagaline)"
        )
    version = (await conn.fetchval(_Q["schema_version"])) if has_meta else 0
    migrations = load_migrations("sagaline.store.postgres")
    known = migrations[-1][0]
    if version > known:
        raise SchemaTooNewError(where, version, known)
    for number, script in migrations:
        if number > version:
            await conn.execute(script)
            await conn.execute(_Q["set_schema_version"], str(number))
