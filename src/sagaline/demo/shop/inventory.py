"""The inventory service: reserves stock; out of stock, its failure event says so."""

from __future__ import annotations

import sagaline
from sagaline import Event, NonRetryable, Transaction, step
from sagaline.demo.shop.events import Paid, Reserved


class OutOfStock(NonRetryable):
    pass


@step(transactional=True)
async def reserve(tx: Transaction, order_id: str, sku: str, qty: int) -> None:
    await tx.execute(
        "CREATE TABLE IF NOT EXISTS reservations (order_id TEXT PRIMARY KEY, sku TEXT, qty INT)"
    )
    if sku == "OUT-OF-STOCK":
        raise OutOfStock(f"no {sku} left for order {order_id}")
    p = tx.placeholder
    await tx.execute(
        f"INSERT INTO reservations (order_id, sku, qty) VALUES ({p(1)}, {p(2)}, {p(3)})",
        (order_id, sku, qty),
    )


@sagaline.on(
    "PaymentSucceeded", service="inventory", name="inventory.reserve", on_failure="InventoryFailed"
)
async def on_paid(event: Event[Paid]) -> None:
    order = event.data.order
    await reserve(order.order_id, order.sku, order.qty)
    await sagaline.publish("InventoryReserved", Reserved(order, event.data.payment_id))
