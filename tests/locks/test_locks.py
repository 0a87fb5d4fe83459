"""Semantic locks on both stores: exclusion, FIFO, shared holders, timeouts, deadlocks,
and release on completion, compensation, cancel and by an operator's hand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

import sagaline
from sagaline import DeadlockError, Engine, LockTimeoutError, RunStatus
from sagaline.model.locks import NewLock, ReleaseLock
from sagaline.model.records import Checkpoint, StepRecord
from sagaline.model.status import StepKind, StepStatus
from sagaline.testing import FakeClock
from tests.conftest import MakeEngine
from tests.locks import sagas as s

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    s.LEDGER.clear()
    s.FLAGS["fail_undo"] = False
    yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


async def until(engine: Engine, run_id: str, *statuses: RunStatus) -> None:
    async def check() -> None:
        while (await engine.get_run(run_id)).status not in statuses:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(check(), DEADLINE)


async def waiting_for(engine: Engine, key: str, *run_ids: str) -> None:
    """Until exactly ``run_ids`` wait for ``key``, in that order, and each is suspended."""

    async def check() -> None:
        while True:
            info = await engine.locks(key)
            if [w.run_id for w in info.waiters] == list(run_ids):
                runs = [await engine.get_run(r) for r in run_ids]
                if all(r.status is RunStatus.SUSPENDED for r in runs):
                    return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(check(), DEADLINE)


async def test_an_uncontended_lock_is_taken_and_released(engine: Engine) -> None:
    handle = await engine.start(s.quick, "a", "order:1", None, run_id="a")
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "a"
    info = await engine.locks("order:1")
    assert info.free and info.holders == [] and info.waiters == []
    types = [e.type for e in await engine.history("a")]
    assert types.index("LockAcquired") < types.index("StepSucceeded") < types.index("LockReleased")


async def test_exclusive_holders_never_overlap_and_waiters_go_in_arrival_order(
    engine: Engine,
) -> None:
    await engine.start(s.hold, "a", "sku:A-17", "exclusive", run_id="a")
    await until(engine, "a", RunStatus.SUSPENDED)
    for who in ("b", "c", "d"):
        await engine.start(s.hold, who, "sku:A-17", "exclusive", run_id=who)
        await until(engine, who, RunStatus.SUSPENDED)
    await waiting_for(engine, "sku:A-17", "b", "c", "d")
    info = await engine.locks("sku:A-17")
    assert [(h.run_id, h.mode, h.run_status) for h in info.holders] == [
        ("a", "exclusive", "SUSPENDED")
    ]
    assert info.holders[0].granted_at is not None
    for who, rest in (("a", ["c", "d"]), ("b", ["d"]), ("c", []), ("d", [])):
        await engine.signal(who, "go")
        await until(engine, who, RunStatus.COMPLETED)
        if rest:
            await waiting_for(engine, "sku:A-17", *rest)
    reserves = [e for e in s.LEDGER if not e.startswith("undo")]
    assert reserves == [
        "reserve:a:sku:A-17",
        "release:a",
        "reserve:b:sku:A-17",
        "release:b",
        "reserve:c:sku:A-17",
        "release:c",
        "reserve:d:sku:A-17",
        "release:d",
    ]
    assert (await engine.locks("sku:A-17")).free


async def test_shared_holders_share_and_an_exclusive_one_waits_for_all_of_them(
    engine: Engine,
) -> None:
    for who in ("r1", "r2"):
        await engine.start(s.hold, who, "doc:9", "shared", run_id=who)
        await until(engine, who, RunStatus.SUSPENDED)
    await engine.start(s.hold, "w", "doc:9", "exclusive", run_id="w")
    await waiting_for(engine, "doc:9", "w")
    # A shared request behind a waiting exclusive one waits too: no starving the writer.
    await engine.start(s.hold, "r3", "doc:9", "shared", run_id="r3")
    await waiting_for(engine, "doc:9", "w", "r3")
    info = await engine.locks("doc:9")
    assert sorted(h.run_id for h in info.holders) == ["r1", "r2"]
    await engine.signal("r1", "go")
    await until(engine, "r1", RunStatus.COMPLETED)
    await waiting_for(engine, "doc:9", "w", "r3")  # r2 still holds it
    await engine.signal("r2", "go")
    await waiting_for(engine, "doc:9", "r3")
    assert [h.run_id for h in (await engine.locks("doc:9")).holders] == ["w"]
    await engine.signal("w", "go")
    await waiting_for(engine, "doc:9")
    await engine.signal("r3", "go")
    await until(engine, "r3", RunStatus.COMPLETED)


async def test_a_lock_wait_times_out_and_the_run_compensates(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        await engine.start(s.hold, "a", "order:2", "exclusive", run_id="a")
        await until(engine, "a", RunStatus.SUSPENDED)
        await engine.start(s.quick, "b", "order:2", 60.0, run_id="b")
        await waiting_for(engine, "order:2", "b")
        clock.advance(61)
        await until(engine, "b", RunStatus.FAILED, RunStatus.COMPENSATED)
        run = await engine.get_run("b")
        assert run.error is not None and run.error["type"] == "LockTimeoutError"
        info = await engine.locks("order:2")
        assert [h.run_id for h in info.holders] == ["a"] and info.waiters == []
        await engine.signal("a", "go")
        await until(engine, "a", RunStatus.COMPLETED)
    assert "reserve:b:order:2" not in s.LEDGER


async def test_the_lock_stays_held_while_the_failed_run_compensates(engine: Engine) -> None:
    await engine.start(s.hold_then_fail, "a", "order:3", run_id="a")
    await until(engine, "a", RunStatus.SUSPENDED)
    await engine.start(s.quick, "b", "order:3", None, run_id="b")
    await waiting_for(engine, "order:3", "b")
    await engine.signal("a", "go")
    await until(engine, "b", RunStatus.COMPLETED)
    assert (await engine.get_run("a")).status is RunStatus.COMPENSATED
    assert s.LEDGER.index("undo:a:order:3") < s.LEDGER.index("reserve:b:order:3")
    assert (await engine.locks("order:3")).free


async def test_cancel_releases_the_lock_after_compensating(engine: Engine) -> None:
    await engine.start(s.hold, "a", "order:4", "exclusive", run_id="a")
    await until(engine, "a", RunStatus.SUSPENDED)
    await engine.start(s.quick, "b", "order:4", None, run_id="b")
    await waiting_for(engine, "order:4", "b")
    await engine.cancel("a", reason="customer called")
    await until(engine, "b", RunStatus.COMPLETED)
    assert (await engine.get_run("a")).status is RunStatus.CANCELLED
    assert s.LEDGER.index("undo:a:order:4") < s.LEDGER.index("reserve:b:order:4")


async def test_a_parked_holder_keeps_the_lock_until_an_operator_ends_it(engine: Engine) -> None:
    s.FLAGS["fail_undo"] = True
    await engine.start(s.hold_then_fail, "a", "order:5", run_id="a")
    await until(engine, "a", RunStatus.SUSPENDED)
    await engine.start(s.quick, "b", "order:5", None, run_id="b")
    await waiting_for(engine, "order:5", "b")
    await engine.signal("a", "go")
    await until(engine, "a", RunStatus.COMPENSATION_FAILED)
    info = await engine.locks("order:5")
    assert [(h.run_id, h.run_status) for h in info.holders] == [("a", "COMPENSATION_FAILED")]
    assert [w.run_id for w in info.waiters] == ["b"]
    await engine.skip_compensation("a", reason="refunded by hand", by="ops")
    await until(engine, "b", RunStatus.COMPLETED)
    assert (await engine.locks("order:5")).free


async def test_the_same_key_twice_in_a_run_replays_without_dropping_the_second(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        await engine.start(s.sequence, "a", "order:6", run_id="a")
        await until(engine, "a", RunStatus.SUSPENDED)
        assert [h.run_id for h in (await engine.locks("order:6")).holders] == ["a"]
    async with make_engine() as engine:  # another worker replays the run from its history
        await engine.signal("a", "go")
        await until(engine, "a", RunStatus.COMPLETED)
        assert (await engine.locks("order:6")).free
    assert s.LEDGER == ["reserve:a:first", "reserve:a:second"]


async def test_taking_a_held_key_again_fails_the_run_with_a_clear_error(engine: Engine) -> None:
    handle = await engine.start(s.twice, "order:7", run_id="a")
    with pytest.raises(sagaline.RunFailedError):
        await asyncio.wait_for(handle.result(), DEADLINE)
    run = await engine.get_run("a")
    assert run.error is not None and "already holds or waits for lock 'order:7'" in str(run.error)
    assert (await engine.locks("order:7")).free


async def test_two_runs_waiting_on_each_other_unwind_the_youngest(engine: Engine) -> None:
    await engine.start(s.pair, "old", "k1", "k2", run_id="old")
    await until(engine, "old", RunStatus.SUSPENDED)
    await engine.start(s.pair, "young", "k2", "k1", run_id="young")
    await until(engine, "young", RunStatus.SUSPENDED)
    await engine.signal("old", "go")
    await waiting_for(engine, "k2", "old")
    await engine.signal("young", "go")  # closes the cycle: the young one is refused
    await until(engine, "old", RunStatus.COMPLETED)
    young = await engine.get_run("young")
    assert young.status is RunStatus.COMPENSATED
    assert young.error is not None and young.error["type"] == "DeadlockError"
    assert "'young' -> 'old' -> 'young'" in young.error["message"]
    assert "undo:young:k2" in s.LEDGER
    assert (await engine.locks("k1")).free and (await engine.locks("k2")).free
    assert await engine.list_locks() == []  # the refused wait's row went with its run


async def test_a_cycle_closed_by_the_oldest_run_still_unwinds_the_youngest(
    engine: Engine,
) -> None:
    runs = [("r1", "x", "y"), ("r2", "y", "z"), ("r3", "z", "x")]
    for who, first, second in runs:
        await engine.start(s.pair, who, first, second, run_id=who)
        await until(engine, who, RunStatus.SUSPENDED)
    await engine.signal("r3", "go")
    await waiting_for(engine, "x", "r3")
    await engine.signal("r2", "go")
    await waiting_for(engine, "z", "r2")
    await engine.signal("r1", "go")  # r1 -> r2 -> r3 -> r1: r3, the youngest, gives way
    for who in ("r1", "r2"):
        await until(engine, who, RunStatus.COMPLETED)
    r3 = await engine.get_run("r3")
    assert r3.status is RunStatus.COMPENSATED
    assert r3.error is not None and r3.error["type"] == "DeadlockError"
    for key in "xyz":
        assert (await engine.locks(key)).free
    assert await engine.list_locks() == []


async def test_locks_are_listed_by_key_prefix(engine: Engine) -> None:
    await engine.start(s.hold, "a", "order:10", "exclusive", run_id="a")
    await engine.start(s.hold, "b", "sku:10", "exclusive", run_id="b")
    for who in ("a", "b"):
        await until(engine, who, RunStatus.SUSPENDED)
    assert [r.key for r in await engine.list_locks("order:")] == ["order:10"]
    assert [r.key for r in await engine.list_locks()] == ["order:10", "sku:10"]
    assert await engine.list_locks("zzz") == []
    with pytest.raises(sagaline.InvalidNameError):
        await engine.locks("bad\nkey")


async def test_lock_outside_a_workflow_says_where_it_works() -> None:
    with pytest.raises(sagaline.SagalineError, match="outside a running workflow"):
        await sagaline.acquire("order:1")


def test_errors_are_exported() -> None:
    assert issubclass(DeadlockError, sagaline.SagalineError)
    assert issubclass(LockTimeoutError, sagaline.SagalineError)


async def test_cancelling_a_run_parked_after_its_pivot_releases_its_lock(engine: Engine) -> None:
    await engine.start(s.ship_then_fail, "a", "order:8", run_id="a")
    await until(engine, "a", RunStatus.FAILED_AFTER_PIVOT)
    await engine.start(s.quick, "b", "order:8", None, run_id="b")
    await waiting_for(engine, "order:8", "b")
    holders = (await engine.locks("order:8")).holders
    assert [(h.run_id, h.run_status) for h in holders] == [("a", "FAILED_AFTER_PIVOT")]
    await engine.cancel("a", reason="shipped by hand")  # closes the run: nothing undone
    await until(engine, "b", RunStatus.COMPLETED)
    assert (await engine.get_run("a")).status is RunStatus.CANCELLED
    assert (await engine.locks("order:8")).free


async def test_cancelling_a_run_that_waits_for_a_lock_takes_it_out_of_the_queue(
    engine: Engine,
) -> None:
    await engine.start(s.hold, "a", "order:9", "exclusive", run_id="a")
    await until(engine, "a", RunStatus.SUSPENDED)
    for who in ("b", "c"):
        await engine.start(s.quick, who, "order:9", None, run_id=who)
        await until(engine, who, RunStatus.SUSPENDED)
    await waiting_for(engine, "order:9", "b", "c")
    await engine.cancel("b")
    await until(engine, "b", RunStatus.CANCELLED)
    await waiting_for(engine, "order:9", "c")
    await engine.signal("a", "go")
    await until(engine, "c", RunStatus.COMPLETED)
    assert "reserve:b:order:9" not in s.LEDGER


async def test_a_lock_write_from_a_worker_that_lost_the_lease_lands_nothing(
    engine: Engine,
) -> None:
    await engine.start(s.hold, "a", "order:11", "exclusive", run_id="a")
    await until(engine, "a", RunStatus.SUSPENDED)
    run = await engine.get_run("a")
    row = StepRecord(
        seq=99,
        name="order:12",
        kind=StepKind.LOCK,
        status=StepStatus.WAITING,
        input=None,
        output=None,
        error=None,
        attempts=0,
        compensable=False,
        pivot=False,
        compensates_seq=None,
        done_index=99,
        started_at=run.created_at,
        finished_at=run.created_at,
        branch="",
    )
    stale = [
        Checkpoint("a", "a-dead-worker", run.lease_epoch, [row], lock_ops=[request]),
        Checkpoint("a", "a-dead-worker", run.lease_epoch, lock_ops=[release]),
    ]
    for cp in stale:
        (result,) = await engine.store.commit([cp])
        assert not result.landed and result.locks == ()
    assert await engine.list_locks("order:12") == []
    assert [h.run_id for h in (await engine.locks("order:11")).holders] == ["a"]


request = NewLock("order:12", "a", 99, "exclusive", 0.0)
release = ReleaseLock("order:11", "a", 0.0)
