"""The RabbitMQ bus: one durable topic exchange, one durable queue per group.

How the :class:`~sagaline.bus.protocol.Bus` contract maps onto RabbitMQ:

- **Groups.** A group is the queue ``{exchange}.{group}``, bound to the exchange once per
  topic. Every queue bound to a topic gets its own copy (fan-out); the consumers of one
  queue compete for its messages. It is a *quorum* queue: RabbitMQ's durable queue type
  (3.8+) for data that must not be lost, confirmed only once written to a majority of
  nodes, where classic mirroring is deprecated; on one node it costs about as much as a
  classic durable queue. A classic queue of the same name, made by something else, is
  refused with a :class:`BusError`.
- **At-least-once.** Messages are persistent and each publish waits for the publisher
  confirm. Deliveries are acked by hand. RabbitMQ has neither a delayed requeue nor a
  redelivery timeout, so the adapter supplies both: ``nack(delay)`` keeps the delivery
  (and its prefetch slot) for ``delay`` seconds and then requeues it; a timer requeues a
  delivery nobody answered within ``ack_wait``. A lost connection or a closed channel
  returns every unanswered delivery to its queue. The broker's own ``consumer_timeout``
  (30 minutes by default) still applies: a longer ``nack`` delay gets the channel closed
  and the message redelivered early, which is harmless.
- **Ids.** ``message_id`` carries the id. A foreign message without one gets
  ``"sha256:" + sha256(routing key, NUL, body)``: stable across redeliveries, but two
  identical foreign messages on one topic share it, and the inbox treats them as one.
  RabbitMQ does not deduplicate publishes (``dedupes`` is False); the inbox does. A
  redelivery from a quorum queue carries one more header, ``x-delivery-count``.
- **Outages.** The connection is robust: it reconnects every second and re-declares the
  exchange, queues, bindings and consumers, so subscriptions resume by themselves.
  ``publish`` does not wait out a reconnect: while the connection is down it fails at
  once with :class:`BusUnavailableError` (the caller keeps the messages for later), and
  it waits at most ``PUBLISH_TIMEOUT`` seconds for the confirms.
- **Order.** RabbitMQ delivers the messages one channel routed to one queue in publish
  order, to one consumer, as long as none is requeued; a requeued message may come after
  later ones, and competing consumers each see an interleaved part. sagaline relies on
  none of it.

AMQP can list neither queues nor bindings, yet re-subscribing with other topics must
unbind the old ones and :func:`delete_namespace` must find every queue. So each namespace
keeps a *registry*: the quorum queue ``{exchange}.@groups`` holding one message, a map
from each group to the topics it may be bound to. It is rewritten under a lock (the
exclusive queue ``{exchange}.@lock``, which the broker drops with its connection), and
widened *before* bindings change, so a crash mid-way leaves a superset: merging several
messages by union is always safe (a spare unbind or delete is a no-op).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import aiormq.abc
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustQueue,
    HeadersType,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import (
    AuthenticationError,
    ChannelAccessRefused,
    ChannelLockedResource,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ConnectionNotAllowed,
    InvalidFrameError,
    ProbableAuthenticationError,
)
from pamqp import commands as spec
from pamqp.common import FieldValue
from yarl import URL

from sagaline.bus.protocol import DeliveryHandler, Message, Subscription
from sagaline.model.errors import BusError, BusUnavailableError

__all__ = ["AmqpBus", "delete_namespace"]

log = logging.getLogger("sagaline.bus.amqp")

DEFAULT_EXCHANGE = "sagaline"
CONNECT_TIMEOUT = 10.0
PUBLISH_TIMEOUT = 10.0
SUBSCRIBE_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0
FAILED_HANDLER_DELAY = 1.0
"""Seconds before a delivery whose handler raised is redelivered (``nack(1.0)``)."""
_QUORUM: dict[str, FieldValue] = {"x-queue-type": "quorum"}
_PERSISTENT = spec.Basic.Properties(delivery_mode=2, content_type="application/json")
_NAME = re.compile(r"[A-Za-z0-9\-_.:@#,/+]{1,200}")
_UNREACHABLE = (TimeoutError, *CONNECTION_EXCEPTIONS)
_SETTLE_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError)


@dataclass(frozen=True)
class _Namespace:
    """What a bus URL names, and how errors may show it (never with the password)."""

    url: str
    exchange: str
    where: str
    user: str
    password: str
    vhost: str

    @classmethod
    def parse(cls, url: str) -> _Namespace:
        parsed = URL(url)
        if parsed.scheme not in ("amqp", "amqps") or not parsed.host:
            raise BusError("not a RabbitMQ URL; use amqp://user:pass@host:5672/[vhost]")
        exchange = parsed.query.get("exchange", DEFAULT_EXCHANGE)
        _check_name("exchange", exchange, reserved="amq.")
        port = parsed.explicit_port or (5671 if parsed.scheme == "amqps" else 5672)
        return cls(
            url=str(parsed.without_query_params("exchange")),
            exchange=exchange,
            where=f"{parsed.host}:{port}",
            user=parsed.user or "guest",
            password=parsed.password or "",
            vhost=parsed.path[1:] or "/",
        )

    def queue(self, group: str) -> str:
        return f"{self.exchange}.{group}"

    @property
    def registry(self) -> str:
        return f"{self.exchange}.@groups"

    @property
    def lock(self) -> str:
        return f"{self.exchange}.@lock"

    def reason(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self.password:
            text = text.replace(self.password, "***")
        return text[:200]

    def down(
        self, why: str, then: str = "check that it runs there and that the bus URL is right"
    ) -> BusUnavailableError:
        return BusUnavailableError(f"RabbitMQ at {self.where} is unreachable: {why}; {then}")


@contextlib.asynccontextmanager
async def _guard(ns: _Namespace, doing: str, timeout: float) -> AsyncIterator[None]:
    """Turn aio-pika's failures into sagaline's two: retry later, or fix the setup."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except BusError:
        raise
    except (AuthenticationError, ProbableAuthenticationError) as exc:
        raise BusError(
            f"RabbitMQ at {ns.where} refused the login of user {ns.user!r}; check the user "
            f"and password in the bus URL"
        ) from exc
    except (InvalidFrameError, ConnectionNotAllowed) as exc:
        # aiormq reports a refused virtual host as an unexpected Connection.Close frame.
        raise BusError(
            f"RabbitMQ at {ns.where} refused to {doing} ({ns.reason(exc)}); check that "
            f"virtual host {ns.vhost!r} exists and that user {ns.user!r} may use it"
        ) from exc
    except (ChannelPreconditionFailed, ChannelAccessRefused) as exc:
        raise BusError(f"RabbitMQ at {ns.where} refused to {doing}: {ns.reason(exc)}") from exc
    except _UNREACHABLE as exc:
        raise ns.down(f"could not {doing} ({ns.reason(exc)})") from exc


