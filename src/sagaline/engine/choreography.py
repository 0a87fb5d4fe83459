"""An engine's link to its bus: the outbox relay, and the handlers' subscriptions (inbox).

- The **relay** takes outbox rows (leased, so two relays rarely send the same row),
  publishes them and deletes them once the broker confirmed. A crash between the two
  sends them again later with the same message id: the broker or the inbox drops the copy.
  While the broker is down the rows simply wait: nothing is lost, nothing is retried hot.
- Each **handler** subscribes as the group ``service.handler``. A delivery starts the run
  whose id derives from (service, handler, message id) and is acked only once that run
  is recorded, so a redelivery or a duplicate finds the same run (the inbox).
- The engine starts even when the broker is down: the link connects in the background
  and keeps trying, and the outbox holds what is published meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sagaline.bus import Bus, Delivery, Message, Subscription
from sagaline.engine.handlers import HandlerDef
from sagaline.engine.ids import fresh_id
from sagaline.engine.registry import WorkflowDef
from sagaline.engine.tracing import current_traceparent
from sagaline.model import envelope
from sagaline.model.codec import Codec
from sagaline.model.errors import (
    BusError,
    BusUnavailableError,
    PayloadError,
    PayloadTooLargeError,
    RunConflictError,
)
from sagaline.model.names import check_name
from sagaline.model.records import OutboxMessage
from sagaline.model.topics import check_topic
from sagaline.model.urls import redact
from sagaline.store.protocol import Store

log = logging.getLogger("sagaline.bus")

RELAY_BATCH = 256
RELAY_LEASE = 5.0
"""Seconds a relay holds the rows it took; a relay that died is replaced after this."""
RELAY_POLL = 1.0
"""Seconds between looks at the outbox when nothing in this process wrote to it."""

Start = Callable[[WorkflowDef[Any, Any], envelope.Event[Any], str], Awaitable[object]]
Signal = Callable[[str, str, envelope.Event[Any]], Awaitable[bool]]
"""Send (run id, signal name, event) as a signal; False when the run no longer takes one."""


def outside_message(
    codec: Codec,
    topic: str,
    payload: Any,
    correlation_id: str | None,
    key: str | None,
    service: str | None,
    at: float,
) -> OutboxMessage:
    """An event published by ``engine.publish``: no run around it, so a fresh id.

    It carries the caller's active span (an HTTP request's, say), so the runs it starts in
    other services continue the caller's trace.
    """
    check_topic(topic)
    if correlation_id is not None:
        check_name("correlation id", correlation_id)
    if key is not None:
        check_name("publish key", key)
    body = codec.encode(payload, f"event {topic!r}")
    message_id = fresh_id()
    headers = envelope.headers(
        correlation_id=correlation_id or message_id,
        causation_id=None,
        source=service,
        at=at,
        traceparent=current_traceparent(),
    )
    if key is not None:
        headers[envelope.KEY] = key
    return OutboxMessage(message_id, topic, body, headers, at)


class BusLink:
    def __init__(
        self,
        bus: Bus,
        store: Store,
        *,
        service: str | None,
        handlers: list[HandlerDef],
        start: Start,
        signal: Signal,
        clock: Callable[[], float],
        correlation_field: str | None = None,
        prefetch: int = 64,
        ack_wait: float = 30.0,
        unprotect: Callable[[bytes, str], bytes] | None = None,
    ) -> None:
        self.bus = bus
        self._unprotect = unprotect
        self.store = store
        self.service = service
        self.handlers = handlers
        self._start = start
        self._signal = signal
        self._watched: set[str] = set()
        self._watch_lock = asyncio.Lock()
        self._clock = clock
        self._correlation_field = correlation_field
        self._prefetch = prefetch
        self._ack_wait = ack_wait
        self._written = asyncio.Event()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions: list[Subscription] = []
        self.published = 0
        """Messages this relay saw confirmed (for tests and benchmarks)."""

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect(), name="sagaline-bus"))
        self._tasks.append(asyncio.create_task(self._relay(), name="sagaline-relay"))

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until the bus is connected and every handler subscribed."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def aclose(self) -> None:
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.aclose()
        self._subscriptions.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.bus.aclose()

    def outbox_written(self) -> None:
        self._written.set()

    async def _connect(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.bus.open()
                for handler in self.handlers:
                    service = handler.service_in(self.service)
                    sub = await self.bus.subscribe(
                        f"{service}.{handler.name}",
                        [handler.topic],
                        self._deliverer(handler, service),
                        prefetch=self._prefetch,
                        ack_wait=self._ack_wait,
                    )
                    self._subscriptions.append(sub)
                for topic in await self.store.event_wait_topics():
                    await self._watch_topic(topic)
            except BusUnavailableError as exc:
                log.warning(
                    "bus %s unreachable (%s); trying again in %.1f s",
                    redact(self.bus.url),
                    exc,
                    delay,
                )
                for sub in self._subscriptions:
                    with contextlib.suppress(Exception):
                        await sub.aclose()
                self._subscriptions.clear()
                self._watched.clear()
                with contextlib.suppress(Exception):
                    await self.bus.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except BusError as exc:
                log.error("bus %s cannot be used: %s", redact(self.bus.url), exc)
                return
            self._ready.set()
            self._written.set()
            return

    # -- the outbox relay -----------------------------------------------------------------

    async def _relay(self) -> None:
        await self._ready.wait()
        while True:
            try:
                batch = await self.store.claim_outbox(RELAY_BATCH, RELAY_LEASE)
            except Exception as exc:  # the store is down: the rows wait there
                log.warning("outbox relay: cannot read the outbox (%s)", exc)
                await asyncio.sleep(1.0)
                continue
            if not batch:
                self._written.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._written.wait(), RELAY_POLL)
                continue
            await self._send(batch)

    async def _send(self, batch: list[OutboxMessage]) -> None:
        """Publish until the broker confirms, then delete; the rows stay until then."""
        messages = [Message(m.id, m.topic, m.body, m.headers) for m in batch]
        delay = 0.2
        while True:
            try:
                await self.bus.publish(messages)
                break
            except BusError as exc:
                log.warning(
                    "outbox relay: %d event(s) wait for the bus (%s); next try in %.1f s",
                    len(messages),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.published += len(messages)
        while True:
            try:
                await self.store.delete_outbox([m.id for m in batch])
                return
            except Exception as exc:  # sent again later if this never lands: harmless
                log.warning("outbox relay: cannot mark events sent (%s)", exc)
                await asyncio.sleep(1.0)

    # -- waits for events (the hybrid's replies) -----------------------------------------

    async def watch_event(self, run_id: str, topic: str, correlation_id: str) -> None:
        """Record the run's wait, then make sure the topic is listened to. While the bus is
        down the subscription is made on connecting, before the relay sends anything."""
        await self.store.add_event_wait(run_id, topic, correlation_id)
        if self._ready.is_set():
            await self._watch_topic(topic)

    async def _watch_topic(self, topic: str) -> None:
        async with self._watch_lock:
            if topic in self._watched:
                return
            group = f"{self.service or 'default'}.waits.{topic}"
            sub = await self.bus.subscribe(
                group, [topic], self._route, prefetch=self._prefetch, ack_wait=self._ack_wait
            )
            self._subscriptions.append(sub)
            self._watched.add(topic)

    async def _route(self, delivery: Delivery) -> None:
        """An event some runs may wait for: a signal to each of them."""
        m = delivery.message
        body = await self._readable(delivery)
        if body is None:
            return
        event = envelope.from_wire(
            m.id,
            m.topic,
            body,
            m.headers,
            correlation_field=self._correlation_field,
            received_at=self._clock(),
        )
        try:
            for run_id in await self.store.event_waiters(m.topic, event.correlation_id):
                if not await self._signal(run_id, m.topic, event):
                    await self.store.drop_event_wait(run_id, m.topic, event.correlation_id)
        except Exception as exc:
            log.warning("event %r on %r not routed yet (%s)", m.id, m.topic, exc)
            await delivery.nack(1.0)
            return
        await delivery.ack()

    async def _readable(self, delivery: Delivery) -> bytes | None:
        """The body with the payload codec undone (it is encrypted on the wire when the
        engine has one); None once a body that cannot be read here is left on the bus
        (nacked, never acked and lost) until this service is given its key."""
        m = delivery.message
        if self._unprotect is None:
            return m.body
        try:
            return self._unprotect(m.body, f"message {m.id!r} on {m.topic!r}")
        except PayloadError as exc:
            log.error("%s", exc)
            await delivery.nack(60.0)
            return None

    # -- the inbox ------------------------------------------------------------------------

    def _deliverer(
        self, handler: HandlerDef, service: str
    ) -> Callable[[Delivery], Awaitable[None]]:
        async def deliver(delivery: Delivery) -> None:
            m = delivery.message
            body = await self._readable(delivery)
            if body is None:
                return
            event = envelope.from_wire(
                m.id,
                m.topic,
                body,
                m.headers,
                correlation_field=self._correlation_field,
                received_at=self._clock(),
            )
            run_id = envelope.inbox_run_id(service, handler.name, m.id)
            try:
                await self._start(handler.workflow, event, run_id)
            except RunConflictError:
                # The same message id arrived before with other content: the first wins.
                log.warning(
                    "message %r on %r repeats an id with other content; run %r keeps the first one",
                    m.id,
                    m.topic,
                    run_id,
                )
            except PayloadTooLargeError as exc:
                # It cannot be recorded: leave it on the bus (never acked and lost).
                log.error("message %r on %r cannot be recorded: %s", m.id, m.topic, exc)
                await delivery.nack(60.0)
                return
            except Exception as exc:
                log.warning("message %r on %r not recorded yet (%s)", m.id, m.topic, exc)
                await delivery.nack(1.0)
                return
            await delivery.ack()

        return deliver
