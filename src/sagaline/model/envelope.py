"""The envelope every event travels in, and how it maps onto a message's headers.

The fields are DESIGN §7's: message id, type (the topic), correlation id (the saga),
causation id (the message that caused it), source service, time, and the W3C
``traceparent``. On the wire the body is the event's data as JSON and the rest are
headers, so a consumer that is not sagaline reads the data as a plain JSON message, and a
plain JSON message from a producer that is not sagaline is still accepted (see
:func:`from_wire`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

CORRELATION = "sagaline-correlation-id"
CAUSATION = "sagaline-causation-id"
SOURCE = "sagaline-source"
TIME = "sagaline-time"
TRACEPARENT = "traceparent"
KEY = "sagaline-key"
"""A publisher's partition key, for consumers that group by it."""


class Event(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """An event delivered to a handler: ``data`` decoded to the handler's ``T``.

    ``id`` is unique per message (a redelivery keeps it); ``correlation_id`` names the saga
    the event belongs to and is inherited by every event a handler publishes;
    ``causation_id`` is the id of the event that caused this one (``None`` for a saga's
    first event).
    """

    id: str
    type: str
    data: T
    correlation_id: str
    causation_id: str | None = None
    source: str | None = None
    time: datetime
    traceparent: str | None = None


def headers(
    *,
    correlation_id: str,
    causation_id: str | None,
    source: str | None,
    at: float,
    traceparent: str | None = None,
) -> dict[str, str]:
    """The envelope's fields (all but id, type and data) as message headers."""
    out = {CORRELATION: correlation_id, TIME: datetime.fromtimestamp(at, UTC).isoformat()}
    if causation_id is not None:
        out[CAUSATION] = causation_id
    if source is not None:
        out[SOURCE] = source
    if traceparent is not None:
        out[TRACEPARENT] = traceparent
    return out


def from_wire(
    message_id: str,
    topic: str,
    body: bytes,
    header_map: Mapping[str, str],
    *,
    correlation_field: str | None = None,
    received_at: float,
) -> Event[Any]:
    """The envelope of a message as it arrived; ``data`` is still plain JSON.

    A foreign message lacks sagaline's headers: its correlation id is then the value of
    ``correlation_field`` in its data when there is one (a producer's ``order_id``), else
    its own id (it starts a saga); its time is when it was received. A body that is not
    JSON is kept as text, so the handler's run records it and is parked with the reason
    instead of the message being lost.
    """
    lower = {k.lower(): v for k, v in header_map.items()}
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = body.decode("utf-8", "replace")
    correlation = lower.get(CORRELATION)
    if not correlation and correlation_field and isinstance(data, dict):
        value = data.get(correlation_field)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            correlation = str(value)
    return Event(
        id=message_id,
        type=topic,
        data=data,
        correlation_id=correlation or message_id,
        causation_id=lower.get(CAUSATION) or None,
        source=lower.get(SOURCE) or None,
        time=_time(lower.get(TIME), received_at),
        traceparent=lower.get(TRACEPARENT) or None,
    )


def _time(text: str | None, fallback: float) -> datetime:
    if text:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.fromtimestamp(fallback, UTC)


def inbox_run_id(service: str, handler: str, message_id: str) -> str:
    """The run that handles ``message_id`` in ``handler`` of ``service``: the same for
    every delivery of the message, so a duplicate finds the run that exists (the inbox).

    Readable where it can be, hashed where the parts could make it too long or ambiguous.
    """
    digest = hashlib.sha256(f"{service}\0{handler}\0{message_id}".encode()).hexdigest()[:32]
    short = handler.rsplit(".", 1)[-1][:60]
    return f"{service[:60]}:{short}:{digest}"
