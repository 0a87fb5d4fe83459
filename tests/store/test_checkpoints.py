"""Checkpoints through the store on every backend: what is written, what is refused, and the
order the audit trail is read back in."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest

from sagaline.model import events as ev
from sagaline.model.records import Checkpoint, NewEvent, NewRun, RunChange, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus
from sagaline.store import open_store
from sagaline.store.postgres.store import parse_url
from sagaline.store.protocol import Store
from sagaline.store.sqlite.store import path_from_url
from tests.store.poison import poison

OWNER = "worker-1"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url)
    await store.open()
    yield store
    await store.aclose()


async def claimed(store: Store, *run_ids: str, at: float = 100.0) -> None:
    """Runs born claimed by OWNER (epoch 1), as a worker's own starts are."""
    batch = [(NewRun(r, "wf", b"{}", "default", at), OWNER) for r in run_ids]
    created = await store.create_runs(batch, lease_seconds=60)
    assert all(run.owner == OWNER and run.lease_epoch == 1 for run, _ in created)


def a_step(seq: int, branch: str = "", at: float = 101.0) -> StepRecord:
    return StepRecord(
        seq=seq,
        name="shop.reserve",
        kind=StepKind.STEP,
        status=StepStatus.SUCCEEDED,
        input=b'["a"]',
        output=b'{"id": 7}',
        error=None,
        attempts=1,
        compensable=True,
        pivot=False,
        compensates_seq=None,
        done_index=seq,
        started_at=at,
        finished_at=at + 0.5,
        branch=branch,
    )


def checkpoint(run_id: str, seq: int = 1, suspend: bool = False, epoch: int = 1) -> Checkpoint:
    """One step done; ``suspend`` makes it a suspension, which takes PostgreSQL's general path
    instead of its one-statement one."""
    events = [
        NewEvent(ev.StepStarted(step="shop.reserve"), 101.0, seq),
        NewEvent(ev.StepSucceeded(step="shop.reserve", attempts=1), 101.5, seq),
    ]
    change = RunChange(RunStatus.SUSPENDED, release=True, wake_at=500.0) if suspend else None
    return Checkpoint(run_id, OWNER, epoch, [a_step(seq)], events, change)


@pytest.mark.parametrize("suspend", [False, True], ids=["plain", "suspending"])
async def test_a_steps_branch_is_stored_and_read_back(store: Store, suspend: bool) -> None:
    await claimed(store, "r1", "r2")
    steps = [a_step(1, branch="2.1"), a_step(2, branch=""), a_step(3, branch="2.1.4")]
    first, second = checkpoint("r1", suspend=suspend), checkpoint("r2")
    first.steps, second.steps = steps, steps[:1]
    assert all(r.landed for r in await store.commit([first, second]))
    assert await store.load_steps("r1") == steps
    rewritten = msgspec.structs.replace(steps[0], branch="3.2", attempts=2)
    second.steps = [rewritten]
    second.change = first.change
    await store.commit([second])  # the upsert rewrites the branch too
    assert await store.load_steps("r2") == [rewritten]


@pytest.mark.parametrize(
    ("table", "suspend"), [("events", False), ("steps", True)], ids=["events-plain", "steps-susp"]
)
async def test_a_checkpoint_the_database_refuses_does_not_fail_its_batch(
    store: Store, table: str, suspend: bool
) -> None:
    good = [f"good-{i}" for i in range(5)]
    await claimed(store, *good, "bad", "stale")
    before = await store.load_run("bad")
    await poison(store.url, table, "bad", "poisoned")
    batch = [checkpoint(r, suspend=suspend) for r in good[:2]]
    batch.append(checkpoint("bad", suspend=suspend))
    batch.append(checkpoint("stale", suspend=suspend, epoch=0))  # its writer lost the lease
    batch += [checkpoint(r, suspend=suspend) for r in good[2:]]

    results = await store.commit(batch)

    assert [r.run_id for r in results] == [cp.run_id for cp in batch]
    by_run = {r.run_id: r for r in results}
    refused = by_run.pop("bad")
    assert not refused.landed and refused.rejected is not None and "poisoned" in refused.rejected
    stale = by_run.pop("stale")
    assert not stale.landed and stale.rejected is None
    assert all(r.landed and r.rejected is None for r in by_run.values())
    want = RunStatus.SUSPENDED if suspend else RunStatus.RUNNING
    for run_id in good:
        assert [s.seq for s in await store.load_steps(run_id)] == [1]
        types = [e.type for e in await store.read_events(run_id)]
        assert types == ["RunStarted", "StepStarted", "StepSucceeded"]
        run = await store.load_run(run_id)
        assert run is not None and run.status is want
    # Nothing of the refused checkpoint was written, not even the fence's touch of the run.
    assert await store.load_steps("bad") == []
    assert [e.type for e in await store.read_events("bad")] == ["RunStarted"]
    assert await store.load_run("bad") == before


async def test_a_batch_of_only_the_refused_checkpoint_reports_it(store: Store) -> None:
    await claimed(store, "bad")
    await poison(store.url, "steps", "bad", "no_steps_here")
    (result,) = await store.commit([checkpoint("bad")])
    assert result.rejected is not None and "no_steps_here" in result.rejected
    assert not result.landed
    assert await store.load_steps("bad") == []


async def test_events_are_read_by_time_then_insertion(store: Store) -> None:
    await claimed(store, "r1", at=100.0)
    # Step 2 ends first; step 1 started earlier but its StepStarted is written with its end.
    second = Checkpoint(
        "r1",
        OWNER,
        1,
        events=[
            NewEvent(ev.StepStarted(step="s"), 103.0, 2),
            NewEvent(ev.StepSucceeded(step="s", attempts=1), 104.0, 2),
        ],
    )
    first = Checkpoint(
        "r1",
        OWNER,
        1,
        events=[
            NewEvent(ev.StepStarted(step="s"), 101.0, 1),
            NewEvent(
                ev.StepSucceeded(step="s", attempts=1), 104.0, 1
            ),  # the same instant: insertion decides
            NewEvent(ev.RunCompleted(), 105.0),
        ],
    )
    await store.commit([second])
    await store.commit([first])
    events = await store.read_events("r1")
    assert [(e.type, e.seq) for e in events] == [
        ("RunStarted", None),
        ("StepStarted", 1),
        ("StepStarted", 2),
        ("StepSucceeded", 2),
        ("StepSucceeded", 1),
        ("RunCompleted", None),
    ]
    assert [e.at for e in events] == sorted(e.at for e in events)
    ties = [e.id for e in events if e.at == 104.0]
    assert ties == sorted(ties)


async def test_a_runs_events_are_read_in_order_from_the_index(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    await store.aclose()
    query = "SELECT * FROM events WHERE run_id = 'r1' ORDER BY at, id"
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(path_from_url(store_url))
        plan = " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
        conn.close()
        assert "events_by_run" in plan and "TEMP B-TREE" not in plan, plan
        return
    dsn, schema = parse_url(store_url)
    pg = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
    try:
        await pg.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        plan = " ".join(row[0] for row in await pg.fetch(f"EXPLAIN {query}"))
    finally:
        await pg.close()
    assert "events_by_run" in plan and "Sort" not in plan, plan
