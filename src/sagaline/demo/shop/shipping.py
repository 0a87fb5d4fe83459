"""The shipping service: books a shipment for reserved stock."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import sagaline
from sagaline import Event, step
from sagaline.demo.shop.events import Reserved, Shipped


@step
async def book(order_id: str, sku: str) -> str:
    pause = os.environ.get("SAGALINE_DEMO_PAUSE")  # the demo kills this process in here
    if pause and sku == "SLOW-TO-SHIP" and not Path(pause).exists():
        Path(pause).touch()
        await asyncio.sleep(60)
    return f"track-{order_id}"


@sagaline.on("InventoryReserved", service="shipping", name="shipping.book")
async def on_reserved(event: Event[Reserved]) -> None:
    order = event.data.order
    tracking = await book(order.order_id, order.sku)
    await sagaline.publish("ShipmentBooked", Shipped(order, tracking))
