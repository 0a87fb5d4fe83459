"""The tracker store's lists and counts, on SQLite and PostgreSQL: counts by status agree
with :func:`~sagaline.model.choreography.status_at` at every moment, pages follow the
keyset without repeating or skipping a saga, each query is answered from its index, and
tables of version 1 are brought to the current version."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sagaline.model import choreography as choreo
from sagaline.model.choreography import Envelope, SagaQuery, SagaStatus, Summary
from sagaline.store.postgres import tracker as pg_tracker
from sagaline.store.postgres.store import parse_url
from sagaline.store.sqlite import tracker as sqlite_tracker
from sagaline.store.tracker import Keyset, TrackerStore, open_tracker_store

ENDS = [SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED]
DEADLINES = [100.0, 150.0, 200.0]


def mixed(n: int, seed: int = 11) -> list[Summary]:
    """Sagas of every kind: ended (some past a deadline), open with a deadline before, at
    or after the moments asked about, open without one; many starting at the same time."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        started = float(rng.randrange(20))  # ties: the id breaks them
        ended = rng.choice([None, None, *ENDS])
        deadline = rng.choice([None, *DEADLINES])
        out.append(Summary(f"s{i:04d}", "order", ended, started, started + 1, deadline, 1))
    return out


async def seeded(url: str, summaries: list[Summary]) -> TrackerStore:
    store = open_tracker_store(url)
    await store.open()
    moment = datetime.fromtimestamp(0, UTC)
    envelopes = [
        Envelope(s.correlation_id, "T", s.correlation_id, None, None, moment) for s in summaries
    ]
    await store.record(envelopes, 0.0)
    for s in summaries:
        assert await store.save_summary(s, [])
    return store


@pytest.fixture
async def sagas(store_url: str) -> AsyncIterator[tuple[TrackerStore, list[Summary]]]:
    summaries = mixed(240)
    store = await seeded(store_url, summaries)
    try:
        yield store, summaries
    finally:
        await store.aclose()


def newest_first(summaries: list[Summary]) -> list[str]:
    ordered = sorted(summaries, key=lambda s: (s.started_at, s.correlation_id), reverse=True)
    return [s.correlation_id for s in ordered]


async def test_counts_by_status_agree_with_status_at_at_every_moment(
    sagas: tuple[TrackerStore, list[Summary]],
) -> None:
    store, summaries = sagas
    # Before, at and after each deadline: a saga is STALLED from its deadline on.
    for now in (0.0, 99.999, 100.0, 100.001, 150.0, 199.0, 200.0, 1e9):
        expected = Counter(choreo.status_at(s, now) for s in summaries)
        assert await store.count_sagas(now) == dict(expected), now
    assert set(await store.count_sagas(150.0)) == set(SagaStatus)  # the set has each


async def test_an_empty_store_counts_nothing(store_url: str) -> None:
    store = open_tracker_store(store_url)
    await store.open()
    try:
        assert await store.count_sagas(0.0) == {}
    finally:
        await store.aclose()


async def every_page(
    store: TrackerStore, query: SagaQuery, now: float, limit: int
) -> list[list[str]]:
    pages: list[list[str]] = []
    before: Keyset | None = None
    while True:
        page = await store.list_sagas(query, now, limit, before)
        assert len(page) <= limit
        pages.append([s.correlation_id for s in page])
        if len(page) < limit:
            return pages
        before = (page[-1].started_at, page[-1].correlation_id)


async def test_pages_follow_the_keyset_through_ties_for_every_status(
    sagas: tuple[TrackerStore, list[Summary]],
) -> None:
    store, summaries = sagas
    now = 150.0
    for status in (None, *SagaStatus):
        wanted = [s for s in summaries if status is None or choreo.status_at(s, now) is status]
        for limit in (1, 7, 500):
            pages = await every_page(store, choreo.query_for(status), now, limit)
            flat = [cid for page in pages for cid in page]
            assert flat == newest_first(wanted), (status, limit)
            assert all(len(page) == limit for page in pages[:-1])
    # A query naming several filters merges their pages (one query per index).
    both = SagaQuery(stalled=True, running=True)
    flat = [cid for page in await every_page(store, both, now, 9) for cid in page]
    assert flat == newest_first([s for s in summaries if s.ended is None])


