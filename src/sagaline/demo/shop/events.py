"""What the shop's services say to each other, and the saga they make together."""

from __future__ import annotations

from dataclasses import dataclass

from sagaline import Choreography


@dataclass
class Order:
    order_id: str
    sku: str
    qty: int
    amount: int


@dataclass
class Paid:
    order: Order
    payment_id: str


@dataclass
class Reserved:
    order: Order
    payment_id: str


@dataclass
class Shipped:
    order: Order
    tracking: str


@dataclass
class Refunded:
    order_id: str
    payment_id: str


ORDER_SAGA = Choreography(
    "order",
    start="OrderCreated",
    completed="OrderCompleted",
    compensated="OrderCancelled",
    deadline=30.0,
)
