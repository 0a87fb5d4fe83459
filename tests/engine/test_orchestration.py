"""Core semantics: the happy path, compensation, retries, pivots, idempotent start, audit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from sagaline import Engine, RunConflictError, RunFailedError, RunStatus
from tests.conftest import MakeEngine
from tests.engine import sagas
from tests.engine.sagas import CALLS, Plan, Receipt, Reservation

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    sagas.ATTEMPTS.clear()
    sagas.GATES.clear()
    yield


async def _types(engine: Engine, run_id: str) -> list[str]:
    return [e.type for e in await engine.history(run_id)]


async def test_happy_path_returns_the_decoded_result(engine: Engine) -> None:
    handle = await engine.start(sagas.order, Plan("o1"), run_id="o1")
    receipt = await asyncio.wait_for(handle.result(), DEADLINE)
    assert receipt == Receipt("o1", Reservation("res-o1", 2), "pay-o1", "track-o1")
    assert isinstance(receipt.reservation, Reservation)
    assert await handle.status() is RunStatus.COMPLETED
    assert CALLS == ["create_order", "reserve", "charge", "ship", "notify"]


async def test_compensations_run_in_reverse_after_step_failure(engine: Engine) -> None:
    handle = await engine.start(sagas.order, Plan("o2", fail_charge=True))
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert info.value.status is RunStatus.COMPENSATED
    assert info.value.cause["message"] == "card declined"
    assert CALLS == ["create_order", "reserve", "charge", "release", "cancel_order"]


async def test_non_retryable_error_is_tried_once(engine: Engine) -> None:
    handle = await engine.start(sagas.order, Plan("o3", fail_charge=True))
    with pytest.raises(RunFailedError):
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert CALLS.count("charge") == 1
    steps = await engine.steps(handle.run_id)
    assert [s.attempts for s in steps if s.name == "t.charge"] == [1]


async def test_retryable_step_failures_are_retried_then_succeed(engine: Engine) -> None:
    handle = await engine.start(sagas.order, Plan("o4", flaky_charge=2))
    await asyncio.wait_for(handle.result(), DEADLINE)
    assert CALLS.count("charge") == 3
    events = await engine.history(handle.run_id)
    failed = [e for e in events if e.type == "StepAttemptFailed"]
    assert [e.data["attempt"] for e in failed] == [1, 2]
    assert all(e.data["error"]["type"] == "TimeoutError" for e in failed)
    assert [e.data["retry_in"] for e in failed] == [0.01, 0.02]
    charge = [e.type for e in events if e.data.get("step") == "t.charge"]
    assert charge == ["StepStarted", "StepAttemptFailed", "StepAttemptFailed", "StepSucceeded"]


async def test_step_that_exhausts_retries_fails_and_compensates(engine: Engine) -> None:
    handle = await engine.start(sagas.order, Plan("o5", flaky_charge=5))
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert info.value.status is RunStatus.COMPENSATED
    assert CALLS.count("charge") == sagas.FAST.max_attempts
    assert CALLS[-2:] == ["release", "cancel_order"]


async def test_start_with_same_run_id_returns_the_existing_run(engine: Engine) -> None:
    first = await engine.start(sagas.order, Plan("o6"), run_id="same")
    second = await engine.start(sagas.order, Plan("o6"), run_id="same")
    assert second.run_id == first.run_id
    with pytest.raises(RunConflictError, match=r"'same' already exists .* other arguments"):
        await engine.start(sagas.order, Plan("other"), run_id="same")
    assert (await second.result()).order == "o6"
    assert CALLS.count("create_order") == 1
    assert len(await engine.list_runs()) == 1


async def test_run_starts_at_once_without_waiting_for_a_poll(make_engine: MakeEngine) -> None:
    async with make_engine(poll_interval=120.0) as engine:
        handle = await engine.start(sagas.order, Plan("o7"))
        # A poll would take two minutes; the embedded worker must begin right away.
        await asyncio.wait_for(handle.result(), DEADLINE)


async def test_every_transition_is_in_the_audit_trail(engine: Engine) -> None:
    handle = await engine.start(sagas.order, Plan("o8", fail_charge=True))
    with pytest.raises(RunFailedError):
        await asyncio.wait_for(handle.result(), DEADLINE)
    events = await engine.history(handle.run_id)
    assert [e.type for e in events] == [
        "RunStarted",
        "StepStarted",
        "StepSucceeded",
        "StepStarted",
        "StepSucceeded",
        "StepStarted",
        "StepFailed",
        "RunCompensating",
        "CompensationStarted",
        "CompensationSucceeded",
        "CompensationStarted",
        "CompensationSucceeded",
        "RunCompensated",
    ]
    times = [e.at for e in events]
    assert times == sorted(times) and all(t > 1.7e9 for t in times)
    assert events[0].when.tzinfo is not None


async def test_failure_with_nothing_to_compensate_ends_failed(engine: Engine) -> None:
    from tests.engine.sagas_extra import only_charge

    handle = await engine.start(only_charge, Plan("o9", fail_charge=True))
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert info.value.status is RunStatus.FAILED


async def test_step_timeout_counts_as_failed_attempt_and_is_retried(engine: Engine) -> None:
    from tests.engine.sagas_extra import slow_once

    handle = await engine.start(slow_once, uuid.uuid4().hex)  # a key never seen before
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "done"
    events = await engine.history(handle.run_id)
    failed = [e for e in events if e.type == "StepAttemptFailed"]
    assert len(failed) == 1
    assert failed[0].data["error"]["type"] == "StepTimeout"
    steps = await engine.steps(handle.run_id)
    assert steps[0].attempts == 2


async def test_workflow_may_catch_a_failed_step(engine: Engine) -> None:
    from tests.engine.sagas_extra import catches

    handle = await engine.start(catches, Plan("o10", fail_charge=True))
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "caught Declined: card declined"
