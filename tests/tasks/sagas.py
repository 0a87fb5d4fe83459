"""Sagas whose charge step is a task, run by external workers (``--import tests.tasks.sagas``).

``reserve`` and its compensation run in-process; ``charge`` runs wherever a worker claims
it from the ``payments`` queue. ``slow_charge`` has a short lease, for the dead-worker tests.
A task step has no body (``...``), which mypy --strict calls an empty body: hence the ignores.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from sagaline import NonRetryable, RetryPolicy, step, workflow

RELEASED: list[str] = []
"""Reservations compensated in this process (the in-process tests read it)."""


class Order(msgspec.Struct):
    id: str
    amount: int


class Payment(msgspec.Struct):
    id: str
    amount: int


@step(name="tasks.reserve", retry=RetryPolicy(max_attempts=1))
async def reserve(order: Order) -> str:
    return f"res-{order.id}"


@reserve.compensate(retry=RetryPolicy(max_attempts=2, initial=0.01))
async def release(order: Order, reservation: str) -> None:
    RELEASED.append(reservation)


@step(
    name="tasks.charge",
    task_queue="payments",
    retry=RetryPolicy(max_attempts=3, initial=0.05, max_interval=0.1),
)
async def charge(order: Order, note: str = "") -> Payment: ...  # type: ignore[empty-body]


@step(name="tasks.slow_charge", task_queue="slow", heartbeat_timeout=1.0)
async def slow_charge(order: Order) -> Payment: ...  # type: ignore[empty-body]


@workflow(name="tasks-checkout")
async def checkout(order: Order) -> str:
    reservation = await reserve(order)
    payment = await charge(order, note="first")
    return f"{reservation}/{payment.id}/{payment.amount}"


@workflow(name="tasks-slow-checkout")
async def slow_checkout(order: Order) -> str:
    reservation = await reserve(order)
    payment = await slow_charge(order)
    return f"{reservation}/{payment.id}"


@step(name="tasks.charge_card", task_queue="payments", retry=RetryPolicy(max_attempts=1))
async def charge_card(order: Order) -> Payment: ...  # type: ignore[empty-body]


@charge_card.compensate(
    name="tasks.refund",
    task_queue="refunds",
    retry=RetryPolicy(max_attempts=2, initial=0.01, max_interval=0.02),
    heartbeat_timeout=timedelta(seconds=5),
)
async def refund(order: Order, payment: Payment | None) -> None: ...


class Rejected(NonRetryable):
    pass


@step(name="tasks.confirm", retry=RetryPolicy(max_attempts=1))
async def confirm(order: Order) -> str:
    if order.amount > 100:
        raise Rejected(f"order {order.id} over the limit")
    return f"ok-{order.id}"


@workflow(name="tasks-refundable")
async def refundable(order: Order) -> str:
    """reserve (in-process, undone in-process), charge (a task, undone by a task), confirm."""
    reservation = await reserve(order)
    payment = await charge_card(order)
    confirmed = await confirm(order)
    return f"{reservation}/{payment.id}/{confirmed}"


@step(name="tasks.unserved_charge", task_queue="unserved", schedule_to_start_timeout=60)
async def unserved_charge(order: Order) -> Payment: ...  # type: ignore[empty-body]


@workflow(name="tasks-unserved")
async def unserved(order: Order) -> str:
    """Its charge waits on a queue no worker serves: it fails after a minute unclaimed."""
    reservation = await reserve(order)
    payment = await unserved_charge(order)
    return f"{reservation}/{payment.id}"


@step(
    name="tasks.bounded_charge",
    task_queue="bounded",
    start_to_close_timeout=timedelta(seconds=1),
    heartbeat_timeout=30,
)
async def bounded_charge(order: Order) -> Payment: ...  # type: ignore[empty-body]


@workflow(name="tasks-bounded")
async def bounded(order: Order) -> str:
    payment = await bounded_charge(order)
    return payment.id


@step(
    name="tasks.fragile_charge",
    task_queue="fragile",
    heartbeat_timeout=0.3,
    retry=RetryPolicy(max_attempts=2, initial=0.01),
)
async def fragile_charge(order: Order) -> Payment: ...  # type: ignore[empty-body]


@workflow(name="tasks-fragile")
async def fragile(order: Order) -> str:
    """Its charge's workers die holding it: two attempts, then the saga compensates."""
    reservation = await reserve(order)
    payment = await fragile_charge(order)
    return f"{reservation}/{payment.id}"
