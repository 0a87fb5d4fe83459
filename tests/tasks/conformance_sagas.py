"""One saga in two kinds, for the conformance tests: the payment and its refund run either
in-process or as tasks that an external worker answers; everything else is in-process.

``conf.in_process.order`` and ``conf.task.order`` are the same line: reserve (undone by
release), pay (undone by refund), confirm, ship (the pivot), notify. The ``Plan`` input
steers both kinds alike: the in-process steps read it as an argument, the test's worker
reads it from the task's input. Every compensation that ran appends to ``LEDGER``; every
payment attempt appends to ``CHARGES``, whoever made it.
"""

from __future__ import annotations

import asyncio

import msgspec

from sagaline import NonRetryable, RetryPolicy, step, workflow

LEDGER: list[str] = []
"""Compensations that ran, in order, as ``"<name>:<order>"``."""
CHARGES: list[str] = []
"""Payment attempts, by order id: in the step body or in the test's worker."""
PAYING: list[str] = []
"""Orders whose payment is in flight, held at ``GATES[order]``."""
GATES: dict[str, asyncio.Event] = {}
FIXED: list[str] = []
"""Orders whose notify service was repaired by the operator (see ``notify``)."""

PAY_RETRY = RetryPolicy(max_attempts=3, initial=0.01, max_interval=0.02, jitter=0)
REFUND_RETRY = RetryPolicy(max_attempts=2, initial=0.01, max_interval=0.02, jitter=0)
ONCE = RetryPolicy(max_attempts=1)


class Plan(msgspec.Struct, frozen=True):
    order: str
    pay_flaky: int = 0
    """The payment fails retryably this many times, then succeeds."""
    pay_declined: bool = False
    """The payment fails non-retryably."""
    reject: bool = False
    """confirm (after the payment, before the pivot) fails non-retryably."""
    refund_broken: bool = False
    """Every refund attempt fails retryably."""
    notify_broken: bool = False
    """notify (after the pivot) fails until the order is in ``FIXED``."""
    gated: bool = False
    """The payment waits for ``GATES[order]`` once it is in flight."""


class Payment(msgspec.Struct, frozen=True):
    id: str
    amount: int


class Declined(NonRetryable):
    pass


class Rejected(NonRetryable):
    pass


DECLINED = f"{__name__}.Declined"
"""How the engine names ``Declined`` in a step's error; the worker answers with it too."""
REJECTED = f"{__name__}.Rejected"
REFUND_DOWN = "refund gateway down"


def payment_of(plan: Plan) -> Payment:
    return Payment(f"pay-{plan.order}", 30)


@step(name="conf.reserve", retry=ONCE)
async def reserve(plan: Plan) -> str:
    return f"res-{plan.order}"


@reserve.compensate(name="conf.release", retry=ONCE)
async def release(plan: Plan, reservation: str) -> None:
    LEDGER.append(f"release:{plan.order}")


@step(name="conf.pay", retry=PAY_RETRY)
async def pay(plan: Plan) -> Payment:
    CHARGES.append(plan.order)
    if plan.gated:
        PAYING.append(plan.order)
        await GATES[plan.order].wait()
    if plan.pay_declined:
        raise Declined("card declined")
    if CHARGES.count(plan.order) <= plan.pay_flaky:
        raise TimeoutError("gateway timeout")
    return payment_of(plan)


@pay.compensate(name="conf.refund", retry=REFUND_RETRY)
async def refund(plan: Plan, payment: Payment) -> None:
    if plan.refund_broken:
        raise ConnectionError(REFUND_DOWN)
    LEDGER.append(f"refund:{plan.order}")


@step(name="conf.pay_task", task_queue="conf-pay", retry=PAY_RETRY)
async def pay_task(plan: Plan) -> Payment: ...  # type: ignore[empty-body]


@pay_task.compensate(task_queue="conf-refund", name="conf.refund_task", retry=REFUND_RETRY)
async def refund_task(plan: Plan, payment: Payment) -> None: ...


@step(name="conf.confirm", retry=ONCE)
async def confirm(plan: Plan) -> str:
    if plan.reject:
        raise Rejected(f"order {plan.order} rejected")
    return f"ok-{plan.order}"


@step(name="conf.ship", pivot=True, retry=ONCE)
async def ship(plan: Plan) -> str:
    return f"track-{plan.order}"


@step(name="conf.notify", retry=ONCE)
async def notify(plan: Plan) -> None:
    if plan.notify_broken and plan.order not in FIXED:
        raise Rejected("mail server refused")


@workflow(name="conf.in_process.order")
async def in_process_order(plan: Plan) -> str:
    reservation = await reserve(plan)
    payment = await pay(plan)
    confirmed = await confirm(plan)
    tracking = await ship(plan)
    await notify(plan)
    return f"{reservation}/{payment.id}/{payment.amount}/{confirmed}/{tracking}"


@workflow(name="conf.task.order")
async def task_order(plan: Plan) -> str:
    reservation = await reserve(plan)
    payment = await pay_task(plan)
    confirmed = await confirm(plan)
    tracking = await ship(plan)
    await notify(plan)
    return f"{reservation}/{payment.id}/{payment.amount}/{confirmed}/{tracking}"
