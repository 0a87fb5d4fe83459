"""The benchmark workload: the order saga with 4 no-op steps and their compensations.

The order id steers it: ``fail-*`` orders are declined at charge_payment (non-retryable),
``slow-*`` orders spend 2 s in ship_order, ``idle-*`` orders sleep on a durable timer.
"""

from __future__ import annotations

import asyncio
import os

import sagaline
from sagaline import NonRetryable, step, workflow


class PaymentDeclined(NonRetryable):
    pass


@step(name="bench.create_order")
async def create_order(order_id: str) -> str:
    _count(order_id, "create_order")
    return order_id


@create_order.compensate
async def cancel_order(order_id: str, created: str) -> None:
    pass


@step(name="bench.reserve_inventory")
async def reserve_inventory(order_id: str) -> str:
    _count(order_id, "reserve_inventory")
    return f"res-{order_id}"


@reserve_inventory.compensate
async def release_inventory(order_id: str, reservation: str) -> None:
    pass


@step(name="bench.charge_payment")
async def charge_payment(order_id: str) -> str:
    _count(order_id, "charge_payment")
    if order_id.startswith("fail-"):
        raise PaymentDeclined("card declined")
    return f"pay-{order_id}"


@charge_payment.compensate
async def refund_payment(order_id: str, payment: str) -> None:
    pass


LEDGER = os.environ.get("BENCH_LEDGER")
"""Read once: a step that read the environment each time would bill the engine for it."""


def _count(order_id: str, step_name: str) -> None:
    """``slow-*`` orders log each real execution, so recovery can count re-executions."""
    ledger = LEDGER
    if ledger and order_id.startswith("slow-"):
        with open(ledger, "a", encoding="utf-8") as f:
            f.write(f"{order_id} {step_name}\n")


@step(name="bench.ship_order", pivot=True)
async def ship_order(order_id: str) -> str:
    _count(order_id, "ship_order")
    if order_id.startswith("slow-"):
        await asyncio.sleep(2.0)
    return f"track-{order_id}"


@workflow(name="bench.order")
async def order_saga(order_id: str) -> str:
    await create_order(order_id)
    await reserve_inventory(order_id)
    await charge_payment(order_id)
    return await ship_order(order_id)


@workflow(name="bench.idle")
async def idle_saga(order_id: str, days: float) -> None:
    await sagaline.sleep(days * 86400)
