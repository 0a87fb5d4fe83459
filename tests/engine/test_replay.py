"""Replay: a run resumed by another engine continues from its recorded history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sagaline import Engine, NonDeterminismError, PayloadEncodeError, RunFailedError, RunStatus
from tests.conftest import MakeEngine
from tests.engine import sagas_replay as r

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    r.VERSION["v"] = 1
    r.OBSERVED.clear()
    r.EXECUTED.clear()
    r.GATE.clear()
    r.change_result_type(int)
    yield


async def _interrupt_at_gate(make_engine: MakeEngine, wf: object, key: str) -> None:
    """Run until the gated step, then shut the engine down mid-step (as a deploy would)."""
    r.GATE[key] = asyncio.Event()
    first = make_engine()
    async with first:
        await first.start(wf, key, run_id=key)  # type: ignore[call-overload]
        while "gated" not in r.EXECUTED:
            await asyncio.sleep(0.01)
    r.GATE[key].set()


async def test_recorded_steps_return_recorded_results_without_running(
    make_engine: MakeEngine,
) -> None:
    await _interrupt_at_gate(make_engine, r.versioned, "ada")
    async with make_engine() as second:
        assert await second.handle("ada").result() == "ada:100"
    assert r.EXECUTED == ["a", "customer", "gated", "gated"]
    first_run, replay = r.OBSERVED
    assert first_run == replay  # the same values, decoded to the same types, both times
    assert isinstance(replay[0], r.Money) and isinstance(replay[1], r.Customer)


async def test_changed_code_blocks_the_run_with_a_nondeterminism_error(
    make_engine: MakeEngine,
) -> None:
    await _interrupt_at_gate(make_engine, r.versioned, "bob")
    r.VERSION["v"] = 2
    async with make_engine() as second:
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(second.handle("bob").result(), DEADLINE)
        assert info.value.status is RunStatus.BLOCKED
        assert info.value.cause["type"] == NonDeterminismError.__name__
        message = info.value.cause["message"]
        assert "'r.a'" in message and "'r.b'" in message and "#1" in message
        assert "b" not in r.EXECUTED  # nothing ran in a new order

        r.VERSION["v"] = 1  # the right code is deployed again
        await second.retry("bob")
        assert await asyncio.wait_for(second.handle("bob").result(), DEADLINE) == "bob:100"


async def test_history_that_does_not_decode_blocks_the_run(make_engine: MakeEngine) -> None:
    await _interrupt_at_gate(make_engine, r.changing_wf, "cy")
    r.change_result_type(list)  # the step's declared result type changed under the run
    async with make_engine() as second:
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(second.handle("cy").result(), DEADLINE)
    assert info.value.status is RunStatus.BLOCKED
    assert info.value.cause["type"] == "PayloadDecodeError"
    assert "'list'" in info.value.cause["message"]


async def test_unencodable_argument_fails_at_the_step_call(engine: Engine) -> None:
    handle = await engine.start(r.unencodable, "dee")
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert info.value.status is RunStatus.FAILED
    assert info.value.cause["type"] == PayloadEncodeError.__name__
    assert "r.takes_anything" in info.value.cause["message"]
    assert "'object'" in info.value.cause["message"]
    assert r.EXECUTED == []


async def test_recovered_run_decodes_workflow_input_to_its_type(make_engine: MakeEngine) -> None:
    async with make_engine(worker=False) as client:
        await client.start(r.versioned, "eve", run_id="eve")
    r.GATE["eve"] = asyncio.Event()
    r.GATE["eve"].set()
    async with make_engine() as worker:
        assert await asyncio.wait_for(worker.handle("eve").result(), DEADLINE) == "eve:100"
