"""A queue's concurrency limit holds across several workers sharing one database.

The scale suite checks this with worker processes; this runs on every store in the fast
suite, so a change to the claim path that lets limited runs through shows up at once.
"""

from __future__ import annotations

import asyncio

from sagaline import RunStatus, step, workflow
from tests.conftest import MakeEngine

DEADLINE = 60.0
RUNNING: set[str] = set()
PEAK: list[int] = [0]


@step(name="limits.hold")
async def hold(name: str) -> str:
    RUNNING.add(name)
    PEAK[0] = max(PEAK[0], len(RUNNING))
    await asyncio.sleep(0.05)
    RUNNING.discard(name)
    return name


@workflow(name="limits.limited", queue="limits")
async def limited(name: str) -> str:
    return await hold(name)


async def test_three_workers_never_run_more_than_the_queue_limit(
    make_engine: MakeEngine,
) -> None:
    RUNNING.clear()
    PEAK[0] = 0
    async with make_engine(worker=False) as client:
        await client.set_queue_limit("limits", 2)
        workers = [make_engine(queues=["limits"], concurrency=10) for _ in range(3)]
        for w in workers:
            await w.__aenter__()
        handles = [await client.start(limited, f"r{i}", run_id=f"r{i}") for i in range(24)]
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), DEADLINE)
        assert results == [f"r{i}" for i in range(24)]
        for h in handles:
            assert (await client.get_run(h.run_id)).status is RunStatus.COMPLETED
    assert 1 <= PEAK[0] <= 2, f"{PEAK[0]} runs of a queue limited to 2 ran at once"


async def test_removing_the_limit_lets_the_queue_run_wide(make_engine: MakeEngine) -> None:
    RUNNING.clear()
    PEAK[0] = 0
    async with make_engine(worker=False) as client:
        await client.set_queue_limit("limits", 1)
        await client.set_queue_limit("limits", None)
        assert "limits" not in await client.queue_limits()
        async with make_engine(queues=["limits"], concurrency=10) as w:
            handles = [await w.start(limited, f"w{i}", run_id=f"w{i}") for i in range(10)]
            await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), DEADLINE)
    assert PEAK[0] >= 2
