"""One conformance set over both step kinds: a payment and its refund run in-process, or
as tasks that a worker answers through ``engine.tasks``, and behave exactly alike.

Each scenario runs over both stores and both kinds and asserts one outcome for both: the
run's status and error, which compensations ran and in which order (``LEDGER``), the step
rows' statuses and attempts, and the run's history. The task kind's names
(``conf.pay_task``, ``conf.refund_task``) are read as the in-process ones, and the events
that only say where a run was scheduled (suspended on a task, claimed again) are left out,
so that each expected outcome is written once. The worker is a pair of background loops,
one per queue, answering each task as the scenario's ``Plan`` (in the task's input) says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest

from sagaline import Engine, RunFailedError, RunStatus, WorkflowDef
from sagaline.engine.tasks import ClaimedTask, TaskService
from tests.conftest import MakeEngine
from tests.tasks import conformance_sagas as cs
from tests.tasks.conformance_sagas import CHARGES, GATES, LEDGER, PAYING, Plan

DEADLINE = 30.0
KINDS = ["in_process", "task"]
AS_IN_PROCESS = {"conf.pay_task": "conf.pay", "conf.refund_task": "conf.refund"}
SCHEDULING = {"RunSuspended", "RunClaimed"}
"""Where and when a run executed: a task kind suspends and is claimed again, by design."""

T = TypeVar("T")
Row = tuple[str, str, str, int]
Event = tuple[str, str]


def plain(value: Any) -> Any:
    """``value`` with the task kind's step names read as the in-process ones."""
    if isinstance(value, str):
        return AS_IN_PROCESS.get(value, value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def ran(name: str) -> list[Event]:
    return [("StepStarted", name), ("StepSucceeded", name)]


def failed(name: str) -> list[Event]:
    return [("StepStarted", name), ("StepFailed", name)]


def undone(step: str, compensation: str) -> list[Event]:
    return [("CompensationStarted", step), ("CompensationSucceeded", compensation)]


def step_row(name: str, status: str = "SUCCEEDED", attempts: int = 1) -> Row:
    return ("step", name, status, attempts)


def compensation_row(name: str, status: str = "SUCCEEDED", attempts: int = 1) -> Row:
    return ("compensation", name, status, attempts)


PAID = [step_row("conf.reserve"), step_row("conf.pay")]
SHIPPED = [*PAID, step_row("conf.confirm"), step_row("conf.ship")]


def rejected(order: str, **more: Any) -> dict[str, Any]:
    """The run's error once confirm rejected ``order``."""
    message = f"order {order} rejected"
    return {"type": cs.REJECTED, "message": message, "step": "conf.confirm", **more}


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    error: dict[str, Any] | None
    ledger: list[str]
    rows: list[Row]
    events: list[Event]


@dataclass
class Saga:
    """The engine, the workflow of one kind, and that kind's worker (if it has one)."""

    engine: Engine
    workflow: WorkflowDef[[Plan], str]
    workers: list[asyncio.Task[None]] = field(default_factory=list)

    async def run(self, plan: Plan) -> RunStatus:
        """Start the run and wait for it to end, or to park for an operator."""
        handle = await self.engine.start(self.workflow, plan, run_id=plan.order)
        return await self.settled(handle.result())

    async def settled(self, result: Awaitable[str]) -> RunStatus:
        try:
            await self.within(result)
        except RunFailedError as exc:
            status: RunStatus = exc.status
            return status
        return RunStatus.COMPLETED

    async def within(self, waited: Awaitable[T]) -> T:
        """``waited`` within the deadline, failing at once should the worker stop."""
        watched = asyncio.ensure_future(waited)
        watchers = {watched, *self.workers}
        done, _ = await asyncio.wait(watchers, timeout=DEADLINE, return_when="FIRST_COMPLETED")
        if watched not in done:
            watched.cancel()
            self.check_workers()
            raise TimeoutError(f"nothing came within {DEADLINE} s")
        return watched.result()

    async def until(self, check: Callable[[], bool]) -> None:
        async def poll() -> None:
            while not check():
                await asyncio.sleep(0.01)

        await self.within(poll())

    def check_workers(self) -> None:
        for worker in self.workers:
            if worker.done():
                worker.result()  # raises what stopped it
                raise AssertionError("the worker stopped")

    async def outcome(self, run_id: str) -> Outcome:
        run = await self.engine.get_run(run_id)
        rows = [
            (s.kind.value, plain(s.name), s.status.value, s.attempts)
            for s in await self.engine.steps(run_id)
        ]
        events = [
            (e.type, plain(e.data.get("compensation") or e.data.get("step") or ""))
            for e in await self.engine.history(run_id)
            if e.type not in SCHEDULING
        ]
        assert await self.engine.tasks.list() == []  # no task is left waiting or held
        return Outcome(run.status, plain(run.error), list(LEDGER), rows, events)

    async def errors(self, run_id: str) -> dict[str, Any]:
        rows = await self.engine.steps(run_id)
        return {plain(s.name): s.error for s in rows if s.error is not None}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    for kept in (LEDGER, CHARGES, PAYING, cs.FIXED):
        kept.clear()
    GATES.clear()
    yield
    for gate in GATES.values():
        gate.set()  # a failed test must leave no step and no worker waiting


@pytest.fixture(params=KINDS)
async def saga(request: pytest.FixtureRequest, make_engine: MakeEngine) -> AsyncIterator[Saga]:
    kind: str = request.param
    async with make_engine() as engine:
        if kind == "in_process":
            yield Saga(engine, cs.in_process_order)
            return
        queues = ("conf-pay", "conf-refund")
        workers = [asyncio.create_task(work(engine.tasks, queue)) for queue in queues]
        saga = Saga(engine, cs.task_order, workers)
        try:
            yield saga
            saga.check_workers()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


async def work(tasks: TaskService, queue: str) -> None:
    """The external worker of one queue: claim, answer as the plan says, again."""
    while True:
        for task in await tasks.claim(queue, "conf-worker", 1, 1.0):
            plan = msgspec.json.decode(task.input["plan"], type=Plan)
            if task.step == "conf.refund_task":
                await refund(tasks, task, plan)
            else:
                assert task.step == "conf.pay_task", task.step
                await pay(tasks, task, plan)


async def pay(tasks: TaskService, task: ClaimedTask, plan: Plan) -> None:
    CHARGES.append(plan.order)
    if plan.gated:
        PAYING.append(plan.order)
        await GATES[plan.order].wait()
    if plan.pay_declined:
        assert not await tasks.fail(task.id, task.token, cs.DECLINED, "card declined", True)
    elif task.attempt <= plan.pay_flaky:
        assert await tasks.fail(task.id, task.token, "TimeoutError", "gateway timeout", False)
    else:
        await tasks.complete(task.id, task.token, msgspec.json.encode(cs.payment_of(plan)))


async def refund(tasks: TaskService, task: ClaimedTask, plan: Plan) -> None:
    if plan.refund_broken:
        retried = await tasks.fail(task.id, task.token, "ConnectionError", cs.REFUND_DOWN, False)
        assert retried is (task.attempt < cs.REFUND_RETRY.max_attempts)
        return
    LEDGER.append(f"refund:{plan.order}")
    await tasks.complete(task.id, task.token, b"null")


async def test_happy_path_completes_with_the_same_result(saga: Saga) -> None:
    handle = await saga.engine.start(saga.workflow, Plan("h1"), run_id="h1")
    assert await saga.within(handle.result()) == "res-h1/pay-h1/30/ok-h1/track-h1"
    assert await saga.outcome("h1") == Outcome(
        RunStatus.COMPLETED,
        None,
        [],
        [*SHIPPED, step_row("conf.notify")],
        [
            ("RunStarted", ""),
            *ran("conf.reserve"),
            *ran("conf.pay"),
            *ran("conf.confirm"),
            *ran("conf.ship"),
            *ran("conf.notify"),
            ("RunCompleted", ""),
        ],
    )
    assert CHARGES == ["h1"]


async def test_a_later_failure_refunds_the_payment_then_undoes_earlier_steps(
    saga: Saga,
) -> None:
    assert await saga.run(Plan("c1", reject=True)) is RunStatus.COMPENSATED
    assert await saga.outcome("c1") == Outcome(
        RunStatus.COMPENSATED,
        rejected("c1"),
        ["refund:c1", "release:c1"],
        [
            *PAID,
            step_row("conf.confirm", "FAILED"),
            compensation_row("conf.refund"),
            compensation_row("conf.release"),
        ],
        [
            ("RunStarted", ""),
            *ran("conf.reserve"),
            *ran("conf.pay"),
            *failed("conf.confirm"),
            ("RunCompensating", ""),
            *undone("conf.pay", "conf.refund"),
            *undone("conf.reserve", "conf.release"),
            ("RunCompensated", ""),
        ],
    )


async def test_retryable_payment_failures_are_retried_until_it_succeeds(saga: Saga) -> None:
    assert await saga.run(Plan("r1", pay_flaky=2)) is RunStatus.COMPLETED
    outcome = await saga.outcome("r1")
    assert outcome.rows == [
        step_row("conf.reserve"),
        step_row("conf.pay", attempts=3),
        *SHIPPED[2:],
        step_row("conf.notify"),
    ]
    assert outcome.events[3:7] == [
        ("StepStarted", "conf.pay"),
        ("StepAttemptFailed", "conf.pay"),
        ("StepAttemptFailed", "conf.pay"),
        ("StepSucceeded", "conf.pay"),
    ]
    assert (outcome.ledger, outcome.error, outcome.events[-1]) == ([], None, ("RunCompleted", ""))
    assert CHARGES == ["r1"] * 3
    retries = [e.data for e in await saga.engine.history("r1") if e.type == "StepAttemptFailed"]
    assert [(d["attempt"], d["error"], d["retry_in"]) for d in retries] == [
        (1, {"type": "TimeoutError", "message": "gateway timeout"}, 0.01),
        (2, {"type": "TimeoutError", "message": "gateway timeout"}, 0.02),
    ]


async def test_a_declined_payment_is_not_refunded_and_earlier_steps_are_undone(
    saga: Saga,
) -> None:
    assert await saga.run(Plan("d1", pay_declined=True)) is RunStatus.COMPENSATED
    declined = {"type": cs.DECLINED, "message": "card declined"}
    assert await saga.outcome("d1") == Outcome(
        RunStatus.COMPENSATED,
        {**declined, "step": "conf.pay"},
        ["release:d1"],
        [
            step_row("conf.reserve"),
            step_row("conf.pay", "FAILED"),
            compensation_row("conf.release"),
        ],
        [
            ("RunStarted", ""),
            *ran("conf.reserve"),
            *failed("conf.pay"),
            ("RunCompensating", ""),
            *undone("conf.reserve", "conf.release"),
            ("RunCompensated", ""),
        ],
    )
    assert await saga.errors("d1") == {"conf.pay": declined}
    assert CHARGES == ["d1"]  # one attempt: a non-retryable failure is final


async def test_a_failure_after_the_pivot_parks_then_retry_goes_forward(saga: Saga) -> None:
    assert await saga.run(Plan("p1", notify_broken=True)) is RunStatus.FAILED_AFTER_PIVOT
    before_retry = [
        ("RunStarted", ""),
        *ran("conf.reserve"),
        *ran("conf.pay"),
        *ran("conf.confirm"),
        *ran("conf.ship"),
        *failed("conf.notify"),
        ("RunFailedAfterPivot", ""),
    ]
    refused = {
        "type": cs.REJECTED,
        "message": "mail server refused",
        "step": "conf.notify",
        "pivot": "conf.ship",
    }
    assert await saga.outcome("p1") == Outcome(
        RunStatus.FAILED_AFTER_PIVOT,
        refused,
        [],
        [*SHIPPED, step_row("conf.notify", "FAILED")],
        before_retry,
    )

    cs.FIXED.append("p1")  # the mail server is repaired
    await saga.engine.retry("p1", reason="mail server repaired", by="ops")
    assert (await saga.within(saga.engine.wait("p1"))).status is RunStatus.COMPLETED
    assert await saga.outcome("p1") == Outcome(
        RunStatus.COMPLETED,
        None,
        [],
        [*SHIPPED, step_row("conf.notify")],
        [*before_retry, ("RunRetried", ""), *ran("conf.notify"), ("RunCompleted", "")],
    )
    assert CHARGES == ["p1"]  # forward from notify: the payment is not made again
    retried = [e.data for e in await saga.engine.history("p1") if e.type == "RunRetried"]
    assert [(d["reason"], d["by"]) for d in retried] == [("mail server repaired", "ops")]


async def test_a_refund_that_keeps_failing_parks_then_skip_undoes_the_rest(saga: Saga) -> None:
    plan = Plan("k1", reject=True, refund_broken=True)
    assert await saga.run(plan) is RunStatus.COMPENSATION_FAILED
    gateway_down = {"type": "ConnectionError", "message": cs.REFUND_DOWN}
    before_skip = [
        ("RunStarted", ""),
        *ran("conf.reserve"),
        *ran("conf.pay"),
        *failed("conf.confirm"),
        ("RunCompensating", ""),
        ("CompensationStarted", "conf.pay"),
        ("CompensationAttemptFailed", "conf.refund"),
        ("CompensationFailed", "conf.refund"),
    ]
    stuck = {"step": "conf.pay", "compensation": "conf.refund", "attempts": 2}
    assert await saga.outcome("k1") == Outcome(
        RunStatus.COMPENSATION_FAILED,
        rejected("k1", compensation={**stuck, "error": gateway_down}),
        [],  # unwinding stopped at the refund: nothing is released yet
        [
            *PAID,
            step_row("conf.confirm", "FAILED"),
            compensation_row("conf.refund", "FAILED", 2),
        ],
        before_skip,
    )

    await saga.engine.skip_compensation("k1", reason="refunded by hand", by="ops")
    assert (await saga.within(saga.engine.wait("k1"))).status is RunStatus.COMPENSATED
    assert await saga.outcome("k1") == Outcome(
        RunStatus.COMPENSATED,
        rejected("k1"),
        ["release:k1"],
        [
            *PAID,
            step_row("conf.confirm", "FAILED"),
            compensation_row("conf.refund", "SKIPPED", 2),
            compensation_row("conf.release"),
        ],
        [
            *before_skip,
            ("CompensationSkipped", "conf.refund"),
            *undone("conf.reserve", "conf.release"),
            ("RunCompensated", ""),
        ],
    )
    assert (await saga.errors("k1"))["conf.refund"] == gateway_down
    skipped = [e.data for e in await saga.engine.history("k1") if e.type == "CompensationSkipped"]
    assert [(d["reason"], d["by"]) for d in skipped] == [("refunded by hand", "ops")]


async def test_cancel_while_paying_refunds_the_payment_it_made(saga: Saga) -> None:
    GATES["x1"] = asyncio.Event()
    handle = await saga.engine.start(saga.workflow, Plan("x1", gated=True), run_id="x1")
    await saga.until(lambda: PAYING == ["x1"])
    await saga.engine.cancel("x1", reason="customer left", by="ops")
    GATES["x1"].set()  # the payment goes through after all
    assert await saga.settled(handle.result()) is RunStatus.CANCELLED
    assert await saga.outcome("x1") == Outcome(
        RunStatus.CANCELLED,
        {"type": "Cancelled", "message": "cancelled by an operator"},
        ["refund:x1", "release:x1"],
        [*PAID, compensation_row("conf.refund"), compensation_row("conf.release")],
        [
            ("RunStarted", ""),
            *ran("conf.reserve"),
            ("StepStarted", "conf.pay"),
            ("CancelRequested", ""),
            ("StepSucceeded", "conf.pay"),
            ("RunCompensating", ""),
            *undone("conf.pay", "conf.refund"),
            *undone("conf.reserve", "conf.release"),
            ("RunCancelled", ""),
        ],
    )
    assert CHARGES == ["x1"]
    cancels = [e.data for e in await saga.engine.history("x1") if e.type == "CancelRequested"]
    assert [(d["reason"], d["by"]) for d in cancels] == [("customer left", "ops")]
