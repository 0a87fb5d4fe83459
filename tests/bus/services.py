"""Handlers and workflows of the choreography tests: a small order saga across services.

Each handler names its service, so an engine of one service runs only its own. Calls are
counted in ``CALLS`` (step name -> keys) so tests can tell "ran once" from "ran twice".
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sagaline
from sagaline import Event, NonRetryable, RetryPolicy, step, workflow

CALLS: defaultdict[str, list[str]] = defaultdict(list)
FLAGS: dict[str, bool] = {"out_of_stock": False, "slow_charge": False}
SEEN: list[Event[Any]] = []


@dataclass
class OrderCreated:
    order_id: str
    amount: int


@dataclass
class PaymentDone:
    order_id: str
    payment_id: str


def ledger(entry: str) -> None:
    """A record of real executions that survives the process (for crash tests)."""
    path = os.environ.get("SAGALINE_TEST_LEDGER")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(entry + "\n")


@step
async def charge(order_id: str, amount: int) -> str:
    CALLS["charge"].append(order_id)
    ledger(f"charge {order_id}")
    if FLAGS["slow_charge"]:
        await asyncio.sleep(60)  # a crash test kills the process in here
    return f"pay-{order_id}"


@charge.compensate
async def refund(order_id: str, amount: int, payment_id: str) -> None:
    CALLS["refund"].append(order_id)


@sagaline.on("OrderCreated", service="payment", name="payment.charge")
async def on_order_created(event: Event[OrderCreated]) -> None:
    SEEN.append(event)
    payment = await charge(event.data.order_id, event.data.amount)
    await sagaline.publish("PaymentSucceeded", PaymentDone(event.data.order_id, payment))


@sagaline.on("OrderCreated", service="notify", name="notify.order_created")
async def notify_order(event: Event[OrderCreated]) -> None:
    CALLS["notify"].append(event.data.order_id)


@step
async def reserve(order_id: str) -> str:
    CALLS["reserve"].append(order_id)
    if FLAGS["out_of_stock"]:
        raise NonRetryable(f"no stock for {order_id}")
    return f"res-{order_id}"


@sagaline.on(
    "PaymentSucceeded",
    service="inventory",
    name="inventory.reserve",
    on_failure="InventoryFailed",
)
async def on_payment(event: Event[PaymentDone]) -> None:
    await reserve(event.data.order_id)
    await sagaline.publish("InventoryReserved", {"order_id": event.data.order_id})


@sagaline.on("InventoryFailed", service="payment", name="payment.refund")
async def on_inventory_failed(event: Event[dict[str, Any]]) -> None:
    SEEN.append(event)
    original = event.data["event"]
    assert isinstance(original, dict)
    await refund_payment(str(original["order_id"]))


@step
async def refund_payment(order_id: str) -> None:
    CALLS["refund_payment"].append(order_id)


@step(retry=RetryPolicy(max_attempts=3, initial=0.01))
async def flaky_publisher(order_id: str) -> None:
    """Publishes, then fails its first attempt: only the second attempt's event goes out."""
    CALLS["flaky_publisher"].append(order_id)
    attempt = len(CALLS["flaky_publisher"])
    await sagaline.publish("Flaky", {"order_id": order_id, "attempt": attempt})
    if len(CALLS["flaky_publisher"]) == 1:
        raise RuntimeError("first attempt fails after publishing (planted)")


@workflow(name="orchestrated_publisher")
async def orchestrated_publisher(order_id: str) -> str:
    """The hybrid: an orchestrated saga that publishes domain events."""
    await sagaline.publish("OrderCreated", OrderCreated(order_id, 10))
    await sagaline.sleep(0.2)  # suspends: the resumed run replays the publish above
    await flaky_publisher(order_id)
    await sagaline.publish("ShipmentBooked", {"order_id": order_id})
    return order_id


@sagaline.on("Strict", service="strict", name="strict.handler")
async def strict_handler(event: Event[OrderCreated]) -> None:
    CALLS["strict"].append(event.data.order_id)


@sagaline.on("Foreign", service="foreign", name="foreign.handler")
async def foreign_handler(event: Event[dict[str, Any]]) -> None:
    SEEN.append(event)
    CALLS["foreign"].append(event.correlation_id)


@sagaline.on("ReserveStock", service="stock", name="stock.reserve")
async def reserve_stock(event: Event[dict[str, Any]]) -> None:
    """The other side of a command/reply: answers each command with a reply event."""
    CALLS["reserve_stock"].append(event.correlation_id)
    await sagaline.publish("StockReserved", {"sku": event.data["sku"], "ok": True})


@dataclass
class StockReply:
    sku: str
    ok: bool


@workflow(name="orchestrated_command")
async def orchestrated_command(sku: str, timeout: float) -> str:
    """The hybrid's command/reply: send a command event, wait durably for its reply."""
    await sagaline.publish("ReserveStock", {"sku": sku})
    try:
        reply = await sagaline.wait_for_event("StockReserved", timeout=timeout, type=StockReply)
    except sagaline.EventTimeoutError:
        return "no reply"
    return f"{reply.data.sku}:{reply.data.ok}:{reply.source}"
