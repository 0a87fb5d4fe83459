"""The NATS JetStream bus: ``nats://host:4222[?stream=SAGALINE&prefix=sagaline]``.

One stream (file storage) holds the subjects ``PREFIX.>``; topic ``T`` is subject
``PREFIX.T``. A group is one durable pull consumer *per topic*, named from the group and
the topic: the server here (2.9) takes a single filter subject per consumer, and one layout
on every server version spares a migration when a server gains ``filter_subjects`` (2.10).
Subscribing a group with other topics creates the new topics' consumers and deletes the
ones it no longer names.

Publishes carry ``Nats-Msg-Id``, so the stream drops a repeated id within its duplicate
window (two minutes); a retry after that is delivered again and the inbox absorbs it.

Order: JetStream stores one stream's messages in the order it receives them (the stream
sequence), and a consumer delivers them in that order the first time. That says little
here: a batch is published concurrently (its messages may be stored in any order), each
topic has its own consumer, a member handles up to ``prefetch`` deliveries at once,
members of a group compete, and a nack or an ack_wait timeout redelivers a message after
later ones. Sagaline relies on no order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from sagaline.bus.protocol import DeliveryHandler, Message, Subscription
from sagaline.model.errors import BusError, BusUnavailableError
from sagaline.model.names import check_name
from sagaline.model.topics import check_topic
from sagaline.model.urls import redact

__all__ = ["NatsBus", "delete_namespace"]

log = logging.getLogger("sagaline.nats")

OPEN_TIMEOUT = 5.0
"""Seconds ``open`` keeps trying to reach the server: the client alone would retry forever."""
REQUEST_TIMEOUT = 5.0
"""Seconds to wait for the server's answer to one publish or JetStream API call."""
FETCH_WAIT = 5.0
"""Seconds one idle pull request waits for a message before it is renewed."""
CONTENDED_WAIT = 0.5
"""The same while a subscription has more idle topics than free slots."""
BURST_WAIT = 0.1
"""Seconds a follow-up pull waits to fill free slots: how long a backlog's messages wait."""
DUPLICATE_WINDOW = 120.0
FAILED_HANDLER_DELAY = 1.0
_NATS_FAILURES = (nats.errors.Error, OSError)
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_SUBJECT = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


