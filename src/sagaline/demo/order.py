"""The demo's order saga. Each step appends to a ledger file, so the demo can show how
many times each one really ran, across processes and crashes."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sagaline import NonRetryable, RetryPolicy, step, workflow


@dataclass
class Order:
    order_id: str
    amount_cents: int
    ledger: str
    """Path of a JSON-lines file each step appends to."""
    decline: bool = False
    ship_pause: float = 0.0
    """Seconds ship_order waits the first time (the crash scenario kills it then)."""


@dataclass
class Reservation:
    reservation_id: str
    items: int


@dataclass
class Payment:
    payment_id: str
    amount_cents: int


@dataclass
class Receipt:
    order_id: str
    payment_id: str
    tracking: str


class PaymentDeclined(NonRetryable):
    pass


def record(order: Order, action: str) -> None:
    with open(order.ledger, "a", encoding="utf-8") as f:
        f.write(json.dumps({"order": order.order_id, "action": action, "pid": os.getpid()}) + "\n")


def ledger_counts(path: str, order_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    if not Path(path).exists():
        return counts
    for line in Path(path).read_text("utf-8").splitlines():
        entry = json.loads(line)
        if entry["order"] == order_id:
            counts[entry["action"]] = counts.get(entry["action"], 0) + 1
    return counts


@step(name="demo.create_order")
async def create_order(order: Order) -> str:
    record(order, "create_order")
    return order.order_id


@create_order.compensate
async def cancel_order(order: Order, order_id: str) -> None:
    record(order, "cancel_order")


@step(name="demo.reserve_inventory")
async def reserve_inventory(order: Order) -> Reservation:
    record(order, "reserve_inventory")
    return Reservation(f"res-{order.order_id}", items=1)


@reserve_inventory.compensate
async def release_inventory(order: Order, reservation: Reservation) -> None:
    record(order, "release_inventory")


@step(name="demo.charge_payment", retry=RetryPolicy(max_attempts=3, initial=0.05))
def charge_payment(order: Order) -> Payment:
    record(order, "charge_payment")
    if order.decline:
        raise PaymentDeclined(f"card declined for {order.amount_cents / 100:.2f}")
    return Payment(f"pay-{order.order_id}", order.amount_cents)


@charge_payment.compensate
def refund_payment(order: Order, payment: Payment) -> None:
    record(order, "refund_payment")


@step(name="demo.ship_order", pivot=True)
def ship_order(order: Order, order_id: str) -> str:
    record(order, "ship_order")
    marker = Path(f"{order.ledger}.{order_id}.shipping")
    if order.ship_pause and not marker.exists():
        marker.touch()
        time.sleep(order.ship_pause)
    return f"TRACK-{order_id}"


@workflow(name="demo.order_saga")
async def order_saga(order: Order) -> Receipt:
    order_id = await create_order(order)
    await reserve_inventory(order)
    payment = await charge_payment(order)
    tracking = await ship_order(order, order_id)
    return Receipt(order_id, payment.payment_id, tracking)