# -- the plans -----------------------------------------------------------------------------

FILL_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO tracker_sagas (correlation_id, name, ended, started_at, updated_at,
    deadline_at, events)
SELECT printf('p%06d', i), 'order',
    CASE WHEN i % 100 < 90 THEN 'COMPLETED' WHEN i % 100 < 95 THEN 'COMPENSATED'
         WHEN i % 100 < 98 THEN 'FAILED' END,
    i, i + 1, CASE WHEN i % 7 > 0 THEN i + 300 END, 3
FROM n
"""
FILL_POSTGRES = """
INSERT INTO tracker_sagas (correlation_id, name, ended, started_at, updated_at,
    deadline_at, events)
SELECT format('p%s', lpad(i::text, 6, '0')), 'order',
    CASE WHEN i % 100 < 90 THEN 'COMPLETED' WHEN i % 100 < 95 THEN 'COMPENSATED'
         WHEN i % 100 < 98 THEN 'FAILED' END,
    i, i + 1, CASE WHEN i % 7 > 0 THEN i + 300 END, 3
FROM generate_series(1, 20000) AS i
"""
INDEXES = {
    "list_sagas_all": "tracker_sagas_by_start",
    "list_sagas_ended": "tracker_sagas_by_end",
    "list_sagas_stalled": "tracker_sagas_open",
    "list_sagas_running": "tracker_sagas_open",
}
KEYSET = (15000.5, "p015000")


def explain(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[str]:
    return [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


async def test_sqlite_answers_each_list_and_the_counts_from_an_index(tmp_path: Path) -> None:
    path = tmp_path / "tracker.db"
    store = open_tracker_store(f"sqlite:///{path}")
    await store.open()
    await store.aclose()
    conn = sqlite3.connect(path)
    try:
        conn.execute(FILL_SQLITE)
        conn.commit()
        params = {"at": KEYSET[0], "id": KEYSET[1], "limit": 51, "ended": "FAILED"}
        params |= {"now": 16000.0, "stalled": "STALLED", "in_progress": "IN_PROGRESS"}
        for name, index in INDEXES.items():
            plan = explain(conn, sqlite_tracker._Q[name], params)
            # One seek from the keyset, in the index's order: no sort, no scan of the rest.
            assert plan == [
                f"SEARCH tracker_sagas USING INDEX {index} "
                + ("(ended=? AND " if name == "list_sagas_ended" else "(")
                + "(started_at,correlation_id)<(?,?))"
            ], (name, plan)
        plan = explain(conn, sqlite_tracker._Q["count_sagas"], params)
        # Each half reads one index alone: the ended sagas' and the open ones'.
        assert "SEARCH tracker_sagas USING COVERING INDEX tracker_sagas_by_end (ended>?)" in plan
        assert "SCAN tracker_sagas USING COVERING INDEX tracker_sagas_open" in plan, plan
    finally:
        conn.close()


async def test_postgres_answers_each_list_and_the_counts_from_an_index(
    postgres_url: str,
) -> None:
    store = open_tracker_store(postgres_url)
    await store.open()
    await store.aclose()
    dsn, schema = parse_url(postgres_url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
    try:
        await conn.execute(FILL_POSTGRES)
        await conn.execute("VACUUM ANALYZE tracker_sagas")
        args: dict[str, tuple[Any, ...]] = {
            "list_sagas_all": (*KEYSET, 51),
            "list_sagas_ended": (*KEYSET, 51, "FAILED"),
            "list_sagas_stalled": (*KEYSET, 51, 16000.0),
            "list_sagas_running": (*KEYSET, 51, 16000.0),
        }
        # A custom plan, and the generic one a prepared statement may settle on.
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            for name, index in INDEXES.items():
                rows = await conn.fetch(f"EXPLAIN (COSTS OFF) {pg_tracker._Q[name]}", *args[name])
                plan = [r[0].strip() for r in rows]
                scans = [i for i, line in enumerate(plan) if "Index Scan Backward" in line]
                # IN_PROGRESS: two scans (no deadline; before it), merged in their order.
                assert len(scans) == (2 if name == "list_sagas_running" else 1), (mode, plan)
                for i in scans:
                    assert plan[i] == f"->  Index Scan Backward using {index} on " + (
                        "tracker_sagas" if i == scans[0] else "tracker_sagas tracker_sagas_1"
                    ), (mode, plan)
                    # The keyset and the status are searched in the index, not filtered after.
                    assert plan[i + 1].startswith("Index Cond: "), (mode, plan)
                    assert "ROW(started_at" in plan[i + 1], (mode, plan)
                assert not any("Sort Method" in line or "Filter" in line for line in plan)
                assert not any(line.startswith("->  Sort") for line in plan), plan
            rows = await conn.fetch(
                f"EXPLAIN (COSTS OFF) {pg_tracker._Q['count_sagas']}",
                16000.0,
                "STALLED",
                "IN_PROGRESS",
            )
            counted = "\n".join(r[0] for r in rows)
            assert "Index Only Scan using tracker_sagas_open" in counted, counted
    finally:
        await conn.close()


# -- the upgrade from version 1 ------------------------------------------------------------


def sqlite_schema(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'tracker%' ORDER BY name"
        ).fetchall()
        return [(r[0], r[1], " ".join((r[2] or "").split())) for r in rows]
    finally:
        conn.close()


async def test_sqlite_tables_of_version_1_are_upgraded_to_the_fresh_schema(
    tmp_path: Path,
) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    conn = sqlite3.connect(old)
    for statement in sqlite_tracker._TABLES:  # version 1, as a tracker of 0.x left it
        conn.execute(statement)
    conn.execute("INSERT INTO tracker_meta (version) VALUES (1)")
    conn.commit()
    conn.close()
    summaries = mixed(30)
    for path in (old, fresh):
        store = await seeded(f"sqlite:///{path}", summaries)
        try:
            assert [s.correlation_id for s in await store.list_sagas(SagaQuery(), 0, 99)] == (
                newest_first(summaries)
            )
        finally:
            await store.aclose()
    assert sqlite_schema(old) == sqlite_schema(fresh)
    conn = sqlite3.connect(old)
    assert conn.execute("SELECT max(version) FROM tracker_meta").fetchone()[0] == 2
    conn.close()


async def postgres_schema(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename LIKE 'tracker%' ORDER BY indexname"
    )
    return [(r[0], r[1]) for r in rows]


async def test_postgres_tables_of_version_1_are_upgraded_to_the_fresh_schema(
    postgres_url: str,
) -> None:
    dsn, schema = parse_url(postgres_url)
    assert schema is not None
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute(f'CREATE SCHEMA "{schema}_fresh"')
        await admin.execute(f'SET search_path = "{schema}"')
        await admin.execute(pg_tracker._TABLES)
        await admin.execute("INSERT INTO tracker_meta (version) VALUES (1)")
        fresh_url = postgres_url.replace(f"schema={schema}", f"schema={schema}_fresh")
        for url in (postgres_url, fresh_url):
            store = await seeded(url, mixed(30))
            await store.aclose()
        old_indexes = await postgres_schema(admin)
        assert await admin.fetchval("SELECT max(version) FROM tracker_meta") == 2
        await admin.execute(f'SET search_path = "{schema}_fresh"')
        fresh_indexes = await postgres_schema(admin)
        assert [(n, d.replace(f"{schema}_fresh.", f"{schema}.")) for n, d in fresh_indexes] == (
            old_indexes
        )
        assert "tracker_sagas_open" in dict(old_indexes)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}_fresh" CASCADE')
        await admin.close()
