"""Long retry backoffs sleep in the database, not in memory: the run suspends with a stored
wake-up between two attempts, any worker takes the retry up when it is due (a worker
that stops meanwhile loses nothing), and a fake clock drives it.

Every test runs on SQLite and PostgreSQL (the ``make_engine`` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sagaline import Engine, RetryPolicy, RunFailedError, RunStatus, step, workflow
from sagaline.testing import FakeClock
from tests.conftest import MakeEngine

DEADLINE = 30.0
HOUR = RetryPolicy(max_attempts=3, initial=3600.0, backoff=2.0, max_interval=7200.0, jitter=0)
FAILURES: dict[str, int] = {}
CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    FAILURES.clear()
    CALLS.clear()
    yield


@step(name="backoff.flaky", retry=HOUR)
async def flaky(key: str) -> str:
    CALLS.append(key)
    if FAILURES.get(key, 0) > 0:
        FAILURES[key] -= 1
        raise ConnectionError(f"gateway down for {key}")
    return f"charged {key}"


@step(name="backoff.reserve")
async def reserve(key: str) -> str:
    return f"reserved {key}"


@reserve.compensate
async def release(key: str, reservation: str) -> None:
    CALLS.append(f"release {key}")


@workflow(name="backoff.order")
async def order(key: str) -> str:
    await reserve(key)
    return await flaky(key)


@step(name="backoff.hold")
async def hold(key: str) -> str:
    return f"held {key}"


@hold.compensate(retry=HOUR)
async def unhold(key: str, held: str) -> None:
    CALLS.append(f"unhold {key}")
    if FAILURES.get(f"unhold {key}", 0) > 0:
        FAILURES[f"unhold {key}"] -= 1
        raise ConnectionError("inventory service down")


@step(name="backoff.refuse", retry=RetryPolicy(max_attempts=1))
async def refuse(key: str) -> None:
    raise ValueError(f"{key} refused")


@workflow(name="backoff.unwinds")
async def unwinds(key: str) -> None:
    await hold(key)
    await refuse(key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


async def suspended(engine: Engine, run_id: str, attempts: int = 1) -> None:
    """Until the run sleeps in the database after its ``attempts``-th failed attempt."""

    async def check() -> None:
        while True:
            rows = [s for s in await engine.store.load_steps(run_id) if s.name == "backoff.flaky"]
            run = await engine.get_run(run_id)
            if rows and rows[0].attempts == attempts and run.status is RunStatus.SUSPENDED:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(check(), DEADLINE)


async def test_an_hour_long_backoff_suspends_the_run_and_the_clock_resumes_it(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    FAILURES["k1"] = 2
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(order, "k1", run_id="k1")
        await suspended(engine, "k1")
        run = await engine.get_run("k1")
        assert run.owner is None  # no worker holds it while it backs off
        assert run.wake_at == pytest.approx(clock() + 3600, abs=1)
        waiting = [s for s in await engine.store.load_steps("k1") if s.name == "backoff.flaky"]
        assert waiting[0].status.value == "WAITING" and waiting[0].attempts == 1
        assert waiting[0].error is not None
        assert waiting[0].error["message"] == "gateway down for k1"

        clock.advance(3600)  # the second attempt fails too: the next backoff is two hours
        await suspended(engine, "k1", attempts=2)
        assert (await engine.get_run("k1")).wake_at == pytest.approx(clock() + 7200, abs=1)
        clock.advance(7200)
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "charged k1"
    assert CALLS == ["k1", "k1", "k1"]


async def test_the_attempt_count_holds_across_sleeps_and_the_last_failure_compensates(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    FAILURES["k2"] = 5
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(order, "k2", run_id="k2")
        for attempts, wait in ((1, 3600), (2, 7200)):
            await suspended(engine, "k2", attempts)
            clock.advance(wait)
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(handle.result(), DEADLINE)
        assert info.value.status is RunStatus.COMPENSATED
        flaky_rows = [s for s in await engine.store.load_steps("k2") if s.name == "backoff.flaky"]
        assert flaky_rows[0].status.value == "FAILED" and flaky_rows[0].attempts == 3
        kinds = [e.type for e in await engine.history("k2")]
        assert kinds.count("StepAttemptFailed") == 2 and kinds.count("StepStarted") == 2
    assert CALLS == ["k2", "k2", "k2", "release k2"]


async def test_a_backoff_survives_its_worker_and_another_takes_the_retry_up(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    FAILURES["k3"] = 1
    async with make_engine(clock=clock) as first:
        await first.start(order, "k3", run_id="k3")
        await suspended(first, "k3")
    async with make_engine(clock=clock) as second:  # the first worker is gone
        clock.advance(3600)
        run = await second.wait("k3", timeout=DEADLINE)
        assert run.status is RunStatus.COMPLETED
    assert CALLS == ["k3", "k3"]


async def test_a_short_backoff_still_sleeps_in_memory(make_engine: MakeEngine) -> None:
    FAILURES["k4"] = 1
    async with make_engine(durable_backoff_after=7200.0) as engine:
        await engine.start(order, "k4", run_id="k4")

        async def first_failed() -> None:
            while not CALLS:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(first_failed(), DEADLINE)
        await asyncio.sleep(0.2)
        run = await engine.get_run("k4")
        assert run.status is RunStatus.RUNNING and run.owner is not None  # held, in memory


async def test_a_cancel_during_a_durable_backoff_compensates_at_once(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    FAILURES["k5"] = 1
    async with make_engine(clock=clock) as engine:
        await engine.start(order, "k5", run_id="k5")
        await suspended(engine, "k5")
        await engine.cancel("k5", reason="customer left", by="tests")
        run = await engine.wait("k5", timeout=DEADLINE)  # no clock advance needed
        assert run.status is RunStatus.CANCELLED
    assert CALLS == ["k5", "release k5"]


async def test_a_compensation_backing_off_for_an_hour_sleeps_in_the_database(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    FAILURES["unhold k6"] = 1
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(unwinds, "k6", run_id="k6")

        async def sleeping() -> None:
            while True:
                run = await engine.get_run("k6")
                rows = [
                    s for s in await engine.store.load_steps("k6") if s.kind.value == "compensation"
                ]
                if run.status is RunStatus.SUSPENDED and rows and rows[0].status.value == "WAITING":
                    return
                await asyncio.sleep(0.01)

        await asyncio.wait_for(sleeping(), DEADLINE)
        run = await engine.get_run("k6")
        assert run.owner is None and run.wake_at == pytest.approx(clock() + 3600, abs=1)
        clock.advance(3600)
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(handle.result(), DEADLINE)
        assert info.value.status is RunStatus.COMPENSATED
        rows = [s for s in await engine.store.load_steps("k6") if s.kind.value == "compensation"]
        assert [(r.status.value, r.attempts) for r in rows] == [("SUCCEEDED", 2)]
        kinds = [e.type for e in await engine.history("k6")]
        assert kinds.count("CompensationStarted") == 1
        assert kinds.count("CompensationAttemptFailed") == 1
    assert CALLS == ["unhold k6", "unhold k6"]


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(Exception, match="durable_backoff_after"):
        Engine("sqlite:///:memory:", durable_backoff_after=-1)
