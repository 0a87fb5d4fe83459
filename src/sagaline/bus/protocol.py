"""The ``Bus`` protocol: the one seam between the engine and a message broker.

Every bus (NATS JetStream, RabbitMQ, the embedded broker in a database) behaves the same
way at this seam, and ``sagaline.testing.bus_conformance`` checks that it does:

- **Groups.** A subscription belongs to a *group* (for sagaline: one handler of one
  service). Every group subscribed to a topic receives each message published to it
  afterwards (fan-out); within a group each message goes to one member (competing
  consumers). A group is durable: messages published while no member listens are kept
  for it and delivered when one subscribes again.
- **At-least-once.** A message is redelivered until a member acks it: after ``nack``
  (about ``delay`` seconds later), after ``ack_wait`` seconds without an answer, and when
  the member's connection is lost. Handlers must tolerate duplicates (sagaline's inbox
  absorbs them).
- **Ids.** A message's ``id`` is its identity: a bus that can deduplicate publishes by id
  (JetStream's ``Nats-Msg-Id`` window, the embedded broker's table) does so; redelivery
  keeps the id. A message from a foreign producer without one gets a stable id derived by
  the bus (the same on every redelivery).
- **Outages.** ``publish`` raises :class:`BusUnavailableError` while the broker is
  unreachable (the caller keeps the message and tries again). Subscriptions reconnect on
  their own and resume delivery when the broker is back.
- **Order.** Only what each bus documents: no bus promises order across redeliveries or
  between members of a group, so nothing in sagaline depends on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """One message as it travels: opaque JSON bytes and string headers."""

    id: str
    topic: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Delivery(Protocol):
    """A message handed to a subscriber, to be answered with ``ack`` or ``nack`` once."""

    @property
    def message(self) -> Message: ...

    @property
    def redelivered(self) -> bool:
        """The bus knows it delivered this message before (best effort)."""

    async def ack(self) -> None:
        """Done with it: never deliver it to this group again."""

    async def nack(self, delay: float = 0.0) -> None:
        """Not done: deliver it again (to any member) in about ``delay`` seconds."""


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def aclose(self) -> None:
        """Stop receiving. Unanswered deliveries are redelivered (to this group) later;
        the group itself stays, and keeps collecting messages."""


class Bus(Protocol):
    url: str

    @property
    def dedupes(self) -> bool:
        """Publishing an id a second time (within the bus's window) delivers it once."""

    async def open(self) -> None:
        """Connect, and create what the bus needs (a stream, an exchange, tables).

        Raises:
            BusUnavailableError: the broker cannot be reached.
            BusError: the URL or the broker's configuration is wrong (the message says how).
        """

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish every message, at least once, confirmed by the broker on return.

        Raises:
            BusUnavailableError: the broker could not be reached, or did not confirm every
                message; any of them may still have gone out (ids make a retry harmless).
        """

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: DeliveryHandler,
        *,
        prefetch: int = 64,
        ack_wait: float = 30.0,
    ) -> Subscription:
        """Join ``group`` (created, durable, on first use) and receive its messages.

        ``handler`` is called for each delivery, up to ``prefetch`` at once; a delivery it
        neither acks nor nacks within ``ack_wait`` seconds is redelivered. An exception
        from ``handler`` counts as ``nack(1.0)``. Returns once the group exists on the
        broker: a message published after the return is kept for the group.
        """

    async def aclose(self) -> None: ...
