"""The payment service: charges when an order is created, refunds when stock fails."""

from __future__ import annotations

from typing import Any

import sagaline
from sagaline import Event, step
from sagaline.demo.shop.events import Order, Paid, Refunded


@step
async def charge(order: Order) -> str:
    # A real service passes sagaline.step_info().idempotency_key to its payment provider.
    return f"pay-{order.order_id}"


@step
async def refund(order_id: str, payment_id: str) -> None:
    pass


@sagaline.on("OrderCreated", service="payment", name="payment.charge")
async def on_order_created(event: Event[Order]) -> None:
    payment_id = await charge(event.data)
    await sagaline.publish("PaymentSucceeded", Paid(event.data, payment_id))


@sagaline.on("InventoryFailed", service="payment", name="payment.refund")
async def on_inventory_failed(event: Event[dict[str, Any]]) -> None:
    """``data`` is ``{"error": ..., "event": <the PaymentSucceeded that failed>}``."""
    paid = event.data["event"]
    order_id, payment_id = paid["order"]["order_id"], paid["payment_id"]
    await refund(order_id, payment_id)
    await sagaline.publish("RefundIssued", Refunded(order_id, payment_id))