class NatsBus:
    """The :class:`~sagaline.bus.Bus` on NATS JetStream (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._server, self._stream, self._prefix = _parse(url)
        self._where = redact(self._server)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subs: set[_NatsSubscription] = set()

    @property
    def dedupes(self) -> bool:
        return True

    async def open(self) -> None:
        if self._nc is not None:
            return
        self._nc = await _connect(self._server, self._where, reconnect=True)
        self._js = self._nc.jetstream(timeout=REQUEST_TIMEOUT)
        try:
            await self._ensure_stream(self._js)
        except BaseException:
            await self.aclose()
            raise

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Create the stream, or add what sagaline needs to one that exists (its subjects,
        a duplicate window of at least two minutes), keeping the operator's other settings
        (limits, replicas, storage) as they are."""
        subject = f"{self._prefix}.>"
        try:
            try:
                info = await js.stream_info(self._stream)
            except nats.js.errors.NotFoundError:
                config = api.StreamConfig(
                    name=self._stream,
                    subjects=[subject],
                    storage=api.StorageType.FILE,
                    duplicate_window=DUPLICATE_WINDOW,
                )
                await js.add_stream(config)
                return
            subjects = list(info.config.subjects or [])
            window = max(info.config.duplicate_window, DUPLICATE_WINDOW)  # longer dedupes more
            if subject not in subjects or window != info.config.duplicate_window:
                if subject not in subjects:
                    subjects.append(subject)
                await js.update_stream(
                    replace(info.config, subjects=subjects, duplicate_window=window)
                )
        except _NATS_FAILURES as exc:
            raise self._failure(f"cannot set up stream {self._stream!r} ({subject})", exc) from exc

    async def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        for message in messages:
            check_topic(message.topic)
        js = self._connected("publish")
        results = await asyncio.gather(
            *(self._publish_one(js, m) for m in messages), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise BusUnavailableError(
                f"NATS at {self._where} did not confirm {len(failed)} of {len(messages)} "
                f"messages ({_reason(failed[0])}); some may have gone out: publish them "
                f"again (their ids make that harmless)"
            ) from failed[0]

    async def _publish_one(self, js: JetStreamContext, message: Message) -> None:
        headers = {**message.headers, "Nats-Msg-Id": message.id}
        await js.publish(
            f"{self._prefix}.{message.topic}",
            message.body,
            timeout=REQUEST_TIMEOUT,
            stream=self._stream,  # refused unless it lands in our stream
            headers=headers,
        )

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: DeliveryHandler,
        *,
        prefetch: int = 64,
        ack_wait: float = 30.0,
    ) -> Subscription:
        check_name("group", group)
        wanted = {_consumer_name(group, check_topic(t)): t for t in topics}
        if prefetch < 1 or ack_wait <= 0:
            raise BusError(f"prefetch must be ≥ 1 and ack_wait > 0 (got {prefetch}, {ack_wait})")
        js = self._connected("subscribe")
        try:
            for name, topic in wanted.items():
                await js.add_consumer(
                    self._stream,
                    _consumer_config(group, topic, name, prefetch, ack_wait, self._prefix),
                )
            await self._drop_consumers(js, group, keep=set(wanted))
            pulls = [await js.pull_subscribe_bind(name, stream=self._stream) for name in wanted]
        except _NATS_FAILURES as exc:
            raise self._failure(f"cannot subscribe group {group!r}", exc) from exc
        assert self._nc is not None
        sub = _NatsSubscription(self, self._nc, pulls, handler, prefetch, ack_wait)
        self._subs.add(sub)
        return sub

    async def _drop_consumers(self, js: JetStreamContext, group: str, keep: set[str]) -> None:
        """Delete the group's consumers of topics it no longer names: the last subscribe
        decides the group's topics, as one consumer's filter would."""
        mark = _description(group, "")
        offset = 0
        while infos := await js.consumers_info(self._stream, offset=offset):
            offset += len(infos)
            for info in infos:
                described = info.config.description or ""
                if info.name not in keep and described.startswith(mark):
                    with contextlib.suppress(nats.js.errors.NotFoundError):
                        await js.delete_consumer(self._stream, info.name)

    def _connected(self, doing: str) -> JetStreamContext:
        if self._js is None or self._nc is None or self._nc.is_closed:
            raise BusError(f"cannot {doing}: the bus on {self._where} is not open; call open()")
        if not self._nc.is_connected:
            raise BusUnavailableError(
                f"cannot {doing}: NATS at {self._where} is unreachable (reconnecting); "
                f"try again later"
            )
        return self._js

    def _failure(self, doing: str, exc: BaseException) -> BusError:
        """A server's refusal is a configuration problem; anything else may pass."""
        if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError):
            return BusError(
                f"{doing} on {self._where}: JetStream does not answer; start nats-server with "
                f"-js (JetStream enabled)"
            )
        if isinstance(exc, nats.js.errors.APIError) and not isinstance(
            exc, nats.js.errors.ServiceUnavailableError
        ):
            return BusError(f"{doing} on {self._where}: the server refused: {_reason(exc)}")
        return BusUnavailableError(
            f"{doing}: NATS at {self._where} did not answer ({_reason(exc)}); try again later"
        )

    async def aclose(self) -> None:
        for sub in list(self._subs):
            await sub.aclose()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(*_NATS_FAILURES):
                await asyncio.wait_for(nc.close(), REQUEST_TIMEOUT)