class AmqpBus:
    """A :class:`~sagaline.bus.protocol.Bus` on RabbitMQ.

    Args:
        url: ``amqp://user:pass@host:5672/[vhost][?exchange=NAME]``; the exchange (default
            ``sagaline``) is the namespace: every group's queue is named after it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._ns = _Namespace.parse(url)
        self._connection: aio_pika.RobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._subscriptions: set[_AmqpSubscription] = set()
        # The broker's lock is held by a connection, so it cannot tell this bus's own
        # subscribes apart: they take turns here first.
        self._registry_turn = asyncio.Lock()

    @property
    def dedupes(self) -> bool:
        return False

    async def open(self) -> None:
        if self._connection is not None:
            return
        url = URL(self._ns.url)
        # Reconnect every second unless the URL says otherwise (aio-pika's default is 5 s).
        retry: dict[str, Any] = (
            {} if "reconnect_interval" in url.query else {"reconnect_interval": 1}
        )
        # Not connect_robust(): a failed first attempt must still close what it started.
        connection = aio_pika.RobustConnection(
            url, client_properties={"connection_name": f"sagaline {self._ns.exchange}"}, **retry
        )
        try:
            async with _guard(self._ns, "connect", CONNECT_TIMEOUT):
                await connection.connect(timeout=CONNECT_TIMEOUT)
                channel = await connection.channel(publisher_confirms=True)
                self._exchange = await self._declare_exchange(channel)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection = connection

    async def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        connection, exchange = self._opened()
        if not connection.connected.is_set():
            raise self._ns.down("the connection was lost; reconnecting", "publish again later")
        async with _guard(self._ns, f"publish {len(messages)} messages", PUBLISH_TIMEOUT):
            results = await asyncio.gather(
                *(exchange.publish(_outgoing(m), m.topic, mandatory=False) for m in messages),
                return_exceptions=True,
            )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise BusUnavailableError(
                f"RabbitMQ at {self._ns.where} did not confirm {len(failed)} of {len(messages)} "
                f"messages ({self._ns.reason(failed[0])}); publish them again later (their ids "
                f"make a retry harmless)"
            ) from failed[0]

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: DeliveryHandler,
        *,
        prefetch: int = 64,
        ack_wait: float = 30.0,
    ) -> Subscription:
        connection, _ = self._opened()
        _check_name("group", group, reserved="@")
        if not connection.connected.is_set():
            raise self._ns.down("the connection was lost; reconnecting", "subscribe again later")
        wanted = set(topics)
        async with _guard(self._ns, f"join group {group!r}", SUBSCRIBE_TIMEOUT):
            channel = await connection.channel()
            try:
                queue = await self._join(channel, group, wanted, prefetch)
                sub = _AmqpSubscription(group, channel, queue, handler, ack_wait, self._forget)
                await sub.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await channel.close()
                raise
        self._subscriptions.add(sub)
        return sub

    async def aclose(self) -> None:
        for sub in list(self._subscriptions):
            await sub.aclose()
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await connection.close()

    def _opened(self) -> tuple[aio_pika.RobustConnection, AbstractExchange]:
        if self._connection is None or self._exchange is None:
            raise BusError(f"the bus {self._ns.where} is not open; call `await bus.open()`")
        return self._connection, self._exchange

    def _forget(self, sub: _AmqpSubscription) -> None:
        self._subscriptions.discard(sub)

    async def _declare_exchange(self, channel: AbstractRobustChannel) -> AbstractExchange:
        return await channel.declare_exchange(
            self._ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def _join(
        self, channel: AbstractRobustChannel, group: str, wanted: set[str], prefetch: int
    ) -> AbstractRobustQueue:
        """Declare the group's queue and bind exactly ``wanted``, keeping the registry true.

        Everything here is on ``channel``, which is robust: after a reconnect it declares
        the exchange, the queue and its current bindings again by itself.
        """
        await channel.set_qos(prefetch_count=prefetch)
        await self._declare_exchange(channel)
        async with self._registry() as registry:
            old = await _record(registry, self._ns.registry, group, wanted, widen=True)
            queue = await channel.declare_queue(
                self._ns.queue(group), durable=True, arguments=_QUORUM
            )
            for topic in sorted(wanted):
                await queue.bind(self._ns.exchange, topic)
            for topic in sorted(old - wanted):
                await queue.unbind(self._ns.exchange, topic)
            await _record(registry, self._ns.registry, group, wanted, widen=False)
        return queue

    @contextlib.asynccontextmanager
    async def _registry(self) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A plain channel holding the namespace's registry lock.

        Plain, not robust: an error closes it for good instead of reopening it behind our
        back, which is what the lock's retries need.
        """
        connection, _ = self._opened()
        async with self._registry_turn:
            if connection.transport is None:
                raise self._ns.down("the connection was lost; reconnecting", "try again later")
            raw = connection.transport.connection
            channel = await _take_lock(raw, self._ns.lock)
            try:
                await channel.queue_declare(self._ns.registry, durable=True, arguments=_QUORUM)
                yield channel
            finally:
                with contextlib.suppress(*_SETTLE_ERRORS):
                    if channel.is_closed:
                        channel = await raw.channel()
                    await channel.queue_delete(self._ns.lock)
                    await channel.close()


