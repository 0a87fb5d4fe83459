"""The embedded broker: a bus kept in a database, so choreography needs no broker installed.

``sqlite:///path/bus.db`` serves every process on this machine, ``postgresql://…[?schema=]``
every process on the network; the database may be a sagaline store's own (the bus's tables
are ``bus_*`` and leave the store's alone). The SQL lives in
:mod:`sagaline.store.sqlite.broker` and :mod:`sagaline.store.postgres.broker`; this module
is the part both share: subscriptions, concurrency, answers, wake-ups and retries.

How it keeps the :class:`~sagaline.bus.protocol.Bus` contract:

- **Groups.** A message is one row; publishing it adds, in the same transaction, one queue
  row per group subscribed to its topic at that moment. Members of a group claim queue
  rows (each row by one member at a time); fan-out is one row per group. A group's rows
  stay while nobody listens: that is its durability.
- **At-least-once.** A claim hides a row for ``ack_wait`` seconds; an ack deletes it, a
  nack (or a handler's exception, as ``nack(1.0)``) shows it again after ``delay``. A
  closed subscription shows its unanswered rows again at once, so another member takes
  them without waiting out ``ack_wait``. A process that dies leaves its rows hidden until
  ``ack_wait`` runs out. ``redelivered`` is true from a row's second claim on.
- **Ids.** The message table is unique by id: a publish of a known id is dropped
  (``dedupes`` is true). A message without an id gets a random one, stored with it, so its
  redeliveries keep it. A message that every group has acked is kept for ``retention``
  seconds (24 hours by default), then pruned by whichever bus on the database runs its
  periodic prune first: the dedupe window is therefore at least ``retention``.
- **Order.** A group's claims hand out its lowest visible sequence numbers first. On
  SQLite those follow commit order (there is one writer at a time); on PostgreSQL,
  insertion order (concurrent publishers interleave). So one publisher's messages reach a
  group with one member, ``prefetch=1`` and no redelivery in the order published, and
  nothing more is promised: redeliveries, several members and ``prefetch`` > 1 (handlers
  run concurrently) reorder them. Nothing in sagaline relies on order.
- **Wake-ups.** A publish wakes this bus's own subscribers at once. Other processes learn
  of it from PostgreSQL's ``NOTIFY`` or from SQLite's ``data_version`` (polled every 2 ms
  while subscribed); each subscriber also sleeps only until its group's next row becomes
  visible (a nack's delay, an ``ack_wait`` running out) and polls once a second anyway.
- **Outages.** ``publish`` and ``subscribe`` raise :class:`BusUnavailableError` while the
  database is unreachable (or, on SQLite, locked past the busy timeout); subscriptions
  retry with backoff and resume on their own.

Acks and nacks of one bus are written together: each waits for the transaction that holds
it, and the acks that arrive while one is being written share the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from sagaline.bus.protocol import DeliveryHandler, Message, Subscription
from sagaline.model.errors import BusError

__all__ = ["EmbeddedBus"]

log = logging.getLogger("sagaline.bus.embedded")

RETENTION = 24 * 3600.0
"""Seconds an acked message is kept (the dedupe window) before it may be pruned."""
PRUNE_EVERY = 600.0
FIRST_PRUNE = 60.0
HANDLER_FAILED_DELAY = 1.0
_MIN_WAIT = 0.002  # a row visible now but not claimable (locked by a claim under way)
_MAX_BACKOFF = 5.0
_CLOSE_TIMEOUT = 10.0  # for a claim under way during an outage

Settlement = tuple[str, int, int, float | None]
"""(group, seq, deliveries at the claim, delay): ``None`` acks, a number of seconds nacks."""


class _Claimed(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def deliveries(self) -> int: ...
    @property
    def id(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def headers(self) -> str: ...
    @property
    def body(self) -> bytes: ...


class _Broker(Protocol):
    """What each database's broker module offers (see their docstrings)."""

    poll_interval: float

    async def open(self) -> None: ...
    async def aclose(self) -> None: ...
    async def publish(self, rows: Sequence[tuple[str, str, str, bytes]]) -> list[str]: ...
    async def subscribe(self, group: str, topics: Sequence[str]) -> None: ...
    async def claim(
        self, group: str, limit: int, ack_wait: float
    ) -> tuple[Sequence[_Claimed], float | None]: ...
    async def settle(self, items: Sequence[Settlement]) -> None: ...
    async def prune(self, older_than: float) -> int: ...
    async def watch(self, wake: Callable[[str | None], None]) -> None: ...
    async def unwatch(self) -> None: ...


