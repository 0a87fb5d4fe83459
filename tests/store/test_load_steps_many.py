"""``load_steps_many``: a page of runs' steps in one read, exactly as ``load_steps`` each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import sagaline
from sagaline import Engine, step, workflow
from sagaline.store import open_store
from sagaline.store.protocol import Store
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


@workflow(name="many.waits")
async def waits() -> str:
    got: str = await sagaline.wait_for_signal("go", type=str)
    return got


async def test_signals_many_are_each_runs_unconsumed_signals(make_engine: MakeEngine) -> None:
    """What a worker reads for the runs a claim just leased, in one query."""
    async with make_engine() as engine:
        for run_id in ("w1", "w2", "w3"):
            await engine.start(waits, run_id=run_id)
        for run_id in ("w1", "w2", "w3"):
            await asyncio.wait_for(_suspended(engine, run_id), 30)
        await engine.signal("w1", "later", "a")  # another name: stays unconsumed
        await engine.signal("w1", "later", "b")
        await engine.signal("w3", "later", "c")
        ids = ["w3", "nobody", "w1", "w2"]
        many = await engine.store.load_signals_many(ids)
        assert list(many) == ids
        for run_id in ids:
            assert many[run_id] == await engine.store.load_signals(run_id)
        assert [len(many[r]) for r in ids] == [1, 0, 2, 0]
        assert [s.name for s in many["w1"]] == ["later", "later"]  # oldest first
        assert await engine.store.load_signals_many([]) == {}
        await engine.signal("w1", "go", "done")
        assert await asyncio.wait_for(engine.handle("w1").result(), 30) == "done"


async def _suspended(engine: Any, run_id: str) -> None:
    while (await engine.get_run(run_id)).status.value != "SUSPENDED":
        await asyncio.sleep(0.02)


class ReadCounting:
    """A real store that counts the history reads made on it."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.url = inner.url
        self.reads: list[str] = []

    async def load_steps(self, run_id: str) -> Any:
        self.reads.append("load_steps")
        return await self._inner.load_steps(run_id)

    async def load_signals(self, run_id: str) -> Any:
        self.reads.append("load_signals")
        return await self._inner.load_signals(run_id)

    async def load_steps_many(self, run_ids: Sequence[str]) -> Any:
        self.reads.append("load_steps_many")
        return await self._inner.load_steps_many(run_ids)

    async def load_signals_many(self, run_ids: Sequence[str]) -> Any:
        self.reads.append("load_signals_many")
        return await self._inner.load_signals_many(run_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_worker_reads_what_a_claim_leased_in_two_queries(store_url: str) -> None:
    """Runs started elsewhere (here: by a client with no worker) are claimed together; the
    worker reads all their histories at once, not one read each."""
    async with Engine(store_url, worker=False) as client:
        handles = [await client.start(flow, n, run_id=f"c{n}") for n in range(5)]
        store = ReadCounting(open_store(store_url))
        async with Engine(store=store, poll_interval=0.05):
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 30)
    assert results == [1, 4, 12, 32, 80]
    assert "load_steps" not in store.reads and "load_signals" not in store.reads
    assert store.reads.count("load_steps_many") <= 2  # one claim, or a second for stragglers
