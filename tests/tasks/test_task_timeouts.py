"""Task timeouts: schedule-to-start (no worker claimed it in time: the step fails, and the
saga compensates) and start-to-close (one attempt may hold the task that long from its
claim, heartbeats or not; then another attempt gets it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sagaline import RunFailedError, RunStatus, step
from sagaline.engine.tasks import TaskLeaseLostError
from sagaline.model.errors import DefinitionError
from sagaline.testing import FakeClock
from tests.conftest import MakeEngine
from tests.tasks import sagas
from tests.tasks.test_engine_tasks import DEADLINE, claim_one, eventually, service


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    sagas.RELEASED.clear()
    yield


async def test_a_task_nobody_claims_in_time_fails_and_the_saga_compensates(
    make_engine: MakeEngine,
) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with make_engine(clock=clock) as engine:
        handle = await engine.start(sagas.unserved, sagas.Order("u1", 10), run_id="u1")

        async def asleep() -> bool:
            return (await engine.get_run("u1")).status is RunStatus.SUSPENDED

        await eventually(asleep)
        run = await engine.get_run("u1")
        assert run.wake_at == pytest.approx(clock() + 60, abs=1)  # it looks again then
        clock.advance(61)
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(handle.result(), DEADLINE)
        assert info.value.status is RunStatus.COMPENSATED
        steps = {s.name: s for s in await engine.store.load_steps("u1")}
        charge = steps["tasks.unserved_charge"]
        assert charge.status.value == "FAILED" and charge.error is not None
        assert charge.error["type"] == "ScheduleToStartTimeout"
        assert "'unserved'" in charge.error["message"]
        assert sagas.RELEASED == ["res-u1"]
        tasks = service(engine)
        assert await tasks.claim("unserved", "late", 1, 0.2) == []  # closed: nobody gets it


async def test_a_task_claimed_before_its_deadline_is_not_failed(make_engine: MakeEngine) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with make_engine(clock=clock) as engine:
        tasks = engine.tasks  # on the engine's (fake) clock, as its runs
        handle = await engine.start(sagas.unserved, sagas.Order("u2", 10), run_id="u2")
        task = await claim_one(tasks, "unserved")
        clock.advance(61)  # past the deadline, but a worker has it
        await asyncio.sleep(0.2)
        assert (await engine.get_run("u2")).status is RunStatus.SUSPENDED
        await tasks.complete(task.id, task.token, b'{"id": "pay-u2", "amount": 10}')
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "res-u2/pay-u2"


async def test_an_attempt_holds_its_task_no_longer_than_start_to_close(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        handle = await engine.start(sagas.bounded, sagas.Order("b1", 10), run_id="b1")
        first = await claim_one(tasks, "bounded")
        assert first.deadline is not None
        left = datetime.fromisoformat(first.deadline).timestamp() - time.time()
        assert left <= 1.5  # the 30 s heartbeat timeout is capped by the 1 s start_to_close
        deadline, _ = await tasks.heartbeat(first.id, first.token)
        assert deadline is not None
        assert datetime.fromisoformat(deadline).timestamp() <= time.time() + 1.5

        async def over() -> bool:
            try:
                await tasks.heartbeat(first.id, first.token)
            except TaskLeaseLostError:
                return True
            return False

        await eventually(over)  # past start_to_close: this attempt is over
        second = await claim_one(tasks, "bounded")
        assert second.id == first.id and second.attempt == 2
        with pytest.raises(TaskLeaseLostError):
            await tasks.complete(first.id, first.token, b'{"id": "late", "amount": 10}')
        await tasks.complete(second.id, second.token, b'{"id": "pay-b1", "amount": 10}')
        assert await asyncio.wait_for(handle.result(), DEADLINE) == "pay-b1"


def test_the_task_timeouts_are_for_task_steps_and_must_be_positive() -> None:
    with pytest.raises(DefinitionError, match="for task steps"):

        @step(name="timeouts.inproc", schedule_to_start_timeout=5)
        async def inproc() -> None: ...

    with pytest.raises(DefinitionError, match="start_to_close_timeout must be positive"):

        @step(name="timeouts.zero", task_queue="q", start_to_close_timeout=0)
        async def zero() -> None: ...


async def test_a_task_whose_workers_all_die_holding_it_fails_after_its_attempts(
    make_engine: MakeEngine,
) -> None:
    """Each claim is an attempt; a lease that runs out used it. With the policy's two
    attempts used so, the next claim finds nothing and the step fails: the saga
    compensates instead of sending the task out again for ever."""
    async with make_engine() as engine:
        tasks = service(engine)
        handle = await engine.start(sagas.fragile, sagas.Order("f1", 10), run_id="f1")
        first = await claim_one(tasks, "fragile")  # its worker dies: no heartbeat, no answer
        assert first.attempt == 1
        second = await claim_one(tasks, "fragile")  # claimable again once the lease ran out
        assert second.attempt == 2
        with pytest.raises(RunFailedError) as info:
            assert await tasks.claim("fragile", "w3", 1, 2.0) == []  # no third attempt
            await asyncio.wait_for(handle.result(), DEADLINE)
        assert info.value.status is RunStatus.COMPENSATED
        steps = {s.name: s for s in await engine.store.load_steps("f1")}
        charge = steps["tasks.fragile_charge"]
        assert charge.status.value == "FAILED" and charge.error is not None
        assert charge.error["type"] == "TaskLeaseExpired"
        assert charge.attempts == 2  # the claim that found it out of attempts is not one
        assert "2 attempt(s)" in charge.error["message"]
        assert sagas.RELEASED == ["res-f1"]
        with pytest.raises(TaskLeaseLostError):
            await tasks.heartbeat(second.id, second.token)  # the late worker hears it is over
