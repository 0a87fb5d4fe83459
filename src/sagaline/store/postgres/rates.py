"""Queue rate limits on PostgreSQL: each function runs inside a transaction the store opened.

A claim locks its queue's bucket row (``FOR UPDATE``) before reading the database's clock,
so claims of a rate-limited queue, of runs and of tasks alike, are serialised on every host
and each one sees what the one before it spent. A queue without a rate has no row: its
claims lock nothing.
"""

from __future__ import annotations

import asyncpg

from sagaline.model import rates
from sagaline.store.queries import load_queries

_Q = load_queries("sagaline.store.postgres")


def _bucket(row: asyncpg.Record) -> rates.Bucket:
    return rates.Bucket(
        float(row["per_second"]), int(row["burst"]), float(row["tokens"]), row["refilled_at"]
    )


async def _locked(conn: asyncpg.Connection, queue: str) -> tuple[rates.Bucket, float] | None:
    row = await conn.fetchrow(_Q["lock_rate_bucket"], queue)
    if row is None:
        return None
    # The clock is read once the lock is held: a reading taken while waiting for it would
    # be older than what the claim before this one wrote.
    return _bucket(row), float(await conn.fetchval(_Q["rate_now"]))


async def grant(conn: asyncpg.Connection, queue: str, wanted: int) -> rates.Grant | None:
    """What ``queue``'s bucket allows a claim of ``wanted`` now (holding its row's lock
    to the end of the transaction); None: it has no rate."""
    found = await _locked(conn, queue)
    return None if found is None else rates.grant(found[0], wanted, found[1])


async def spend(conn: asyncpg.Connection, queue: str, granted: rates.Grant, taken: int) -> None:
    tokens = rates.spend(granted.tokens, taken)
    await conn.execute(_Q["spend_rate_tokens"], queue, tokens, granted.at)


async def set_rate(conn: asyncpg.Connection, queue: str, rate: rates.QueueRate | None) -> None:
    if rate is None:
        await conn.execute(_Q["drop_queue_rate"], queue)
        return
    found = await _locked(conn, queue)
    old, now = (None, 0.0) if found is None else found
    tokens = rates.tokens_after_change(old, rate, now)
    await conn.execute(_Q["set_queue_rate"], queue, rate.per_second, rate.burst, tokens)


async def queue_rates(conn: asyncpg.Connection) -> dict[str, rates.QueueRate]:
    rows = await conn.fetch(_Q["queue_rates"])
    return {r["queue"]: rates.QueueRate(float(r["per_second"]), int(r["burst"])) for r in rows}
