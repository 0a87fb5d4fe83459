"""Task steps inside the engine, answered through :class:`TaskService` (no HTTP): the run
suspends on the task, a completion resumes it by replay, failures retry then compensate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import msgspec
import pytest

from sagaline import Engine, RunFailedError, RunStatus
from sagaline.engine.tasks import (
    ClaimedTask,
    TaskLeaseLostError,
    TaskResultError,
    TaskService,
)
from tests.conftest import MakeEngine
from tests.tasks import sagas

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    sagas.RELEASED.clear()
    yield


def service(engine: Engine) -> TaskService:
    return TaskService(lambda: engine.store, engine.codec, time.time)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), DEADLINE)


async def claim_one(tasks: TaskService, queue: str = "payments") -> ClaimedTask:
    claimed = await tasks.claim(queue, "w1", 1, DEADLINE)
    assert len(claimed) == 1
    return claimed[0]


async def test_run_suspends_on_a_task_and_resumes_with_its_result(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        handle = await engine.start(sagas.checkout, sagas.Order("o1", 30), run_id="o1")
        task = await claim_one(tasks)
        assert task.step == "tasks.charge"
        assert task.attempt == 1
        inputs = {k: msgspec.json.decode(v) for k, v in task.input.items()}
        assert inputs == {"order": {"id": "o1", "amount": 30}, "note": "first"}

        async def suspended() -> bool:
            return (await engine.get_run("o1")).status is RunStatus.SUSPENDED

        await eventually(suspended)
        await tasks.complete(task.id, task.token, b'{"id": "pay-1", "amount": 30}')
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "res-o1/pay-1/30"
        steps = await engine.store.load_steps("o1")
        assert [(s.name, s.status.value, s.attempts) for s in steps] == [
            ("tasks.reserve", "SUCCEEDED", 1),
            ("tasks.charge", "SUCCEEDED", 1),
        ]
        with pytest.raises(TaskLeaseLostError):  # answered once: a second answer is refused
            await tasks.complete(task.id, task.token, b'{"id": "pay-2", "amount": 30}')


async def test_a_result_of_the_wrong_type_is_refused_and_changes_nothing(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        handle = await engine.start(sagas.checkout, sagas.Order("o2", 5), run_id="o2")
        task = await claim_one(tasks)
        with pytest.raises(TaskResultError, match="Payment"):
            await tasks.complete(task.id, task.token, b'{"id": 7}')
        await tasks.complete(task.id, task.token, b'{"id": "pay", "amount": 5}')
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "res-o2/pay/5"


async def test_failed_attempts_retry_then_the_step_fails_and_compensates(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        handle = await engine.start(sagas.checkout, sagas.Order("o3", 5), run_id="o3")
        for attempt in (1, 2, 3):
            task = await claim_one(tasks)
            assert task.attempt == attempt
            retried = await tasks.fail(task.id, task.token, "Declined", "no funds", False)
            assert retried is (attempt < 3)
        with pytest.raises(RunFailedError):
            await asyncio.wait_for(handle.result(), DEADLINE)
        assert (await engine.get_run("o3")).status is RunStatus.COMPENSATED
        assert sagas.RELEASED == ["res-o3"]
        types = [e.type for e in await engine.store.read_events("o3")]
        assert types.count("StepAttemptFailed") == 2
        assert "StepFailed" in types


async def test_non_retryable_failure_compensates_at_once(make_engine: MakeEngine) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        handle = await engine.start(sagas.checkout, sagas.Order("o4", 5), run_id="o4")
        task = await claim_one(tasks)
        assert not await tasks.fail(task.id, task.token, "Declined", "stolen card", True)
        with pytest.raises(RunFailedError):
            await asyncio.wait_for(handle.result(), DEADLINE)
        assert (await engine.get_run("o4")).status is RunStatus.COMPENSATED
        assert sagas.RELEASED == ["res-o4"]


async def test_an_expired_lease_gives_the_task_to_another_worker_and_fences_the_first(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        handle = await engine.start(sagas.slow_checkout, sagas.Order("o5", 1), run_id="o5")
        first = await claim_one(tasks, "slow")
        second = await claim_one(tasks, "slow")  # waits out the first worker's lease
        assert second.id == first.id and second.attempt == 2 and second.token != first.token
        with pytest.raises(TaskLeaseLostError):
            await tasks.complete(first.id, first.token, b'{"id": "late", "amount": 1}')
        with pytest.raises(TaskLeaseLostError):
            await tasks.heartbeat(first.id, first.token)
        await tasks.complete(second.id, second.token, b'{"id": "pay", "amount": 1}')
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "res-o5/pay"
        events = await engine.store.read_events("o5")
        assert [e.type for e in events].count("StepSucceeded") == 2  # reserve, charge once


async def test_heartbeat_extends_the_lease_and_reports_a_cancel(make_engine: MakeEngine) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        await engine.start(sagas.slow_checkout, sagas.Order("o6", 1), run_id="o6")
        task = await claim_one(tasks, "slow")
        deadline, cancelled = await tasks.heartbeat(task.id, task.token)
        assert deadline is not None and not cancelled

        async def suspended() -> bool:
            return (await engine.get_run("o6")).status is RunStatus.SUSPENDED

        await eventually(suspended)
        await engine.cancel("o6", reason="test", by="tests")
        _, cancelled = await tasks.heartbeat(task.id, task.token)
        assert cancelled
