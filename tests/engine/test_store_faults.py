"""The engine over a database that refuses one run's writes: the others go on at once."""

from __future__ import annotations

import asyncio

from sagaline import Engine, RunStatus, step, workflow
from tests.conftest import MakeEngine
from tests.store.poison import poison

PROMPTLY = 10.0
"""Well under the lease: a run held up by a failed commit would wait out its lease."""


@step(name="store_faults.book")
async def book(key: str) -> str:
    await asyncio.sleep(0.01)
    return f"booked-{key}"


BOOKED: list[str] = []


@step(name="store_faults.counted_book")
async def counted_book(key: str) -> str:
    BOOKED.append(key)
    return f"booked-{key}"


@workflow(name="store_faults.counted")
async def counted(key: str) -> str:
    return await counted_book(key)


@workflow(name="store_faults.two_steps")
async def two_steps(key: str) -> str:
    first = await book(key)
    second = await book(f"{key}-again")
    return f"{first}+{second}"


async def test_a_run_whose_checkpoint_the_database_refuses_does_not_hold_up_the_others(
    make_engine: MakeEngine, store_url: str
) -> None:
    async with make_engine(worker=False):
        pass  # create the schema, so the trigger has a table to sit on
    await poison(store_url, "steps", "poisoned")
    engine: Engine
    async with make_engine(lease_seconds=60.0) as engine:
        keys = [f"k{i}" for i in range(12)]
        handles = await asyncio.gather(
            *(engine.start(two_steps, k, run_id=k) for k in keys[:6]),
            engine.start(two_steps, "poisoned", run_id="poisoned"),
            *(engine.start(two_steps, k, run_id=k) for k in keys[6:]),
        )
        good = [h for h in handles if h.run_id != "poisoned"]
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in good)), PROMPTLY)
        assert results == [f"booked-{k}+booked-{k}-again" for k in keys]
        assert await engine.store.load_steps("poisoned") == []


async def test_a_run_the_database_keeps_refusing_is_parked_with_its_message(
    make_engine: MakeEngine, store_url: str
) -> None:
    async with make_engine(worker=False):
        pass
    await poison(store_url, "steps", "poisoned")
    BOOKED.clear()
    async with make_engine(lease_seconds=60.0) as engine:
        await engine.start(counted, "poisoned", run_id="poisoned")
        run = await engine.wait("poisoned", timeout=PROMPTLY)  # parked, not a lease later
    assert run.status is RunStatus.BLOCKED
    assert run.error is not None and run.error["type"] == "CheckpointRejected"
    assert "poisoned" in run.error["message"]
    assert BOOKED == ["poisoned"]  # its step ran once: the commit was retried, not the step
