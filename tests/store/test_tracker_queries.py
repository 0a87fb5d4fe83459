"""The tracker store's lists and counts, on SQLite and PostgreSQL: counts by status agree
with :func:`~sagaline.model.choreography.status_at` at every moment, pages follow the
keyset without repeating or skipping a saga, each query is answered from its index, the
ended sagas' kept counts follow every change of a saga, and tables of versions 1 and 2 are
brought to the current version."""

from __future__ import annotations

import dataclasses
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


async def fresh_counts(url: str) -> dict[str, int]:
    """How many sagas ended each way, by a GROUP BY over the rows (what the triggers keep)."""
    sql = "SELECT ended, count(*) FROM tracker_sagas WHERE ended IS NOT NULL GROUP BY ended"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return {r[0]: r[1] for r in conn.execute(sql)}
        finally:
            conn.close()
    dsn, schema = parse_url(url)
    pg = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
    try:
        return {r[0]: r[1] for r in await pg.fetch(sql)}
    finally:
        await pg.close()


async def run_sql(url: str, sql: str) -> None:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
        return
    dsn, schema = parse_url(url)
    pg = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
    try:
        await pg.execute(sql)
    finally:
        await pg.close()


async def test_kept_counts_follow_sagas_that_end_change_and_are_deleted(
    sagas: tuple[TrackerStore, list[Summary]], store_url: str
) -> None:
    store, summaries = sagas
    rng = random.Random(5)

    async def agree() -> None:
        counts = await store.count_sagas(150.0)
        kept = {s.value: n for s, n in counts.items() if s in ENDS}
        assert kept == await fresh_counts(store_url)
        assert counts == dict(Counter(choreo.status_at(s, 150.0) for s in current.values()))

    current = {s.correlation_id: s for s in summaries}
    await agree()
    # Open sagas end, ended ones end otherwise, some open again (NULL from a value), and
    # a summary that does not land (a stale event count) changes nothing.
    for _ in range(3):
        for s in rng.sample(list(current.values()), 60):
            now = await store.summary(s.correlation_id)
            assert now is not None
            changed = dataclasses.replace(now, ended=rng.choice([None, *ENDS]))
            assert await store.save_summary(changed, [])
            current[s.correlation_id] = changed
        stale = dataclasses.replace(changed, ended=SagaStatus.FAILED, events=99)
        assert not await store.save_summary(stale, [])
        await agree()
    # New sagas (open), then ended; and the same event again counts nothing.
    moment = datetime.fromtimestamp(0, UTC)
    new = [Envelope(f"n{i}", "T", f"n{i}", None, None, moment) for i in range(10)]
    assert len(await store.record(new + new[:3], 0.0)) == 10
    for e in new:
        s = Summary(e.correlation_id, "order", SagaStatus.COMPLETED, 0.0, 1.0, None, 1)
        assert await store.save_summary(s, [])
        current[s.correlation_id] = s
    await agree()
    # The tracker never deletes a saga, but an operator's SQL may (or insert one ended).
    await run_sql(store_url, "DELETE FROM tracker_sagas WHERE correlation_id < 's0100'")
    current = {k: v for k, v in current.items() if k >= "s0100"}
    await run_sql(
        store_url,
        "INSERT INTO tracker_sagas (correlation_id, name, ended, started_at, updated_at, "
        "deadline_at, events) VALUES ('x1', 'order', 'FAILED', 1, 2, NULL, 1)",
    )
    current["x1"] = Summary("x1", "order", SagaStatus.FAILED, 1.0, 2.0, None, 1)
    await agree()


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
        # The ended sagas from their kept counts; the open ones from their index alone.
        assert "SCAN tracker_saga_counts" in plan, plan
        assert "SCAN tracker_sagas USING COVERING INDEX tracker_sagas_open" in plan, plan
        assert not any("tracker_sagas_by_end" in line for line in plan), plan
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
            assert "tracker_saga_counts" in counted, counted
            assert "tracker_sagas_by_end" not in counted, counted
    finally:
        await conn.close()


# -- the upgrades from versions 1 and 2 ---------------------------------------------------

# Sagas an older tracker left, some ended: the upgrade to version 3 counts them once.
OLD_SAGAS = """
INSERT INTO tracker_sagas (correlation_id, name, ended, started_at, updated_at, deadline_at,
    events)
VALUES ('o1', 'order', 'COMPLETED', 1, 2, NULL, 3), ('o2', 'order', 'COMPLETED', 2, 3, 9, 3),
    ('o3', 'order', 'FAILED', 3, 4, NULL, 3), ('o4', 'order', NULL, 4, 5, 9, 1),
    ('o5', 'order', NULL, 5, 6, NULL, 1)
"""
OLD_COUNTS = {
    SagaStatus.COMPLETED: 2,
    SagaStatus.FAILED: 1,
    SagaStatus.STALLED: 1,
    SagaStatus.IN_PROGRESS: 1,
}