class _Window:
    """The delivery slots of one subscription, shared by its topics' pull loops.

    First come, first served: a loop that gives a slot back and asks again queues behind
    the loops already waiting, so no topic starves when there are more topics than slots.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def contended(self) -> bool:
        return bool(self._waiting)

    async def take_one(self) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        slot = asyncio.get_running_loop().create_future()
        self._waiting.append(slot)
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self.give(1)  # handed over just as we were cancelled
            raise

    def take_free(self) -> int:
        taken = max(self._free, 0)
        self._free -= taken
        return taken

    def give(self, n: int) -> None:
        """Return ``n`` slots; negative when a pull brought more than it asked for."""
        self._free += n
        while self._free > 0 and self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                self._free -= 1
                slot.set_result(None)


class _NatsSubscription:
    """Pull loops, one per topic consumer, handing messages to ``handler`` concurrently.

    An idle loop holds one slot in a long pull (so it sees a new message at once); after a
    message it fills every free slot with short pulls, to drain a backlog in batches.
    """

    def __init__(
        self,
        bus: NatsBus,
        nc: Client,
        pulls: list[JetStreamContext.PullSubscription],
        handler: DeliveryHandler,
        prefetch: int,
        ack_wait: float,
    ) -> None:
        self._bus, self._nc, self._pulls, self._handler = bus, nc, pulls, handler
        self._window = _Window(prefetch)
        self._ack_wait = ack_wait
        self._handling: set[asyncio.Task[None]] = set()
        self._unanswered: dict[_NatsDelivery, float] = {}
        """Deliveries in hand, with when the server takes them back by itself."""
        self._loops = [asyncio.create_task(self._pull(p), name="sagaline-nats-pull") for p in pulls]

    async def _pull(self, pull: JetStreamContext.PullSubscription) -> None:
        failures = 0
        while not self._nc.is_closed:
            if not self._nc.is_connected:
                # A pull sent now would wait in the client's buffer and reach the server
                # stale; the client reconnects by itself.
                failures += 1
                await asyncio.sleep(_backoff(failures))
                continue
            await self._window.take_one()
            # While other topics wait for a slot, poll briefly and pass it on.
            wait = CONTENDED_WAIT if self._window.contended else FETCH_WAIT
            try:
                msgs = await pull.fetch(1, timeout=wait)
            except TimeoutError:  # nothing new (or the connection dropped meanwhile)
                self._window.give(1)
                continue
            except _NATS_FAILURES as exc:
                self._window.give(1)
                failures += 1
                (log.warning if failures == 1 else log.debug)(
                    "pulling from NATS at %s failed (%s); retrying", self._bus._where, _reason(exc)
                )
                await asyncio.sleep(_backoff(failures))
                continue
            failures = 0
            self._hand_out(msgs, 1)
            await self._burst(pull)

    async def _burst(self, pull: JetStreamContext.PullSubscription) -> None:
        while (taken := self._window.take_free()) > 0:
            try:
                msgs = await pull.fetch(taken, timeout=BURST_WAIT)
            except _NATS_FAILURES:  # a timeout included: the backlog is drained
                self._window.give(taken)
                return
            self._hand_out(msgs, taken)
            if len(msgs) < taken:
                return

    def _hand_out(self, msgs: list[Msg], taken: int) -> None:
        self._window.give(taken - len(msgs))
        if len(self._unanswered) > self._window.size:
            self._forget_settled()
        expiry = time.monotonic() + self._ack_wait
        for msg in msgs:
            delivery = _NatsDelivery(msg, self._bus._prefix, self._bus._where)
            self._unanswered[delivery] = expiry
            task = asyncio.create_task(self._handle(delivery), name="sagaline-nats-handle")
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)

    def _forget_settled(self) -> None:
        """Drop what was answered, or what the server has taken back after ``ack_wait``
        (a handler may return without answering, and answer later or never)."""
        now = time.monotonic()
        for delivery, expiry in list(self._unanswered.items()):
            if delivery.answered or expiry < now:
                del self._unanswered[delivery]

    async def _handle(self, delivery: _NatsDelivery) -> None:
        try:
            await self._handler(delivery)
        except Exception as exc:
            log.warning(
                "handler failed on message %r (%s); redelivering it in %.0f s",
                delivery.message.id,
                _reason(exc),
                FAILED_HANDLER_DELAY,
                exc_info=True,
            )
            with contextlib.suppress(BusError):
                await delivery.nack(FAILED_HANDLER_DELAY)
        finally:
            self._window.give(1)
            if delivery.answered:
                self._unanswered.pop(delivery, None)

    async def aclose(self) -> None:
        """Stop pulling and handling; what is in hand unanswered goes back to the group at
        once rather than after ``ack_wait`` (the consumers stay)."""
        self._bus._subs.discard(self)
        tasks = [*self._loops, *self._handling]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops = []
        self._forget_settled()
        for delivery in list(self._unanswered):
            with contextlib.suppress(BusError):
                await delivery.nack()
        self._unanswered.clear()
        for pull in self._pulls:
            with contextlib.suppress(*_NATS_FAILURES):
                await pull.unsubscribe()
        self._pulls = []


class _NatsDelivery:
    def __init__(self, msg: Msg, prefix: str, where: str) -> None:
        meta = msg.metadata
        headers = msg.headers or {}
        self._msg, self._where, self._answered = msg, where, False
        self._redelivered = meta.num_delivered > 1
        self._message = Message(
            # A foreign producer's message has no id: its place in the stream is stable.
            id=headers.get("Nats-Msg-Id") or f"{meta.stream}:{meta.sequence.stream}",
            topic=msg.subject.removeprefix(f"{prefix}."),
            body=msg.data,
            headers={k: v for k, v in headers.items() if not k.lower().startswith("nats-")},
        )

    @property
    def message(self) -> Message:
        return self._message

    @property
    def answered(self) -> bool:
        return self._answered

    @property
    def redelivered(self) -> bool:
        return self._redelivered

    async def ack(self) -> None:
        await self._answer("ack", self._msg.ack)

    async def nack(self, delay: float = 0.0) -> None:
        await self._answer("nack", lambda: self._msg.nak(delay=delay))

    async def _answer(self, what: str, send: Callable[[], Awaitable[None]]) -> None:
        """Only the first answer counts: a second one would confuse the server's count."""
        if self._answered:
            return
        self._answered = True
        try:
            await send()
        except _NATS_FAILURES as exc:
            raise BusUnavailableError(
                f"cannot {what} message {self._message.id!r}: NATS at {self._where} is "
                f"unreachable ({_reason(exc)}); it will be redelivered"
            ) from exc