def _broker_for(url: str) -> _Broker:
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from sagaline.store.sqlite.broker import SqliteBroker

        return SqliteBroker(url)
    if scheme in ("postgresql", "postgres"):
        from sagaline.store.postgres.broker import PostgresBroker

        return PostgresBroker(url)
    raise BusError(  # not the URL itself: it may hold a password
        f"the embedded bus takes sqlite:///path/bus.db or postgresql://user@host/db, "
        f"not a {scheme}:// URL"
    )


class EmbeddedBus:
    """A :class:`~sagaline.bus.protocol.Bus` in a SQLite file or a PostgreSQL schema.

    Args:
        url: ``sqlite:///path/bus.db`` or ``postgresql://user@host/db[?schema=name]``.
        retention: seconds an acked message is kept, so that a repeated id is dropped.
    """

    def __init__(self, url: str, *, retention: float = RETENTION) -> None:
        self.url = url
        self.retention = retention
        self._broker = _broker_for(url)
        self._state = "new"
        self._subs: set[_Subscription] = set()
        self._settler = _Settler(self._broker)
        self._pruner: asyncio.Task[None] | None = None

    @property
    def dedupes(self) -> bool:
        return True

    async def open(self) -> None:
        if self._state == "open":
            return
        if self._state == "closed":
            raise BusError("this embedded bus was closed; make a new one")
        await self._broker.open()
        self._state = "open"
        self._pruner = asyncio.create_task(self._prune_periodically(), name="sagaline-bus-prune")

    async def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        self._check_open()
        rows = [
            (m.id or uuid.uuid4().hex, m.topic, json.dumps(dict(m.headers)), bytes(m.body))
            for m in messages
        ]
        self._wake_groups(await self._broker.publish(rows))

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: DeliveryHandler,
        *,
        prefetch: int = 64,
        ack_wait: float = 30.0,
    ) -> Subscription:
        self._check_open()
        if prefetch < 1 or ack_wait <= 0:
            raise ValueError(f"prefetch must be >= 1 and ack_wait > 0, not {prefetch}, {ack_wait}")
        await self._broker.subscribe(group, list(dict.fromkeys(topics)))
        sub = _Subscription(self, group, handler, prefetch, ack_wait)
        if not self._subs:
            await self._broker.watch(self._wake)
        self._subs.add(sub)
        sub.start()
        return sub

    async def prune(self, older_than: float | None = None) -> int:
        """Delete acked messages older than ``older_than`` seconds (default: ``retention``).

        Runs by itself every ten minutes; call it to prune now. Returns how many went.
        """
        self._check_open()
        return await self._broker.prune(self.retention if older_than is None else older_than)

    async def aclose(self) -> None:
        if self._state == "closed":
            return
        self._state = "closing"
        for sub in list(self._subs):
            await sub.aclose()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        await self._settler.drain()
        self._state = "closed"
        await self._broker.aclose()

    # -- for subscriptions -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise BusError(f"the embedded bus is {self._state}; open() it first")

    def _wake(self, group: str | None) -> None:
        for sub in self._subs:
            if group is None or sub.group == group:
                sub.wake()

    def _wake_groups(self, groups: Sequence[str]) -> None:
        for group in groups:
            self._wake(group)

    async def _settle(self, items: Sequence[Settlement]) -> None:
        if self._state == "closed":
            return  # the rows come back after ack_wait: at-least-once still holds
        await self._settler.settle(items)

    async def _unsubscribed(self, sub: _Subscription) -> None:
        self._subs.discard(sub)
        if not self._subs:
            await self._broker.unwatch()

    async def _prune_periodically(self) -> None:
        delay = FIRST_PRUNE
        while True:
            await asyncio.sleep(delay)
            delay = PRUNE_EVERY
            try:
                pruned = await self.prune()
            except BusError as exc:
                log.info("pruning the embedded bus failed (%s); trying again later", exc)
            else:
                log.debug("pruned %d acked message(s) from the embedded bus", pruned)


