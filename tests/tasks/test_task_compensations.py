"""A compensation that is itself a task: unwinding suspends on it, a worker runs the undo,
its failures retry and then park the run for an operator, exactly as in-process.

``tasks-refundable``: reserve (undone in-process), charge (a task on ``payments``, undone
by the task ``tasks.refund`` on ``refunds``), confirm (fails for amounts over 100).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest

from sagaline import Engine, RunFailedError, RunStatus
from sagaline.engine.tasks import ClaimedTask, TaskLeaseLostError, TaskService
from tests.conftest import MakeEngine
from tests.tasks import sagas
from tests.tasks.test_engine_tasks import DEADLINE, claim_one, eventually, service


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    sagas.RELEASED.clear()
    yield


async def charged(engine: Engine, tasks: TaskService, order: sagas.Order) -> None:
    """Start the saga and answer its charge task, so that confirm runs (and fails)."""
    await engine.start(sagas.refundable, order, run_id=order.id)
    charge = await claim_one(tasks, "payments")
    assert charge.step == "tasks.charge_card"
    body = msgspec.json.encode({"id": f"pay-{order.id}", "amount": order.amount})
    await tasks.complete(charge.id, charge.token, body)


async def refund_task(tasks: TaskService) -> ClaimedTask:
    task = await claim_one(tasks, "refunds")
    assert task.step == "tasks.refund"
    return task


async def status_of(engine: Engine, run_id: str) -> RunStatus:
    return (await engine.get_run(run_id)).status


async def test_a_failed_saga_is_refunded_by_a_worker_then_released_in_process(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        order = sagas.Order("r1", 500)
        await charged(engine, tasks, order)
        refund = await refund_task(tasks)
        inputs = {k: msgspec.json.decode(v) for k, v in refund.input.items()}
        assert inputs == {
            "order": {"id": "r1", "amount": 500},
            "payment": {"id": "pay-r1", "amount": 500},
        }
        assert sagas.RELEASED == []  # the in-process undo waits its turn: last done first
        _, stop = await tasks.heartbeat(refund.id, refund.token)
        assert not stop  # a compensation is what the unwinding waits for: never told to stop
        await tasks.complete(refund.id, refund.token, b"null")
        run = await engine.wait("r1", timeout=DEADLINE)
        assert run.status is RunStatus.COMPENSATED
        assert run.error is not None and run.error["type"].endswith("Rejected")
        assert sagas.RELEASED == ["res-r1"]
        steps = await engine.store.load_steps("r1")
        assert [(s.kind.value, s.name, s.status.value) for s in steps] == [
            ("step", "tasks.reserve", "SUCCEEDED"),
            ("step", "tasks.charge_card", "SUCCEEDED"),
            ("step", "tasks.confirm", "FAILED"),
            ("compensation", "tasks.refund", "SUCCEEDED"),
            ("compensation", "tests.tasks.sagas.release", "SUCCEEDED"),
        ]
        kinds = [e.type for e in await engine.history("r1")]
        assert kinds.index("CompensationSucceeded") < kinds.index("RunCompensated")
        with pytest.raises(TaskLeaseLostError):  # answered once
            await tasks.complete(refund.id, refund.token, b"null")


async def test_a_refund_that_keeps_failing_parks_the_run_then_skip_finishes_it(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        await charged(engine, tasks, sagas.Order("r2", 500))
        first = await refund_task(tasks)
        assert await tasks.fail(first.id, first.token, "GatewayDown", "try later", False)
        second = await refund_task(tasks)  # retried after the compensation's backoff
        assert second.attempt == 2 and second.id == first.id
        assert not await tasks.fail(second.id, second.token, "GatewayDown", "still down", False)

        async def parked() -> bool:
            return await status_of(engine, "r2") is RunStatus.COMPENSATION_FAILED

        await eventually(parked)
        run = await engine.get_run("r2")
        assert run.error is not None
        assert run.error["compensation"]["compensation"] == "tasks.refund"
        assert run.error["compensation"]["error"]["message"] == "still down"
        assert sagas.RELEASED == []  # unwinding stopped at the refund
        assert await tasks.claim("refunds", "w2", 1, 0.2) == []

        await engine.skip_compensation("r2", reason="refunded by hand", by="ops")
        assert (await engine.wait("r2", timeout=DEADLINE)).status is RunStatus.COMPENSATED
        assert sagas.RELEASED == ["res-r2"]
        kinds = [e.type for e in await engine.history("r2")]
        assert kinds.count("CompensationAttemptFailed") == 1
        assert kinds.count("CompensationFailed") == 1


async def test_retrying_a_parked_refund_hands_a_new_task_to_a_worker(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        await charged(engine, tasks, sagas.Order("r3", 500))
        first = await refund_task(tasks)
        assert not await tasks.fail(first.id, first.token, "Declined", "card closed", True)

        async def parked() -> bool:
            return await status_of(engine, "r3") is RunStatus.COMPENSATION_FAILED

        await eventually(parked)
        await engine.retry("r3", reason="card reopened", by="ops")
        again = await refund_task(tasks)
        assert again.attempt == 1
        await tasks.complete(again.id, again.token, b"null")
        assert (await engine.wait("r3", timeout=DEADLINE)).status is RunStatus.COMPENSATED
        assert sagas.RELEASED == ["res-r3"]


async def test_cancel_while_the_charge_is_out_refunds_it_once_the_worker_answers(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        await engine.start(sagas.refundable, sagas.Order("r4", 5), run_id="r4")
        charge = await claim_one(tasks, "payments")

        async def suspended() -> bool:
            return await status_of(engine, "r4") is RunStatus.SUSPENDED

        await eventually(suspended)
        await engine.cancel("r4", reason="customer left", by="tests")
        _, stop = await tasks.heartbeat(charge.id, charge.token)
        assert stop  # the charge's worker learns the run no longer wants it...
        await tasks.complete(charge.id, charge.token, b'{"id": "pay-r4", "amount": 5}')
        refund = await refund_task(tasks)  # ...but what it charged anyway is refunded
        _, stop = await tasks.heartbeat(refund.id, refund.token)
        assert not stop  # the refund of a cancelled run is wanted
        await tasks.complete(refund.id, refund.token, b"null")
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(engine.handle("r4").result(), DEADLINE)
        assert info.value.status is RunStatus.CANCELLED
        assert sagas.RELEASED == ["res-r4"]


async def test_a_cancelled_run_waits_for_the_worker_that_holds_its_task(
    make_engine: MakeEngine,
) -> None:
    """Unwinding does not pass a task a worker holds: had the worker charged the card and
    the run ended meanwhile, the charge would never be refunded."""
    async with make_engine() as engine:
        tasks = service(engine)
        await engine.start(sagas.refundable, sagas.Order("r5", 5), run_id="r5")
        charge = await claim_one(tasks, "payments")

        async def suspended() -> bool:
            return await status_of(engine, "r5") is RunStatus.SUSPENDED

        await eventually(suspended)
        await engine.cancel("r5", reason="customer left", by="tests")
        await asyncio.sleep(0.3)  # time enough for the run to unwind, were it to go on
        assert await status_of(engine, "r5") is RunStatus.SUSPENDED
        assert sagas.RELEASED == []
        assert await tasks.claim("payments", "w2", 1, 0.2) == []  # nobody else charges it
        _, stop = await tasks.heartbeat(charge.id, charge.token)
        assert stop
        assert not await tasks.fail(charge.id, charge.token, "Stopped", "run cancelled", True)
        assert (await engine.wait("r5", timeout=DEADLINE)).status is RunStatus.CANCELLED
        assert sagas.RELEASED == ["res-r5"]  # the charge failed: nothing to refund
        assert await tasks.claim("refunds", "w2", 1, 0.2) == []


async def test_a_task_nobody_claimed_is_closed_when_its_run_is_cancelled(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        tasks = service(engine)
        await engine.start(sagas.refundable, sagas.Order("r6", 5), run_id="r6")

        async def suspended() -> bool:
            return await status_of(engine, "r6") is RunStatus.SUSPENDED

        await eventually(suspended)
        await engine.cancel("r6", reason="customer left", by="tests")
        assert (await engine.wait("r6", timeout=DEADLINE)).status is RunStatus.CANCELLED
        assert await tasks.claim("payments", "w2", 1, 0.2) == []
        charge = [s for s in await engine.store.load_steps("r6") if s.name == "tasks.charge_card"]
        assert charge[0].status.value == "FAILED"
        assert charge[0].error is not None and charge[0].error["type"] == "TaskAbandoned"
        assert sagas.RELEASED == ["res-r6"]


async def test_a_cancelled_run_sleeps_while_its_refund_is_out(make_engine: MakeEngine) -> None:
    """It knows it was cancelled: its suspension on the refund must not wake it at once
    (it once did, and the run was claimed and suspended again hundreds of times a second
    for as long as the worker took)."""
    async with make_engine() as engine:
        tasks = service(engine)
        await engine.start(sagas.refundable, sagas.Order("r7", 5), run_id="r7")
        charge = await claim_one(tasks, "payments")
        await engine.cancel("r7", reason="customer left", by="tests")
        await tasks.complete(charge.id, charge.token, b'{"id": "pay-r7", "amount": 5}')
        refund = await refund_task(tasks)

        async def sleeping() -> bool:
            return await status_of(engine, "r7") is RunStatus.SUSPENDED

        await eventually(sleeping)
        before = [e.type for e in await engine.history("r7")].count("RunClaimed")
        await asyncio.sleep(0.5)  # a window to see it stay asleep: nothing may happen in it
        after = [e.type for e in await engine.history("r7")].count("RunClaimed")
        assert after - before <= 1, f"claimed {after - before} times while its refund was out"
        await tasks.complete(refund.id, refund.token, b"null")
        assert (await engine.wait("r7", timeout=DEADLINE)).status is RunStatus.CANCELLED
