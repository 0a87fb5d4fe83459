"""``load_steps_many``: a page of runs' steps in one read, exactly as ``load_steps`` each."""

from __future__ import annotations

import asyncio

from sagaline import step, workflow
from tests.conftest import MakeEngine


@step(name="many.one")
async def one(n: int) -> int:
    return n + 1


@step(name="many.two")
async def two(n: int) -> int:
    return n * 2


@workflow(name="many.flow")
async def flow(n: int) -> int:
    total = await one(n)
    for _ in range(n):
        total = await two(total)
    return total


async def test_each_run_gets_its_own_steps_in_order(make_engine: MakeEngine) -> None:
    async with make_engine() as engine:
        handles = [await engine.start(flow, n, run_id=f"m{n}") for n in range(4)]
        await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 30)
        ids = ["m3", "m0", "nobody", "m2", "m1"]
        many = await engine.store.load_steps_many(ids)
        assert list(many) == ids
        assert many["nobody"] == []
        for run_id in ids:
            assert many[run_id] == await engine.store.load_steps(run_id)
        assert [len(many[f"m{n}"]) for n in range(4)] == [1, 2, 3, 4]
        assert await engine.store.load_steps_many([]) == {}