class _Subscription:
    """One member of a group: claims what it has room for, and hands each to a task."""

    def __init__(
        self,
        bus: EmbeddedBus,
        group: str,
        handler: DeliveryHandler,
        prefetch: int,
        ack_wait: float,
    ) -> None:
        self.group = group
        self._bus = bus
        self._handler = handler
        self._prefetch = prefetch
        self._ack_wait = ack_wait
        self._wakeup = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self._held: dict[int, _Delivery] = {}
        self._full = False
        self._closed = False
        self._receiver: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._receiver = asyncio.create_task(self._receive(), name=f"sagaline-bus-{self.group}")

    def wake(self) -> None:
        self._wakeup.set()

    async def _receive(self) -> None:
        broker = self._bus._broker
        backoff = 0.1
        while not self._closed:
            self._wakeup.clear()  # before the claim: a wake-up during it is not lost
            wait = broker.poll_interval
            free = self._prefetch - len(self._handlers)
            self._full = free <= 0
            if free > 0:
                try:
                    claimed, next_in = await broker.claim(self.group, free, self._ack_wait)
                except Exception as exc:
                    log.warning(
                        "group %r cannot claim messages (%s); retrying in %.1f s",
                        self.group,
                        exc,
                        backoff,
                    )
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                backoff = 0.1
                self._full = len(claimed) >= free
                self._forget_expired()
                for row in claimed:
                    self._deliver(row)
                if next_in is not None and not self._full:
                    wait = min(wait, max(next_in, _MIN_WAIT))
            await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        """Until a wake-up (a message, a free slot, aclose) or ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    def _deliver(self, row: _Claimed) -> None:
        message = Message(row.id, row.topic, row.body, _headers(row.headers))
        expires = asyncio.get_running_loop().time() + self._ack_wait
        delivery = _Delivery(self, row.seq, row.deliveries, message, expires)
        self._held[row.seq] = delivery
        if self._closed:
            return  # claimed while closing: handed back with the rest
        task = asyncio.create_task(self._handle(delivery))
        self._handlers.add(task)
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        if self._full:
            self.wake()  # room again for what the last claim had to leave

    def _forget_expired(self) -> None:
        """Rows past their ``ack_wait`` are anybody's again: this member no longer holds them."""
        now = asyncio.get_running_loop().time()
        for seq in [seq for seq, d in self._held.items() if d.expires < now]:
            del self._held[seq]

    async def _handle(self, delivery: _Delivery) -> None:
        try:
            await self._handler(delivery)
        except Exception:
            log.warning(
                "a handler of group %r failed on message %r; redelivering it in %.0f s",
                self.group,
                delivery.message.id,
                HANDLER_FAILED_DELAY,
                exc_info=True,
            )
            if not delivery.answered:
                try:
                    await delivery.nack(HANDLER_FAILED_DELAY)
                except BusError as exc:
                    log.info("cannot nack %r (%s); it returns after ack_wait", delivery, exc)

    async def _answer(self, delivery: _Delivery, delay: float | None) -> None:
        if self._held.get(delivery.seq) is delivery:
            del self._held[delivery.seq]
        await self._bus._settle([(self.group, delivery.seq, delivery.deliveries, delay)])
        if delay is not None:
            self._bus._wake(self.group)  # so that a member's timer counts from the new delay

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # The receiver finishes a claim under way rather than be cancelled in it: rows it
        # claims must be known here to be handed back, not left hidden for ack_wait.
        if self._receiver is not None:
            self.wake()
            done, _ = await asyncio.wait([self._receiver], timeout=_CLOSE_TIMEOUT)
            if not done:
                self._receiver.cancel()
                await asyncio.gather(self._receiver, return_exceptions=True)
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        held = [d for d in self._held.values() if not d.answered]
        self._held.clear()
        try:
            # Fenced by each row's deliveries: a row another member claimed since stays his.
            await self._bus._settle([(self.group, d.seq, d.deliveries, 0.0) for d in held])
        except BusError as exc:
            log.info("cannot hand %d delivery(ies) back (%s); after ack_wait", len(held), exc)
        await self._bus._unsubscribed(self)


class _Delivery:
    def __init__(
        self, sub: _Subscription, seq: int, deliveries: int, message: Message, expires: float
    ) -> None:
        self.seq = seq
        self.deliveries = deliveries
        self.expires = expires
        self.answered = False
        self._sub = sub
        self._message = message

    def __repr__(self) -> str:
        return f"<delivery {self._message.id!r} #{self.deliveries} of {self._sub.group!r}>"

    @property
    def message(self) -> Message:
        return self._message

    @property
    def redelivered(self) -> bool:
        return self.deliveries > 1

    async def ack(self) -> None:
        if not self.answered:
            self.answered = True
            await self._sub._answer(self, None)

    async def nack(self, delay: float = 0.0) -> None:
        if not self.answered:
            self.answered = True
            await self._sub._answer(self, max(0.0, delay))


class _Settler:
    """Writes the acks and nacks that arrive while one write is under way in the next."""

    def __init__(self, broker: _Broker) -> None:
        self._broker = broker
        self._pending: list[tuple[Sequence[Settlement], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def settle(self, items: Sequence[Settlement]) -> None:
        if not items:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)
        self._pending.append((items, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="sagaline-bus-settle")
        await asyncio.shield(done)  # a cancelled handler's ack is still written

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._broker.settle([item for items, _ in batch for item in items])
                except Exception as exc:
                    for _, done in batch:
                        done.set_exception(exc)
                else:
                    for _, done in batch:
                        done.set_result(None)
        finally:
            self._flushing = None

    async def drain(self) -> None:
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing


def _retrieve(done: asyncio.Future[None]) -> None:
    """Mark an ack's error as seen when its handler was cancelled before it could be."""
    if not done.cancelled():
        done.exception()


def _headers(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}
