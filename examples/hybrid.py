"""The hybrid: an orchestrated order saga whose steps publish domain events for others.

    python examples/hybrid.py [FOLDER]        # three services, one embedded bus

The shop's workflow drives the steps (orchestration) and publishes ``OrderCreated``,
``PaymentSucceeded`` and ``ShipmentBooked``; a notification service it does not know
reacts to them (choreography). One step of the saga is a command to the warehouse: the
workflow publishes ``ReserveStock`` and waits durably for the ``StockReserved`` reply.
Each service has its own database; they share only the bus.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sagaline
from sagaline import Engine, Event, step, workflow


@dataclass
class Order:
    order_id: str
    sku: str
    amount: int


@step
async def charge(order: Order) -> str:
    payment_id = f"pay-{order.order_id}"
    await sagaline.publish("PaymentSucceeded", {"order_id": order.order_id, "payment": payment_id})
    return payment_id


@charge.compensate
async def refund(order: Order, payment_id: str) -> None:
    print(f"refund {payment_id}")


@step
async def ship(order: Order) -> str:
    tracking = f"track-{order.order_id}"
    await sagaline.publish("ShipmentBooked", {"order_id": order.order_id, "tracking": tracking})
    return tracking


@workflow(name="hybrid.order")
async def order_saga(order: Order) -> str:
    await sagaline.publish("OrderCreated", order)  # correlation id: this run's id
    await charge(order)
    await sagaline.publish("ReserveStock", {"sku": order.sku, "qty": 1})  # the command...
    reply = await sagaline.wait_for_event("StockReserved", timeout=30)  # ...and its reply
    print(f"warehouse answered: {reply.data}")
    return await ship(order)


@sagaline.on("ReserveStock", service="warehouse", name="warehouse.reserve")
async def reserve(event: Event[dict[str, Any]]) -> None:
    await sagaline.publish("StockReserved", {"sku": event.data["sku"], "bin": "A-17"})


NOTIFIED: list[str] = []


@sagaline.on("OrderCreated", service="notify", name="notify.created")
async def on_created(event: Event[Order]) -> None:
    NOTIFIED.append(f"order {event.data.order_id} received")


@sagaline.on("ShipmentBooked", service="notify", name="notify.shipped")
async def on_shipped(event: Event[dict[str, Any]]) -> None:
    NOTIFIED.append(f"order {event.data['order_id']} shipped ({event.data['tracking']})")


async def main(folder: Path) -> None:
    bus = f"sqlite:///{folder / 'bus.db'}"
    engines = [
        Engine(f"sqlite:///{folder / f'{name}.db'}", bus=bus, service=name)
        for name in ("shop", "warehouse", "notify")
    ]
    for engine in engines:
        await engine.open()
        await engine.bus_ready()
    try:
        shop = engines[0]
        handle = await shop.start(order_saga, Order("o-1", "BOOK-1", 1200), run_id="o-1")
        print(f"-> {await handle.result()}")
        for _ in range(600):  # the notifications arrive on their own time (a fresh FOLDER)
            if len(NOTIFIED) >= 2:
                break
            await asyncio.sleep(0.05)
        for line in sorted(NOTIFIED):
            print(f"notify: {line}")
    finally:
        for engine in engines:
            await engine.aclose()


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    asyncio.run(main(where))
