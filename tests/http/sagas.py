"""Workflows the test server imports (``--import tests.http.sagas``).

The item's text decides the outcome: ``decline`` fails the charge (so the reservation is
compensated), ``stuck`` also fails the release (the run parks in COMPENSATION_FAILED).
"""

from __future__ import annotations

import sagaline
from sagaline import NonRetryable, RetryPolicy, step, wait_for_signal, workflow

ONCE = RetryPolicy(max_attempts=1)


class Declined(NonRetryable):
    pass


@step(name="http.reserve", retry=ONCE)
async def reserve(item: str) -> str:
    return f"reservation-of-{item}"


@reserve.compensate(retry=ONCE)
async def release(item: str, reservation: str) -> None:
    if "stuck" in item:
        raise RuntimeError(f"cannot release {item}")


@step(name="http.charge", retry=ONCE)
async def charge(item: str) -> None:
    if "decline" in item:
        raise Declined(f"card declined for {item}")


@step(name="http.ship", pivot=True)
async def ship(item: str) -> str:
    return f"shipped {item}"


@workflow(name="http-order")
async def order(item: str) -> str:
    reservation = await reserve(item)
    await charge(item)
    return reservation


@workflow(name="http-approval")
async def approval(item: str) -> str:
    approved: str = await wait_for_signal("approved")
    await reserve(item)
    return approved


@workflow(name="http-pair")
async def pair(a: int, b: int = 2) -> int:
    return a + b


@workflow(name="http-locked")
async def locked(item: str) -> str:
    async with sagaline.lock(f"order:{item.split('-')[0]}"):
        approved: str = await wait_for_signal("approved")
    return approved
