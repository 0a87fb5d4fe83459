"""A real refusal by the database: a trigger that rejects one run's rows in one table."""

from __future__ import annotations

import re
import sqlite3

import asyncpg

from sagaline.store.postgres.store import parse_url
from sagaline.store.sqlite.store import path_from_url

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


async def poison(url: str, table: str, run_id: str, message: str = "poisoned") -> None:
    """From now on the database refuses any row of ``run_id`` written to ``table``."""
    if table not in ("events", "steps") or not _SAFE.match(run_id) or not _SAFE.match(message):
        raise ValueError("poison takes a known table and plain names only")
    if url.startswith("sqlite"):
        conn = sqlite3.connect(path_from_url(url))
        try:
            conn.execute(
                f"CREATE TRIGGER poison_{table} BEFORE INSERT ON {table} "
                f"WHEN NEW.run_id = '{run_id}' BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
            conn.commit()
        finally:
            conn.close()
        return
    dsn, schema = parse_url(url)
    pg = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
    try:
        await pg.execute(
            f"CREATE FUNCTION poison_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF NEW.run_id = '{run_id}' THEN RAISE EXCEPTION '{message}'; END IF; "
            f"RETURN NEW; END $$"
        )
        await pg.execute(
            f"CREATE TRIGGER poison_{table} BEFORE INSERT OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION poison_{table}()"
        )
    finally:
        await pg.close()