def sqlite_schema(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'tracker%' ORDER BY name"
        ).fetchall()
        return [(r[0], r[1], " ".join((r[2] or "").split())) for r in rows]
    finally:
        conn.close()


@pytest.mark.parametrize("version", [1, 2])
async def test_sqlite_tables_of_an_older_version_are_upgraded_to_the_fresh_schema(
    tmp_path: Path, version: int
) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    conn = sqlite3.connect(old)
    for statement in sqlite_tracker._TABLES:  # version 1, as a tracker of 0.x left it
        conn.execute(statement)
    for step in range(2, version + 1):
        for statement in sqlite_tracker._UPGRADES[step]:
            conn.execute(statement)
    conn.execute("INSERT INTO tracker_meta (version) VALUES (?)", (version,))
    conn.execute(OLD_SAGAS)
    conn.commit()
    conn.close()
    store = open_tracker_store(f"sqlite:///{old}")
    await store.open()
    try:
        assert await store.count_sagas(9.0) == OLD_COUNTS  # backfilled by the upgrade
    finally:
        await store.aclose()
    await run_sql(f"sqlite:///{old}", "DELETE FROM tracker_sagas")
    summaries = mixed(30)
    for path in (old, fresh):
        store = await seeded(f"sqlite:///{path}", summaries)
        try:
            assert [s.correlation_id for s in await store.list_sagas(SagaQuery(), 0, 99)] == (
                newest_first(summaries)
            )
            expected = Counter(choreo.status_at(s, 150.0) for s in summaries)
            assert await store.count_sagas(150.0) == dict(expected)
        finally:
            await store.aclose()
    assert sqlite_schema(old) == sqlite_schema(fresh)
    assert any(kind == "trigger" for kind, _, _ in sqlite_schema(fresh))
    conn = sqlite3.connect(old)
    assert conn.execute("SELECT max(version) FROM tracker_meta").fetchone()[0] == 3
    conn.close()


async def postgres_schema(conn: asyncpg.Connection) -> list[tuple[str, ...]]:
    """The tracker's indexes, columns, triggers and trigger functions in the search path's
    schema, with its name taken out of their definitions."""
    indexes = await conn.fetch(
        "SELECT 'index', indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() AND tablename LIKE 'tracker%'"
    )
    columns = await conn.fetch(
        "SELECT 'column', table_name || '.' || column_name, "
        "data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') "
        "FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name LIKE 'tracker%'"
    )
    triggers = await conn.fetch(
        "SELECT 'trigger', t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"
    )
    functions = await conn.fetch(
        "SELECT 'function', proname, prosrc FROM pg_proc "
        "WHERE pronamespace = current_schema()::regnamespace"
    )
    schema = await conn.fetchval("SELECT current_schema()")
    rows = [*indexes, *columns, *triggers, *functions]
    return sorted((r[0], r[1], r[2].replace(f"{schema}.", "")) for r in rows)


@pytest.mark.parametrize("version", [1, 2])
async def test_postgres_tables_of_an_older_version_are_upgraded_to_the_fresh_schema(
    postgres_url: str, version: int
) -> None:
    dsn, schema = parse_url(postgres_url)
    assert schema is not None
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute(f'CREATE SCHEMA "{schema}_fresh"')
        await admin.execute(f'SET search_path = "{schema}"')
        await admin.execute(pg_tracker._TABLES)
        for step in range(2, version + 1):
            await admin.execute(pg_tracker._UPGRADES[step])
        await admin.execute("INSERT INTO tracker_meta (version) VALUES ($1)", version)
        await admin.execute(OLD_SAGAS)
        store = open_tracker_store(postgres_url)
        await store.open()
        try:
            assert await store.count_sagas(9.0) == OLD_COUNTS  # backfilled by the upgrade
        finally:
            await store.aclose()
        await admin.execute("DELETE FROM tracker_sagas")
        fresh_url = postgres_url.replace(f"schema={schema}", f"schema={schema}_fresh")
        summaries = mixed(30)
        for url in (postgres_url, fresh_url):
            store = await seeded(url, summaries)
            try:
                expected = Counter(choreo.status_at(s, 150.0) for s in summaries)
                assert await store.count_sagas(150.0) == dict(expected)
            finally:
                await store.aclose()
        old_schema = await postgres_schema(admin)
        assert await admin.fetchval("SELECT max(version) FROM tracker_meta") == 3
        await admin.execute(f'SET search_path = "{schema}_fresh"')
        assert await postgres_schema(admin) == old_schema
        names = {name for _, name, _ in old_schema}
        assert {"tracker_sagas_open", "tracker_saga_counts_update"} <= names
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}_fresh" CASCADE')
        await admin.close()