async def delete_namespace(url: str) -> None:
    """Delete the stream of ``url`` (and with it the groups' consumers); no error if absent."""
    server, stream, _ = _parse(url)
    nc = await _connect(server, redact(server), reconnect=False)
    try:
        await nc.jetstream(timeout=REQUEST_TIMEOUT).delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    except _NATS_FAILURES as exc:
        raise BusUnavailableError(
            f"cannot delete stream {stream!r} on {redact(server)} ({_reason(exc)})"
        ) from exc
    finally:
        await nc.close()


async def _connect(server: str, where: str, *, reconnect: bool) -> Client:
    """A connected client, or :class:`BusUnavailableError` within ``OPEN_TIMEOUT``.

    With ``reconnect`` the client retries forever once connected (subscriptions resume on
    their own), so the first connection is bounded here instead.
    """
    nc = Client()

    async def error(exc: Exception) -> None:
        log.debug("NATS at %s: %s", where, _reason(exc))

    async def disconnected() -> None:
        if not nc.is_closed:  # closing on purpose is no news
            log.warning("lost the connection to NATS at %s; reconnecting", where)

    async def reconnected() -> None:
        log.info("reconnected to NATS at %s", where)

    try:
        await asyncio.wait_for(
            nc.connect(
                server,
                error_cb=error,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                allow_reconnect=reconnect,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=2,
                name="sagaline",
            ),
            OPEN_TIMEOUT,
        )
    except (TimeoutError, *_NATS_FAILURES) as exc:
        last = nc.last_error or exc
        with contextlib.suppress(*_NATS_FAILURES):
            await nc.close()
        raise BusUnavailableError(
            f"cannot reach NATS at {where} ({_reason(last)}); start nats-server -js there "
            f"or fix the bus URL"
        ) from exc
    return nc


def _parse(url: str) -> tuple[str, str, str]:
    """``(server URL without the query, stream, subject prefix)``, checked."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"stream", "prefix"})
    if parts.scheme != "nats" or not parts.hostname or unknown:
        raise BusError(
            f"bad NATS URL {redact(url)!r}: use nats://host:4222?stream=NAME&prefix=PREFIX "
            f"(both optional)" + (f"; unknown parameters {unknown}" if unknown else "")
        )
    stream = query.get("stream", ["SAGALINE"])[-1]
    prefix = query.get("prefix", ["sagaline"])[-1]
    if not _TOKEN.fullmatch(stream):
        raise BusError(f"bad stream name {stream!r}: use letters, digits, '_' and '-'")
    if not _SUBJECT.fullmatch(prefix):
        raise BusError(
            f"bad subject prefix {prefix!r}: use words of letters, digits, '_' "
            f"and '-' joined by dots"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), stream, prefix


def _consumer_name(group: str, topic: str) -> str:
    """Deterministic and within NATS's name rules; the digests keep apart names that
    differ only in characters NATS does not take (``a.b`` and ``a_b``)."""
    return f"{_slug(group)}_{_slug(topic)}"


def _slug(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', text)[:48]}-{digest}"


def _description(group: str, topic: str) -> str:
    return f"sagaline group {group!r}; topic {topic}"


def _consumer_config(
    group: str, topic: str, name: str, prefetch: int, ack_wait: float, prefix: str
) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        name=name,
        durable_name=name,
        description=_description(group, topic),
        filter_subject=f"{prefix}.{topic}",
        deliver_policy=api.DeliverPolicy.NEW,  # a new group gets what is published from now on
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,
        # Room for several members of prefetch each; the consumer is the group's limit.
        max_ack_pending=max(prefetch * 16, 1024),
    )


def _backoff(failures: int) -> float:
    return float(min(0.1 * 2**failures, 2.0))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, nats.js.errors.APIError) and exc.description:
        return f"{exc.description} (JetStream error {exc.err_code})"
    return str(exc) or type(exc).__name__