class _AmqpSubscription:
    """One member of a group: a robust channel with one consumer on the group's queue."""

    def __init__(
        self,
        group: str,
        channel: AbstractRobustChannel,
        queue: AbstractRobustQueue,
        handler: DeliveryHandler,
        ack_wait: float,
        on_close: Callable[[_AmqpSubscription], None],
    ) -> None:
        self.group = group
        self.ack_wait = ack_wait
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._on_close = on_close
        self._closed = False
        self.unanswered: set[_AmqpDelivery] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._queue.consume(self._on_message)

    async def aclose(self) -> None:
        """Cancel the handlers still running, then close the channel.

        Closing the channel ends the consumer and returns every unanswered delivery to the
        queue, for the group's other members or its next one; deliveries arriving until
        then are left unanswered on purpose.
        """
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        for delivery in list(self.unanswered):
            delivery.stop_timer()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(*_SETTLE_ERRORS):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._channel.close()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        # Our own task, not aio-pika's: a reconnect cancels aio-pika's, and a handler must
        # not see CancelledError for a network blip (it would read it as shutdown).
        if not self._closed:
            self.spawn(self._handle(_AmqpDelivery(self, incoming)))

    async def _handle(self, delivery: _AmqpDelivery) -> None:
        try:
            await self._handler(delivery)
        except Exception:
            log.warning(
                "handler of group %r failed on message %r; redelivering it in %.0f s",
                self.group,
                delivery.message.id,
                FAILED_HANDLER_DELAY,
                exc_info=True,
            )
            await delivery.nack(FAILED_HANDLER_DELAY)


