"""The order service: owns the orders table; starts the saga and closes it."""

from __future__ import annotations

import sagaline
from sagaline import Event, Transaction, step, workflow
from sagaline.demo.shop.events import Order, Refunded, Shipped


@step(transactional=True)
async def create_order(tx: Transaction, order: Order) -> str:
    """The order row and its OrderCreated event commit together: never one without the other."""
    await tx.execute("CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, status TEXT)")
    await tx.execute(
        f"INSERT INTO orders (order_id, status) VALUES ({tx.placeholder(1)}, 'PENDING')",
        (order.order_id,),
    )
    await sagaline.publish("OrderCreated", order, correlation_id=order.order_id)
    return order.order_id


@workflow(name="shop.place_order")
async def place_order(order: Order) -> str:
    return await create_order(order)


@step(transactional=True)
async def set_status(tx: Transaction, order_id: str, status: str) -> None:
    await tx.execute(
        f"UPDATE orders SET status = {tx.placeholder(1)} WHERE order_id = {tx.placeholder(2)}",
        (status, order_id),
    )


@sagaline.on("ShipmentBooked", service="order", name="order.complete")
async def complete(event: Event[Shipped]) -> None:
    await set_status(event.data.order.order_id, "COMPLETED")
    await sagaline.publish("OrderCompleted", {"order_id": event.data.order.order_id})


@sagaline.on("RefundIssued", service="order", name="order.cancel")
async def cancel(event: Event[Refunded]) -> None:
    await set_status(event.data.order_id, "CANCELLED")
    await sagaline.publish("OrderCancelled", {"order_id": event.data.order_id})
