"""Buses: how services exchange events. Adapters are chosen by URL scheme, imported lazily."""

from __future__ import annotations

from sagaline.bus.protocol import Bus, Delivery, DeliveryHandler, Message, Subscription
from sagaline.model.errors import BusError

__all__ = ["Bus", "Delivery", "DeliveryHandler", "Message", "Subscription", "open_bus"]


def open_bus(url: str) -> Bus:
    """The bus for ``url`` (not yet opened: call ``await bus.open()``)."""
    scheme = url.split(":", 1)[0]
    extra = {"nats": "nats", "amqp": "amqp", "amqps": "amqp"}.get(scheme, "postgres")
    try:
        if scheme == "nats":
            from sagaline.bus.nats import NatsBus

            return NatsBus(url)
        if scheme in ("amqp", "amqps"):
            from sagaline.bus.amqp import AmqpBus

            return AmqpBus(url)
        if scheme in ("sqlite", "postgresql", "postgres"):
            from sagaline.bus.embedded import EmbeddedBus

            return EmbeddedBus(url)
    except ImportError as exc:
        raise BusError(
            f"the {scheme}:// bus needs its client library: pip install 'sagaline[{extra}]' ({exc})"
        ) from exc
    raise BusError(
        f"unsupported bus URL {url!r}; use nats://host:4222, amqp://user:pass@host:5672/, "
        f"sqlite:///path/bus.db or postgresql://user@host/db"
    )