class _AmqpDelivery:
    """A delivery answered once: by ack, by nack, or by its ``ack_wait`` timer."""

    def __init__(self, sub: _AmqpSubscription, incoming: AbstractIncomingMessage) -> None:
        self._sub = sub
        self._incoming = incoming
        self._message = _incoming(incoming)
        self._answered = False
        sub.unanswered.add(self)
        self._timer = asyncio.get_running_loop().call_later(sub.ack_wait, self._expire)

    @property
    def message(self) -> Message:
        return self._message

    @property
    def redelivered(self) -> bool:
        return bool(self._incoming.redelivered)

    async def ack(self) -> None:
        if self._answer():
            await self._settle(self._incoming.ack())

    async def nack(self, delay: float = 0.0) -> None:
        if not self._answer():
            return
        if delay > 0:
            self._sub.spawn(self._requeue(delay))
        else:
            await self._requeue(0.0)

    def stop_timer(self) -> None:
        self._timer.cancel()

    def _answer(self) -> bool:
        """Claim the one answer; a late ack after the timer requeued is a no-op."""
        if self._answered:
            return False
        self._answered = True
        self._timer.cancel()
        self._sub.unanswered.discard(self)
        return True

    def _expire(self) -> None:
        if self._answer():
            log.info(
                "message %r to group %r unanswered after %.0f s; requeueing it",
                self._message.id,
                self._sub.group,
                self._sub.ack_wait,
            )
            self._sub.spawn(self._requeue(0.0))

    async def _requeue(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._settle(self._incoming.nack(requeue=True))

    async def _settle(self, answer: Coroutine[Any, Any, None]) -> None:
        """Send an answer; if the channel it came on is gone, the broker redelivers."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await answer
        except _SETTLE_ERRORS as exc:
            log.debug("answer for %r lost (%r); it will be redelivered", self._message.id, exc)


def _outgoing(message: Message) -> aio_pika.Message:
    headers: HeadersType = dict(message.headers)
    return aio_pika.Message(
        message.body,
        headers=headers,
        message_id=message.id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _incoming(incoming: AbstractIncomingMessage) -> Message:
    topic = incoming.routing_key or ""
    body = incoming.body
    message_id = incoming.message_id or (
        "sha256:" + hashlib.sha256(topic.encode() + b"\0" + body).hexdigest()
    )
    headers = {k: _text(v) for k, v in (incoming.headers or {}).items() if v is not None}
    return Message(id=message_id, topic=topic, body=body, headers=headers)


def _check_name(what: str, name: str, *, reserved: str) -> None:
    """Refuse early what AMQP would refuse later, or what would collide with our own."""
    if _NAME.fullmatch(name) is None or name.startswith(reserved):
        raise BusError(
            f"{what} {name!r} cannot name a RabbitMQ queue: use letters, digits and "
            f"'-_.:@#,/+', not starting with {reserved!r}"
        )


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


async def _take_lock(raw: aiormq.abc.AbstractConnection, name: str) -> aiormq.abc.AbstractChannel:
    """A channel whose connection owns the exclusive queue ``name``: a broker-wide mutex."""
    while True:
        channel = await raw.channel()
        try:
            await channel.queue_declare(name, exclusive=True, auto_delete=True)
            return channel
        except ChannelLockedResource:
            await asyncio.sleep(random.uniform(0.05, 0.25))  # another process is in


async def _record(
    channel: aiormq.abc.AbstractChannel,
    registry: str,
    group: str,
    topics: set[str],
    *,
    widen: bool,
) -> set[str]:
    """Rewrite the registry with ``group``'s topics (added to the old ones if ``widen``).

    Returns the topics recorded for ``group`` before. The old messages are acked only
    after the new one is confirmed, so a crash leaves more entries, never fewer.
    """
    tags, groups = await _read(channel, registry)
    old = groups.get(group, set())
    groups[group] = old | topics if widen else set(topics)
    body = json.dumps({"groups": {g: sorted(t) for g, t in groups.items()}}, sort_keys=True)
    await channel.basic_publish(body.encode(), routing_key=registry, properties=_PERSISTENT)
    if tags:
        await channel.basic_ack(tags[-1], multiple=True)
    return old


async def _read(
    channel: aiormq.abc.AbstractChannel, registry: str
) -> tuple[list[int], dict[str, set[str]]]:
    """Take every registry message (unacked) and merge them by union."""
    tags: list[int] = []
    groups: dict[str, set[str]] = {}
    while True:
        got = await channel.basic_get(registry, no_ack=False)
        if not isinstance(got.delivery, spec.Basic.GetOk):
            return tags, groups
        tags.append(got.delivery.delivery_tag or 0)
        for group, topics in _entries(got.body):
            groups.setdefault(group, set()).update(topics)


def _entries(body: bytes) -> list[tuple[str, list[str]]]:
    try:
        groups = json.loads(body)["groups"]
        return [(str(g), [str(t) for t in ts]) for g, ts in dict(groups).items()]
    except (ValueError, TypeError, KeyError):
        return []  # not ours: nothing to merge


async def delete_namespace(url: str) -> None:
    """Delete the exchange of ``url`` and every group queue the registry names.

    For tests and teardown: it takes the groups' messages with it. Nothing there is not
    an error.

    Raises:
        BusUnavailableError: the broker cannot be reached.
    """
    ns = _Namespace.parse(url)
    doing = f"delete exchange {ns.exchange!r}"
    async with _guard(ns, doing, SUBSCRIBE_TIMEOUT), aiormq.connect(ns.url) as connection:
        channel = await connection.channel()
        try:
            _, groups = await _read(channel, ns.registry)
        except ChannelNotFoundEntity:
            groups = {}
            channel = await connection.channel()
        for group in sorted(groups):
            await channel.queue_delete(ns.queue(group))
        await channel.queue_delete(ns.registry)
        await channel.exchange_delete(ns.exchange)
