"""Workflows for the crash-test helper: a correct saga, and sagas with bugs planted in them.

The helper's worker processes import this module by name, as they would a user's.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import timedelta

import sagaline
from sagaline import NonRetryable, RetryPolicy, step, workflow
from sagaline.testing import record_effect

FAST = RetryPolicy(max_attempts=3, initial=0.01, max_interval=0.05)


@dataclass
class Order:
    id: str
    lost_in_transit: bool = False


class LostInTransit(NonRetryable):
    pass


@step(retry=FAST)
def reserve(order: Order) -> str:
    record_effect()
    return f"res-{order.id}"


@reserve.compensate(retry=FAST)
def release(order: Order, reservation: str) -> None:
    record_effect()


@step(retry=FAST)
async def charge(order: Order) -> str:
    record_effect()
    return f"pay-{order.id}"


@charge.compensate(retry=FAST)
async def refund(order: Order, payment: str) -> None:
    record_effect()


@step(retry=FAST)
def ship(order: Order) -> str:
    record_effect()
    if order.lost_in_transit:
        raise LostInTransit(f"order {order.id} was lost in transit")
    return f"track-{order.id}"


@workflow
async def place_order(order: Order) -> str:
    """Correct: three steps, two undoable, and a durable wait between them."""
    reservation = await reserve(order)
    payment = await charge(order)
    await sagaline.sleep(timedelta(days=1))  # the warehouse packs overnight
    tracking = await ship(order)
    return f"{reservation}/{payment}/{tracking}"


@step(retry=FAST)
def heads(flip: int) -> int:
    return flip


@step(retry=FAST)
def tails(flip: int) -> int:
    return flip


@workflow
async def gamble(rounds: int) -> int:
    """Bug: a coin flipped outside a step comes up differently when the run is replayed."""
    for flip in range(rounds):
        await (heads if random.random() < 0.5 else tails)(flip)
    return rounds


QUOTED_HERE: list[str] = []
"""Customers whose quote this process sent (not replayed from an earlier process)."""


@step(retry=FAST)
def send_quote(customer: str) -> float:
    record_effect()
    QUOTED_HERE.append(customer)
    return time.time()


@step(retry=FAST)
def book(customer: str) -> None:
    record_effect()


@step(retry=FAST)
def expire(customer: str) -> None:
    record_effect()


@workflow
async def quote(customer: str) -> str:
    """Bug: the wall clock decides; replayed later, after a crash, it decides otherwise."""
    sent = await send_quote(customer)
    if customer not in QUOTED_HERE:
        # Replayed in a process that restarted after a crash: a restart takes a while (how
        # long varies with the machine, so the test makes it certain rather than likely).
        time.sleep(0.3)
    if time.time() - sent > 0.25:  # should be sagaline.now(), which replays the same
        await expire(customer)
        return "expired"
    await book(customer)
    return "booked"


@workflow
async def notify(customer: str) -> None:
    """Bug: an effect outside a step runs again each time the run is replayed."""
    await send_quote(customer)
    record_effect("email")  # should be inside a step, recorded once
    await book(customer)


@workflow
async def confirm(customer: str) -> None:
    """Correct: two steps, no decision."""
    await send_quote(customer)
    await book(customer)
