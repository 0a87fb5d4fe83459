"""Queue rate limits on SQLite: each function runs inside the store's write transaction.

One writer at a time (``BEGIN IMMEDIATE``): a claim reads the bucket, takes what it allows
and spends it before any other claim can read it.
"""

from __future__ import annotations

import sqlite3

from sagaline.model import rates
from sagaline.store.queries import load_queries

_Q = load_queries("sagaline.store.sqlite")


def _bucket(row: sqlite3.Row) -> rates.Bucket:
    return rates.Bucket(
        float(row["per_second"]), int(row["burst"]), float(row["tokens"]), row["refilled_at"]
    )


def grant(conn: sqlite3.Connection, queue: str, wanted: int) -> rates.Grant | None:
    """What ``queue``'s bucket allows a claim of ``wanted`` now; None: it has no rate."""
    row = conn.execute(_Q["rate_bucket"], {"queue": queue}).fetchone()
    return None if row is None else rates.grant(_bucket(row), wanted, float(row["now"]))


def spend(conn: sqlite3.Connection, queue: str, granted: rates.Grant, taken: int) -> None:
    tokens = rates.spend(granted.tokens, taken)
    conn.execute(_Q["spend_rate_tokens"], {"queue": queue, "tokens": tokens, "at": granted.at})


def limited(conn: sqlite3.Connection, queue: str) -> bool:
    return conn.execute(_Q["rate_bucket"], {"queue": queue}).fetchone() is not None


def set_rate(conn: sqlite3.Connection, queue: str, rate: rates.QueueRate | None) -> None:
    if rate is None:
        conn.execute(_Q["drop_queue_rate"], {"queue": queue})
        return
    row = conn.execute(_Q["rate_bucket"], {"queue": queue}).fetchone()
    old, now = (None, 0.0) if row is None else (_bucket(row), float(row["now"]))
    params = {"queue": queue, "per_second": rate.per_second, "burst": rate.burst}
    conn.execute(
        _Q["set_queue_rate"], {**params, "tokens": rates.tokens_after_change(old, rate, now)}
    )


def queue_rates(conn: sqlite3.Connection) -> dict[str, rates.QueueRate]:
    rows = conn.execute(_Q["queue_rates"])
    return {r["queue"]: rates.QueueRate(float(r["per_second"]), int(r["burst"])) for r in rows}
