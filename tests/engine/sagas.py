"""Workflows and steps shared by the engine tests.

Behaviour is steered by the input (``Plan``), so one definition serves many tests; every
real execution is appended to ``CALLS``, which the tests read to tell replay from re-run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sagaline import NonRetryable, RetryPolicy, step, workflow

CALLS: list[str] = []
GATES: dict[str, asyncio.Event] = {}
FAST = RetryPolicy(max_attempts=3, initial=0.01, backoff=2.0, max_interval=0.05, jitter=0)


class Declined(NonRetryable):
    pass


@dataclass
class Plan:
    order: str
    fail_charge: bool = False
    flaky_charge: int = 0
    """Charge fails this many times with a retryable error before it succeeds."""
    fail_release: int = 0
    """release_inventory fails this many times before it succeeds."""
    fail_after_pivot: bool = False
    gate: str = ""
    """If set, reserve waits for GATES[gate] before returning."""
    flags: list[str] = field(default_factory=list)


@dataclass
class Reservation:
    id: str
    qty: int


@dataclass
class Receipt:
    order: str
    reservation: Reservation
    payment: str
    tracking: str


ATTEMPTS: dict[str, int] = {}


def _bump(key: str) -> int:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    return ATTEMPTS[key]


@step(name="t.create_order", retry=FAST)
async def create_order(plan: Plan) -> str:
    CALLS.append("create_order")
    return plan.order


@create_order.compensate(retry=FAST)
async def cancel_order(plan: Plan, order_id: str) -> None:
    assert isinstance(order_id, str)
    CALLS.append("cancel_order")


@step(name="t.reserve", retry=FAST)
async def reserve(plan: Plan, qty: int) -> Reservation:
    CALLS.append("reserve")
    if plan.gate:
        await GATES[plan.gate].wait()
    return Reservation(f"res-{plan.order}", qty)


@reserve.compensate(retry=FAST)
def release(plan: Plan, qty: int, reservation: Reservation) -> None:
    assert isinstance(reservation, Reservation), type(reservation)
    CALLS.append("release")
    if _bump(f"release-{plan.order}") <= plan.fail_release:
        raise ConnectionError("inventory service unavailable")


@step(name="t.charge", retry=FAST)
def charge(plan: Plan) -> str:
    CALLS.append("charge")
    if plan.fail_charge:
        raise Declined("card declined")
    if _bump(f"charge-{plan.order}") <= plan.flaky_charge:
        raise TimeoutError("gateway timeout")
    return f"pay-{plan.order}"


@charge.compensate(retry=FAST)
def refund(plan: Plan, payment: str) -> None:
    CALLS.append("refund")


@step(name="t.ship", pivot=True, retry=FAST)
async def ship(plan: Plan) -> str:
    CALLS.append("ship")
    return f"track-{plan.order}"


@step(name="t.notify", retry=FAST)
async def notify(plan: Plan) -> None:
    CALLS.append("notify")
    if plan.fail_after_pivot and "fixed" not in plan.flags and "fixed" not in CALLS:
        raise Declined("mail server refused")


@workflow(name="t.order")
async def order(plan: Plan) -> Receipt:
    order_id = await create_order(plan)
    reservation = await reserve(plan, 2)
    payment = await charge(plan)
    tracking = await ship(plan)
    await notify(plan)
    return Receipt(order_id, reservation, payment, tracking)
