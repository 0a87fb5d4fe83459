"""Parked runs and the operator's actions: compensation failure, pivot, retry, skip, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sagaline import Engine, InvalidOperationError, RunFailedError, RunStatus
from tests.engine import sagas
from tests.engine.sagas import CALLS, Plan

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    sagas.ATTEMPTS.clear()
    sagas.GATES.clear()
    yield


async def _parked(engine: Engine, plan: Plan, status: RunStatus) -> str:
    handle = await engine.start(sagas.order, plan, run_id=plan.order)
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(handle.result(), DEADLINE)  # never hangs on a parked run
    assert info.value.status is status
    return handle.run_id


async def test_compensation_is_retried_with_backoff_then_succeeds(engine: Engine) -> None:
    run_id = await _parked(
        engine, Plan("c1", fail_charge=True, fail_release=2), RunStatus.COMPENSATED
    )
    assert CALLS.count("release") == 3
    failed = [e for e in await engine.history(run_id) if e.type == "CompensationAttemptFailed"]
    assert [e.data["retry_in"] for e in failed] == [0.01, 0.02]


async def test_compensation_that_keeps_failing_parks_the_run(engine: Engine) -> None:
    run_id = await _parked(
        engine, Plan("c2", fail_charge=True, fail_release=99), RunStatus.COMPENSATION_FAILED
    )
    assert CALLS.count("release") == sagas.FAST.max_attempts
    assert "cancel_order" not in CALLS  # unwinding stops at the failing compensation
    run = await engine.get_run(run_id)
    assert run.error is not None
    assert run.error["compensation"]["error"]["message"] == "inventory service unavailable"
    assert run.owner is None


async def test_retry_after_compensation_failure_finishes_unwinding(engine: Engine) -> None:
    plan = Plan("c3", fail_charge=True, fail_release=3)  # fails 3 times, 3 attempts allowed
    run_id = await _parked(engine, plan, RunStatus.COMPENSATION_FAILED)
    await engine.retry(run_id)
    run = await engine.wait(run_id, timeout=DEADLINE)
    assert run.status is RunStatus.COMPENSATED
    assert CALLS[-2:] == ["release", "cancel_order"]
    assert run.error is not None and run.error["message"] == "card declined"
    assert "RunRetried" in [e.type for e in await engine.history(run_id)]


async def test_skip_compensation_records_who_and_why_then_unwinds(engine: Engine) -> None:
    run_id = await _parked(
        engine, Plan("c4", fail_charge=True, fail_release=99), RunStatus.COMPENSATION_FAILED
    )
    await engine.skip_compensation(run_id, reason="released in the WMS by hand", by="ops-ana")
    run = await engine.wait(run_id, timeout=DEADLINE)
    assert run.status is RunStatus.COMPENSATED
    assert CALLS[-1] == "cancel_order"
    skipped = [e for e in await engine.history(run_id) if e.type == "CompensationSkipped"]
    assert skipped[0].data == {
        "compensation": "tests.engine.sagas.release",
        "reason": "released in the WMS by hand",
        "by": "ops-ana",
    }


async def test_skip_needs_a_reason(engine: Engine) -> None:
    run_id = await _parked(
        engine, Plan("c5", fail_charge=True, fail_release=99), RunStatus.COMPENSATION_FAILED
    )
    with pytest.raises(InvalidOperationError, match="needs a reason"):
        await engine.skip_compensation(run_id, reason=" ", by="x")


async def test_failure_after_pivot_parks_without_compensating(engine: Engine) -> None:
    run_id = await _parked(engine, Plan("p1", fail_after_pivot=True), RunStatus.FAILED_AFTER_PIVOT)
    assert not {"release", "cancel_order", "refund"} & set(CALLS)
    run = await engine.get_run(run_id)
    assert run.error is not None and run.error["pivot"] == "t.ship"


async def test_retry_after_pivot_goes_forward_without_rerunning_steps(engine: Engine) -> None:
    run_id = await _parked(engine, Plan("p2", fail_after_pivot=True), RunStatus.FAILED_AFTER_PIVOT)
    CALLS.append("fixed")  # the downstream service recovers
    await engine.retry(run_id)
    run = await engine.wait(run_id, timeout=DEADLINE)
    assert run.status is RunStatus.COMPLETED
    for name in ("create_order", "reserve", "charge", "ship"):
        assert CALLS.count(name) == 1, name
    assert CALLS.count("notify") == 2


async def test_cancel_after_pivot_is_refused_while_running(engine: Engine) -> None:
    run_id = await _parked(engine, Plan("p3", fail_after_pivot=True), RunStatus.FAILED_AFTER_PIVOT)
    run = await engine.cancel(run_id)  # parked past the pivot: closes it, undoes nothing
    assert run.status is RunStatus.CANCELLED
    assert "release" not in CALLS


async def test_cancel_of_a_running_saga_compensates_it(engine: Engine) -> None:
    sagas.GATES["g1"] = asyncio.Event()
    handle = await engine.start(sagas.order, Plan("x1", gate="g1"), run_id="x1")
    while "reserve" not in CALLS:
        await asyncio.sleep(0.01)
    await engine.cancel("x1")
    sagas.GATES["g1"].set()
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert info.value.status is RunStatus.CANCELLED
    assert "charge" not in CALLS
    assert CALLS[-2:] == ["release", "cancel_order"]
    types = [e.type for e in await engine.history("x1")]
    assert types.index("CancelRequested") < types.index("RunCancelled")


async def test_cancel_of_a_pending_run_ends_it_before_any_step(make_engine: object) -> None:
    from tests.conftest import MakeEngine

    assert callable(make_engine)
    make: MakeEngine = make_engine
    async with make(worker=False) as client:
        await client.start(sagas.order, Plan("x2"), run_id="x2")
        await client.cancel("x2")
    async with make() as worker:
        run = await worker.wait("x2", timeout=DEADLINE)
    assert run.status is RunStatus.CANCELLED
    assert CALLS == []


async def test_operator_actions_refuse_runs_in_the_wrong_state(engine: Engine) -> None:
    handle = await engine.start(sagas.order, Plan("w1"))
    await asyncio.wait_for(handle.result(), DEADLINE)
    with pytest.raises(InvalidOperationError, match="already ended COMPLETED"):
        await engine.cancel(handle.run_id)
    with pytest.raises(InvalidOperationError, match="only runs parked"):
        await engine.retry(handle.run_id)
    with pytest.raises(InvalidOperationError, match="failed compensation to skip"):
        await engine.skip_compensation(handle.run_id, reason="r", by="b")
