"""Signals are kept only for runs that may still wait for one, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import sagaline
from sagaline import Engine, InvalidOperationError, RunNotFoundError, RunStatus, workflow
from sagaline.model import events as ev
from sagaline.model.records import Checkpoint, NewEvent, NewRun, RunChange
from sagaline.store import open_store
from sagaline.store.protocol import Store
from tests.conftest import MakeEngine

DEADLINE = 30.0
OWNER = "worker-1"


@workflow(name="store_signals.quick")
async def quick(key: str) -> str:
    return f"done-{key}"


@workflow(name="store_signals.waits")
async def waits(key: str) -> str:
    got: str = await sagaline.wait_for_signal("approved", type=str)
    return f"{key} approved by {got}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url)
    await store.open()
    yield store
    await store.aclose()


async def status_becomes(engine: Engine, run_id: str, status: RunStatus) -> None:
    async def check() -> None:
        while (await engine.get_run(run_id)).status is not status:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(check(), DEADLINE)


async def test_the_store_keeps_a_signal_only_in_an_allowed_status(store: Store) -> None:
    await store.create_runs([(NewRun("r1", "wf", b"{}", "default", 100.0), None)], 60)
    assert await store.send_signal("r1", "go", b'"x"', 101.0, [RunStatus.RUNNING]) is (
        RunStatus.PENDING
    )
    assert await store.load_signals("r1") == []
    assert [e.type for e in await store.read_events("r1")] == ["RunStarted"]

    allowed = [RunStatus.PENDING, RunStatus.RUNNING]
    assert await store.send_signal("r1", "go", b'"y"', 102.0, allowed) is RunStatus.PENDING
    assert [s.payload for s in await store.load_signals("r1")] == [b'"y"']
    assert [e.type for e in await store.read_events("r1")] == ["RunStarted", "SignalReceived"]

    assert await store.send_signal("nope", "go", b"1", 103.0, list(RunStatus)) is None


async def test_a_signal_to_a_completed_run_is_refused_and_leaves_no_trace(
    engine: Engine,
) -> None:
    handle = await engine.start(quick, "q1", run_id="q1")
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "done-q1"
    before = await engine.history("q1")
    with pytest.raises(InvalidOperationError) as refused:
        await engine.signal("q1", "approved", "ana")
    assert str(refused.value) == (
        "run 'q1' already ended COMPLETED; the signal 'approved' was not kept"
    )
    assert await engine.history("q1") == before
    assert await engine.store.load_signals("q1") == []


async def test_a_signal_to_a_suspended_run_still_wakes_it(engine: Engine) -> None:
    handle = await engine.start(waits, "w1", run_id="w1")
    await status_becomes(engine, "w1", RunStatus.SUSPENDED)
    await engine.signal("w1", "approved", "ana")
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "w1 approved by ana"
    types = [e.type for e in await engine.history("w1")]
    assert types.count("SignalReceived") == 1
    assert types.index("SignalReceived") < types.index("RunCompleted")


async def test_a_signal_to_an_unwinding_run_is_refused(make_engine: MakeEngine) -> None:
    async with make_engine(worker=False) as engine:
        new = NewRun("u1", quick.name, b'["u1"]', "default", 100.0)
        await engine.store.create_runs([(new, OWNER)], 60)
        unwind = Checkpoint(
            "u1",
            OWNER,
            1,
            events=[NewEvent(ev.RunCompensating(error={}, steps=[]), 101.0)],
            change=RunChange(RunStatus.COMPENSATING),
        )
        (result,) = await engine.store.commit([unwind])
        assert result.landed
        with pytest.raises(InvalidOperationError, match="'u1' is unwinding, now COMPENSATING"):
            await engine.signal("u1", "approved", "ana")
        assert await engine.store.load_signals("u1") == []
        with pytest.raises(RunNotFoundError):
            await engine.signal("nope", "approved", "ana")


async def test_a_pending_run_may_be_signalled_before_it_waits(make_engine: MakeEngine) -> None:
    async with make_engine(worker=False) as client:
        handle = await client.start(waits, "p1", run_id="p1")
        await client.signal("p1", "approved", "early")
    async with make_engine() as engine:
        assert await asyncio.wait_for(engine.handle(handle.run_id).result(), DEADLINE) == (
            "p1 approved by early"
        )
