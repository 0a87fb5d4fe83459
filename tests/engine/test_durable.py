"""Durable execution: timers, signals, children, parallel branches, versioning, schedules.

Timers run on a FakeClock: a 30-day sleep takes milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sagaline import Engine, RunFailedError, RunNotFoundError, RunStatus
from sagaline.model.records import EventRecord
from sagaline.testing import FakeClock
from tests.conftest import MakeEngine
from tests.engine import sagas_durable as d

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    d.CALLS.clear()
    d.SEEN.clear()
    d.FLAGS["patched_code"] = False
    yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))


async def status_becomes(engine: Engine, run_id: str, status: RunStatus) -> None:
    async def check() -> None:
        while True:
            runs = [r for r in await engine.list_runs(limit=1000) if r.run_id == run_id]
            if runs and runs[0].status is status:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(check(), DEADLINE)


async def test_thirty_day_sleep_suspends_then_resumes_by_replay(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(d.sleeper, "s1", 30.0, run_id="s1")
        await status_becomes(engine, "s1", RunStatus.SUSPENDED)
        run = await engine.get_run("s1")
        assert run.owner is None  # released from the worker
        assert run.wake_at == pytest.approx(clock() + 30 * 86400, abs=1)
        clock.advance(timedelta(days=29))
        await asyncio.sleep(0.2)
        assert (await handle.status()) is RunStatus.SUSPENDED  # not due yet
        clock.advance(timedelta(days=1))
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "done-s1"
    assert d.CALLS == ["book:s1", "finish:s1"]  # book was replayed, not re-run
    types = [e.type for e in await engine_history(make_engine, "s1")]
    assert types.count("RunSuspended") == 1 and types.count("TimerFired") == 1


async def engine_history(make_engine: MakeEngine, run_id: str) -> list[EventRecord]:
    async with make_engine(worker=False) as client:
        return list(await client.history(run_id))


async def test_now_and_uuid4_are_the_same_on_replay(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(d.sleeper, "s2", 1.0)
        await status_becomes(engine, handle.run_id, RunStatus.SUSPENDED)
        clock.advance(timedelta(days=2))
        await asyncio.wait_for(handle.result(), DEADLINE)
    (now_first, uuid_first) = d.SEEN[0]
    assert isinstance(now_first, datetime) and uuid_first.version == 4
    # The first run never got past the sleep; the replay recorded what it saw before it.
    assert len(d.SEEN) == 1


async def test_signal_wakes_a_waiting_run_with_a_typed_payload(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(d.approval, "a1", 3600.0)
        await status_becomes(engine, handle.run_id, RunStatus.SUSPENDED)
        await engine.signal(handle.run_id, "approved", d.Approval("ana", 500))
        granted = await asyncio.wait_for(handle.result(), DEADLINE)
    assert granted == d.Approval("ana", 500)
    assert d.CALLS == ["book:a1", "finish:a1"]


async def test_signal_sent_before_the_wait_is_kept(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(d.sleep_then_signal, "k1")
        await status_becomes(engine, handle.run_id, RunStatus.SUSPENDED)
        await engine.signal(handle.run_id, "go", "early bird")  # the run is still asleep
        clock.advance(120)
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "early bird"


async def test_each_signal_is_consumed_exactly_once(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(d.two_waits, "c1")
        await status_becomes(engine, handle.run_id, RunStatus.SUSPENDED)
        await engine.signal(handle.run_id, "item", "only one")

        async def second_wait() -> None:
            while "RunSuspended" not in [e.type for e in (await engine.history(handle.run_id))[3:]]:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(second_wait(), DEADLINE)
        clock.advance(11)
        assert await asyncio.wait_for(handle.result(), DEADLINE) == ["only one", "timed out"]


async def test_signal_timeout_raises_and_the_saga_compensates(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(d.approval, "t1", 60.0)
        await status_becomes(engine, handle.run_id, RunStatus.SUSPENDED)
        clock.advance(61)
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(handle.result(), DEADLINE)
    assert info.value.status is RunStatus.COMPENSATED
    assert info.value.cause["type"] == "SignalTimeoutError"
    assert d.CALLS == ["book:t1", "unbook:t1"]


async def test_signal_racing_a_timeout_yields_exactly_one_outcome(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        handles = [await engine.start(d.approval, f"r{i}", 60.0) for i in range(10)]
        for h in handles:
            await status_becomes(engine, h.run_id, RunStatus.SUSPENDED)
        clock.advance(61)  # every deadline passes while the signals are on their way
        await asyncio.gather(
            *(engine.signal(h.run_id, "approved", d.Approval("x", 1)) for h in handles)
        )
        for h in handles:
            run = await engine.wait(h.run_id, timeout=DEADLINE)
            events = [e.type for e in await engine.history(h.run_id)]
            outcomes = events.count("SignalConsumed") + events.count("SignalTimedOut")
            assert outcomes == 1, events
            if "SignalConsumed" in events:
                assert run.status is RunStatus.COMPLETED
            else:
                assert run.status is RunStatus.COMPENSATED


async def test_signal_to_an_unknown_run_is_refused(engine: Engine) -> None:
    with pytest.raises(RunNotFoundError):
        await engine.signal("nope", "approved", None)


async def test_parent_awaits_its_child(engine: Engine) -> None:
    handle = await engine.start(d.parent, "p1", False)
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "parent got done-p1-c"
    child = await engine.get_run("p1" if False else f"{handle.run_id}/2")
    assert child.parent_run_id == handle.run_id and child.status is RunStatus.COMPLETED


async def test_parent_may_catch_its_childs_failure(engine: Engine) -> None:
    handle = await engine.start(d.parent, "p2", True)
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "child COMPENSATED"
    assert d.CALLS == ["book:p2", "book:p2-c", "unbook:p2-c"]


async def test_cancelling_a_parent_cancels_and_compensates_its_child(engine: Engine) -> None:
    handle = await engine.start(d.parent_of_waiter, "p3", run_id="p3")
    await status_becomes(engine, "p3-child", RunStatus.SUSPENDED)
    await status_becomes(engine, "p3", RunStatus.SUSPENDED)
    await engine.cancel("p3")
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert info.value.status is RunStatus.CANCELLED
    child = await engine.wait("p3-child", timeout=DEADLINE)
    assert child.status is RunStatus.CANCELLED
    assert sorted(d.CALLS) == sorted(["book:p3", "book:p3-w", "unbook:p3", "unbook:p3-w"])


async def test_parallel_failure_lets_siblings_finish_then_compensates_completed_branches(
    engine: Engine,
) -> None:
    handle = await engine.start(d.parallel, True)
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert info.value.status is RunStatus.COMPENSATED
    # c was still running when b failed: it finished, and only then did unwinding start.
    assert d.CALLS.index("end:c") < d.CALLS.index("undo:c")
    assert [c for c in d.CALLS if c.startswith("undo")] == ["undo:c", "undo:a"]


async def test_parallel_branches_complete_and_replay_in_order(engine: Engine) -> None:
    handle = await engine.start(d.parallel, False)
    assert await asyncio.wait_for(handle.result(), DEADLINE) == ["a", "b", "c"]
    steps = await engine.steps(handle.run_id)
    assert [s.seq for s in steps] == [1, 2, 3]
    by_done = [s.name for s in sorted(steps, key=lambda s: s.done_index)]
    assert by_done == ["d.branch"] * 3


async def test_patched_keeps_old_runs_on_the_old_path(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    async with make_engine(clock=clock) as engine:
        old = await engine.start(d.versioned, "old")
        await status_becomes(engine, old.run_id, RunStatus.SUSPENDED)
        d.FLAGS["patched_code"] = True  # the change is deployed while "old" sleeps
        new = await engine.start(d.versioned, "new")
        await status_becomes(engine, new.run_id, RunStatus.SUSPENDED)
        clock.advance(3601)
        assert await asyncio.wait_for(old.result(), DEADLINE) == "done-old"
        assert await asyncio.wait_for(new.result(), DEADLINE) == "done-new"
    assert "fraud:old" not in d.CALLS
    assert d.CALLS.count("fraud:new") == 1  # the new path, replayed without re-running


async def test_schedule_starts_one_run_per_period_across_workers(
    make_engine: MakeEngine,
) -> None:
    clock = FakeClock(datetime(2026, 1, 1, 0, 2, tzinfo=UTC))
    async with (
        make_engine(clock=clock, queues=["scheduled"]) as one,
        make_engine(clock=clock, queues=["scheduled"]) as two,
    ):

        async def runs() -> list[str]:
            return sorted(r.run_id for r in await one.list_runs() if "every_five" in r.workflow)

        async def count_is(n: int) -> None:
            while len(await runs()) != n:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(count_is(1), DEADLINE)  # the period that began at 00:00
        clock.advance(timedelta(minutes=5))
        await asyncio.wait_for(count_is(2), DEADLINE)
        clock.advance(timedelta(minutes=32))  # six periods missed: only the latest runs
        await asyncio.wait_for(count_is(3), DEADLINE)
        await asyncio.sleep(0.3)
        assert await runs() == [
            "d.every_five@2026-01-01T00:00Z",
            "d.every_five@2026-01-01T00:05Z",
            "d.every_five@2026-01-01T00:35Z",
        ]
        for run_id in await runs():
            assert (await two.wait(run_id, timeout=DEADLINE)).status is RunStatus.COMPLETED
    assert two is not one


async def test_a_time_skipping_clock_jumps_to_each_timer_when_the_worker_is_idle(
    make_engine: MakeEngine,
) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC), skip=True)
    async with make_engine(clock=clock) as engine:
        start = clock()
        handle = await engine.start(d.sleeper, "skip1", 30.0, run_id="skip1")
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "done-skip1"
        assert clock() - start >= 30 * 86400  # no advance() by hand: the clock skipped
        assert clock() - start < 30 * 86400 + 60


async def test_wait_for_status_waits_for_a_run_to_suspend(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    from sagaline.testing import wait_for_status

    async with make_engine(clock=clock) as engine:
        await engine.start(d.sleeper, "w1", 1.0, run_id="w1")
        run = await wait_for_status(engine, "w1", RunStatus.SUSPENDED)
        assert run.status is RunStatus.SUSPENDED and run.wake_at is not None
        clock.advance(timedelta(days=1))
        assert (await wait_for_status(engine, "w1", RunStatus.COMPLETED)).output is not None
        with pytest.raises(TimeoutError, match=r"did not reach FAILED in 0\.2 s"):
            await wait_for_status(engine, "w1", RunStatus.FAILED, timeout=0.2)
