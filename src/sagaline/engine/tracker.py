"""Choreography's central view: ``Choreography`` declarations and the ``Tracker`` process.

A tracker subscribes to every topic it knows as the one group ``tracker`` (so several
tracker processes share the work), and records each envelope in a store of its own. On
each delivery, duplicate or not, it re-reads the saga's events, decides its summary
(:mod:`sagaline.model.choreography`) and has the store apply it only if no event was
recorded since (compare-and-set); only then is the delivery acked. So the last event
recorded for a saga always leaves its summary right, whichever process recorded it, and
a crash before the ack only means the same work again.

What it knows (declarations, handlers) is written to its store when it opens, so a
tracker without a bus (the CLI, reading) knows it too; the topics subscribed are all the
store knows, so that every member of the group asks for the same ones (the group's
topics are whatever its last member subscribed to).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from sagaline.bus import Bus, Delivery, Subscription, open_bus
from sagaline.engine.handlers import HandlerDef, handlers_of
from sagaline.model import choreography as choreo
from sagaline.model import envelope
from sagaline.model.choreography import (
    Declaration,
    SagaNotFoundError,
    SagaStatus,
    SagaView,
)
from sagaline.model.errors import BusError, BusUnavailableError, DefinitionError, SagalineError
from sagaline.model.names import check_name
from sagaline.store.tracker import Keyset, TrackerStore, open_tracker_store

log = logging.getLogger("sagaline.tracker")

GROUP = "tracker"
"""The bus group every tracker process joins: each event is recorded by one of them."""
_declarations: dict[str, Declaration] = {}


class Choreography(Declaration):
    """Declare a choreographed saga, so the tracker can tell how it ended or that it stalled.

    ``Choreography("order", start="OrderCreated", completed="InventoryReserved",
    compensated="PaymentRefunded", deadline=timedelta(minutes=5))``: a saga whose first
    event is an ``OrderCreated`` ends COMPLETED with an ``InventoryReserved``, COMPENSATED
    with a ``PaymentRefunded``, FAILED with one of ``failed``; one not ended within
    ``deadline`` (seconds or a timedelta) of its start is STALLED. Declaring registers it
    (import the module in the tracker process: ``sagaline tracker --import``).

    Raises:
        DefinitionError: a terminal event named twice, another declaration of the same
            name or the same start event, no completed event, a deadline not positive.
        InvalidNameError: a name or topic sagaline does not accept.
    """

    def __init__(
        self,
        name: str,
        *,
        start: str,
        completed: str | Sequence[str],
        compensated: str | Sequence[str] = (),
        failed: str | Sequence[str] = (),
        deadline: float | timedelta | None = None,
    ) -> None:
        d = choreo.declare(
            name,
            start=start,
            completed=completed,
            compensated=compensated,
            failed=failed,
            deadline=deadline,
        )
        super().__init__(d.name, d.start, d.completed, d.compensated, d.failed, d.deadline)
        _register(self)


def _register(declaration: Declaration) -> None:
    same = _declarations.get(declaration.name)
    if same is not None and same != declaration:
        raise DefinitionError(
            f"choreography {declaration.name!r} is already declared otherwise ({same!r}); "
            f"give one of them another name"
        )
    for other in _declarations.values():
        if other.start == declaration.start and other.name != declaration.name:
            raise DefinitionError(
                f"choreographies {other.name!r} and {declaration.name!r} both start with "
                f"{declaration.start!r}; a saga belongs to the one its first event starts"
            )
    _declarations[declaration.name] = declaration


def declarations() -> list[Declaration]:
    """Every declared choreography, by name."""
    return [_declarations[name] for name in sorted(_declarations)]


def subscription_of(handler: HandlerDef) -> choreo.Subscription:
    # A handler without service= runs in whichever engine's service: not known here.
    service = handler.service_in(None)
    return choreo.Subscription(handler.name, service, handler.topic, handler.on_failure)


@dataclass(frozen=True)
class SagaPage:
    """One page of a sagas list, and where the next one starts (None: this is the last)."""

    sagas: list[SagaView]
    next: Keyset | None


class Tracker:
    """The tracker: with ``bus``, records every event; without, reads what was recorded.

    Args:
        db: the tracker's own store, ``sqlite:///tracker.db`` or ``postgresql://...``
            (tables ``tracker_*``; may share a sagaline store's database).
        bus: the services' bus URL; without one the tracker only reads (the CLI).
        clock: Unix seconds, for the deadline (a test passes a ``FakeClock``).
        correlation_field: as for ``Engine``: the field of a foreign message's data that
            names its saga.
    """

    def __init__(
        self,
        *,
        db: str,
        bus: str | None = None,
        clock: Callable[[], float] = time.time,
        correlation_field: str | None = None,
        prefetch: int = 64,
        ack_wait: float = 30.0,
    ) -> None:
        if correlation_field is not None:
            check_name("correlation field", correlation_field)
        self.store: TrackerStore = open_tracker_store(db)
        self._bus: Bus | None = open_bus(bus) if bus is not None else None
        self._clock = clock
        self._correlation_field = correlation_field
        self._prefetch = prefetch
        self._ack_wait = ack_wait
        self._by_start: dict[str, Declaration] = {}
        self._subscriptions: list[choreo.Subscription] = []
        self._links: set[choreo.Link] = set()
        self.topics: list[str] = []
        """What this tracker subscribes to (known once it opened)."""
        self._ready = asyncio.Event()
        self._failure: BusError | None = None
        self._connector: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._opened = False

    async def __aenter__(self) -> Tracker:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store (a reader refuses one no tracker wrote) and, with a bus, start
        subscribing in the background: :meth:`ready` says when every topic is."""
        if self._opened:
            return
        own = [subscription_of(h) for h in handlers_of(None)]
        if self._bus is not None and not own and not declarations():
            raise DefinitionError(
                "the tracker knows no topic to listen to; import the modules that declare "
                "sagaline.Choreography(...) and @sagaline.on handlers "
                "(sagaline tracker --import MODULE)"
            )
        await self.store.open(create=self._bus is not None)
        self._opened = True
        try:
            if self._bus is not None:
                await self.store.save_knowledge(declarations(), own)
            await self._load()
            if self._bus is not None:
                self._connector = asyncio.create_task(self._connect(), name="sagaline-tracker")
        except BaseException:
            await self.aclose()
            raise

    async def _load(self) -> None:
        stored = await self.store.declarations()
        own = {d.name for d in declarations()}
        # This process's own declarations win over what another tracker stored.
        ordered = [d for d in stored if d.name not in own] + declarations()
        self._by_start = {d.start: d for d in ordered}
        self._subscriptions = await self.store.subscriptions()
        self._links = set(await self.store.links())
        topics = {t for d in self._by_start.values() for t in d.topics()}
        topics |= {s.topic for s in self._subscriptions}
        topics |= {s.on_failure for s in self._subscriptions if s.on_failure}
        self.topics = sorted(topics)

    async def ready(self, timeout: float | None = 30.0) -> None:
        """Wait until the tracker listens to every topic it knows."""
        if self._bus is None:
            raise SagalineError("this tracker has no bus; give it one: Tracker(bus=..., db=...)")
        await asyncio.wait_for(self._ready.wait(), timeout)
        if self._failure is not None:
            raise self._failure

    async def aclose(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.aclose()
            self._subscription = None
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(BaseException):
                await self._connector
            self._connector = None
        if self._bus is not None:
            with contextlib.suppress(Exception):
                await self._bus.aclose()
        if self._opened:
            self._opened = False
            await self.store.aclose()

    async def _connect(self) -> None:
        assert self._bus is not None
        delay = 0.2
        while True:
            try:
                await self._bus.open()
                self._subscription = await self._bus.subscribe(
                    GROUP,
                    self.topics,
                    self._deliver,
                    prefetch=self._prefetch,
                    ack_wait=self._ack_wait,
                )
            except BusUnavailableError as exc:
                log.warning("bus unreachable (%s); trying again in %.1f s", exc, delay)
                with contextlib.suppress(Exception):
                    await self._bus.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except BusError as exc:
                log.error("the bus cannot be used: %s", exc)
                self._failure = exc
            self._ready.set()
            return

    # -- recording ------------------------------------------------------------------------

    async def _deliver(self, delivery: Delivery) -> None:
        m = delivery.message
        event = envelope.from_wire(
            m.id,
            m.topic,
            m.body,
            m.headers,
            correlation_field=self._correlation_field,
            received_at=self._clock(),
        )
        recorded = choreo.Envelope(
            event.id, event.type, event.correlation_id, event.source, event.causation_id, event.time
        )
        try:
            await self.record(recorded)
        except Exception as exc:  # the store is down: the bus keeps the event for us
            log.warning("event %r on %r not recorded yet (%s)", m.id, m.topic, exc)
            await delivery.nack(1.0)
            return
        await delivery.ack()

    async def record(self, event: choreo.Envelope) -> None:
        """Record one envelope (idempotent by id) and bring its saga's summary up to date."""
        await self.store.record([event], self._clock())
        cid = event.correlation_id
        events = (await self.store.events([cid]))[cid]
        summary = choreo.summarize(cid, events, self._by_start)
        found = choreo.links(events)
        # Not applied: an event was recorded since, and its own refresh decides instead.
        await self.store.save_summary(summary, found)
        self._links |= found

    # -- reading --------------------------------------------------------------------------

    async def saga(self, correlation_id: str) -> SagaView:
        """The saga of ``correlation_id``: status, timeline, and what it waits for.

        Raises:
            SagaNotFoundError: no event of that saga was recorded.
        """
        events = (await self.store.events([correlation_id]))[correlation_id]
        if not events:
            raise SagaNotFoundError(correlation_id)
        await self._refresh_knowledge()
        return self._view(correlation_id, events)

    async def sagas(
        self, status: SagaStatus | str | None = None, limit: int = 100
    ) -> list[SagaView]:
        """Sagas, the most recently started first; ``status`` keeps only those in it (the
        first page of :meth:`page`)."""
        return (await self.page(status, limit)).sagas

    async def page(
        self, status: SagaStatus | str | None = None, limit: int = 100, before: Keyset | None = None
    ) -> SagaPage:
        """A page of sagas, the most recently started first, after ``before`` (the
        previous page's ``next``); ``status`` keeps only those in it.

        The store picks them by the status decided when their last event was recorded;
        each is then shown as its events say now, and left out if that is another status
        (a saga whose last event is being recorded at this very moment), so a page may hold
        fewer than ``limit`` and still have a next one. Pages follow the store's order, not
        what is shown: a saga left out is never the reason one is repeated or skipped.
        """
        wanted = None if status is None else SagaStatus(str(status).upper())
        query = choreo.query_for(wanted)
        found = await self.store.list_sagas(query, self._clock(), limit + 1, before)
        summaries = found[:limit]
        last = summaries[-1] if len(found) > limit else None
        events = await self.store.events([s.correlation_id for s in summaries])
        await self._refresh_knowledge()
        views = [self._view(s.correlation_id, events[s.correlation_id]) for s in summaries]
        return SagaPage(
            [v for v in views if wanted is None or v.status is wanted],
            None if last is None else (last.started_at, last.correlation_id),
        )

    async def counts(self) -> dict[SagaStatus, int]:
        """How many sagas are in each status now: every status, zeros included.

        Judged as :meth:`sagas` picks them, from the summary decided when each saga's last
        event was recorded (how it ended, when its deadline falls) and the clock, by the
        store in one grouped query over its indexes: none of their events is read.
        """
        found = await self.store.count_sagas(self._clock())
        return {status: found.get(status, 0) for status in SagaStatus}

    def map(self) -> str:
        """Who publishes and who consumes which event, as a Mermaid flowchart: from the
        handlers' declarations and the traffic recorded (as of the last read)."""
        return choreo.mermaid(self._subscriptions, self._links)

    async def _refresh_knowledge(self) -> None:
        self._subscriptions = await self.store.subscriptions()
        self._links = set(await self.store.links())

    def _view(self, correlation_id: str, events: list[choreo.Envelope]) -> SagaView:
        return choreo.view(
            correlation_id,
            events,
            self._by_start,
            self._clock(),
            self._subscriptions,
            self._links,
        )
