"""The bus conformance suite: what every :class:`~sagaline.bus.Bus` must do, as checks.

sagaline runs it over each of its buses (embedded SQLite, embedded PostgreSQL, NATS
JetStream, RabbitMQ); a third-party bus passes it before sagaline can rely on it. Each
check is ``async def check(open_bus) -> None`` where ``open_bus()`` returns a new, opened
bus on one fresh namespace (every call within one check sees the same broker state; each
check gets its own namespace). Use it from pytest::

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    async def test_bus(check, open_bus): await check(open_bus)

Waits are for conditions under a generous deadline, never for a speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sagaline.bus.protocol import Bus, Delivery, Message, Subscription
from sagaline.model.errors import BusUnavailableError

OpenBus = Callable[[], Awaitable[Bus]]
DEADLINE = 20.0
"""Seconds a check waits for something the bus must do."""


@dataclass
class Inbox:
    """What one member received, in order, and the conditions waiting on it."""

    received: list[Message] = field(default_factory=list)
    redelivered: list[bool] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, delivery: Delivery) -> None:
        self.received.append(delivery.message)
        self.redelivered.append(delivery.redelivered)
        self.changed.set()

    def ids(self) -> list[str]:
        return [m.id for m in self.received]

    async def until(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"bus: {what} did not happen within {DEADLINE:.0f} s; received {self.ids()}"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.2))


def _topic() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _message(topic: str, n: int, **headers: str) -> Message:
    return Message(
        id=f"{topic}-{n}-{uuid.uuid4().hex[:6]}",
        topic=topic,
        body=f'{{"n": {n}, "text": "żółw ✓"}}'.encode(),
        headers={"x-n": str(n), **headers},
    )


async def _member(
    bus: Bus,
    group: str,
    topics: list[str],
    *,
    ack: bool = True,
    ack_wait: float = 30.0,
    prefetch: int = 64,
) -> tuple[Subscription, Inbox]:
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        if ack:
            await delivery.ack()

    sub = await bus.subscribe(group, topics, handle, prefetch=prefetch, ack_wait=ack_wait)
    return sub, inbox


async def _quiet(seconds: float = 1.0) -> None:
    """Give a bus time to do something it must not do (a duplicate, a stray delivery)."""
    await asyncio.sleep(seconds)


async def messages_arrive_whole(open_bus: OpenBus) -> None:
    """Id, topic, body bytes and headers (non-ASCII included) arrive exactly as published."""
    bus = await open_bus()
    topic = _topic()
    sub, inbox = await _member(bus, "g", [topic])
    sent = [_message(topic, n, **{"x-text": 'żółw ✓ "q"'}) for n in range(3)]
    await bus.publish(sent)
    await inbox.until("3 deliveries", lambda: len(inbox.received) >= 3)
    got = {m.id: m for m in inbox.received}
    for m in sent:
        assert m.id in got, f"message {m.id} was not delivered"
        assert got[m.id].topic == m.topic
        assert got[m.id].body == m.body, (got[m.id].body, m.body)
        for key, value in m.headers.items():
            assert got[m.id].headers.get(key) == value, (key, got[m.id].headers)
    await sub.aclose()
    await bus.aclose()


async def every_group_gets_every_message_once(open_bus: OpenBus) -> None:
    """Fan-out across groups; competing consumers within one; no duplicate when acked."""
    bus_a, bus_b = await open_bus(), await open_bus()
    topic = _topic()
    a1, in_a1 = await _member(bus_a, "group-a", [topic])
    a2, in_a2 = await _member(bus_b, "group-a", [topic])
    b, in_b = await _member(bus_a, "group-b", [topic])
    sent = [_message(topic, n) for n in range(20)]
    await bus_a.publish(sent)
    ids = {m.id for m in sent}
    await in_b.until("20 deliveries to group-b", lambda: set(in_b.ids()) >= ids)

    def a_total() -> list[str]:
        return in_a1.ids() + in_a2.ids()

    await in_a1.until(
        "20 deliveries to group-a", lambda: set(in_a1.ids()) | set(in_a2.ids()) >= ids
    )
    await _quiet()
    assert sorted(a_total()) == sorted(ids), f"group-a got duplicates: {sorted(a_total())}"
    assert sorted(in_b.ids()) == sorted(ids), f"group-b got duplicates: {sorted(in_b.ids())}"
    for sub in (a1, a2, b):
        await sub.aclose()
    await bus_a.aclose()
    await bus_b.aclose()


async def a_group_gets_only_its_topics(open_bus: OpenBus) -> None:
    bus = await open_bus()
    t1, t2, t3 = _topic(), _topic(), _topic()
    only_t1, in_1 = await _member(bus, "only-t1", [t1])
    both, in_both = await _member(bus, "t1-and-t2", [t1, t2])
    await bus.publish([_message(t1, 1), _message(t2, 2), _message(t3, 3)])
    await in_both.until("t1 and t2", lambda: {m.topic for m in in_both.received} == {t1, t2})
    await in_1.until("t1", lambda: len(in_1.received) >= 1)
    await _quiet()
    assert [m.topic for m in in_1.received] == [t1]
    assert sorted(m.topic for m in in_both.received) == sorted([t1, t2])
    await only_t1.aclose()
    await both.aclose()
    await bus.aclose()


async def a_group_keeps_messages_while_nobody_listens(open_bus: OpenBus) -> None:
    bus = await open_bus()
    topic = _topic()
    sub, _ = await _member(bus, "durable", [topic])
    await sub.aclose()
    sent = [_message(topic, n) for n in range(5)]
    await bus.publish(sent)
    later = await open_bus()  # another process, as it were
    sub2, inbox = await _member(later, "durable", [topic])
    await inbox.until("5 kept messages", lambda: set(inbox.ids()) >= {m.id for m in sent})
    await sub2.aclose()
    await later.aclose()
    await bus.aclose()


async def a_nack_redelivers_the_same_message(open_bus: OpenBus) -> None:
    bus = await open_bus()
    topic = _topic()
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        if len(inbox.received) == 1:
            await delivery.nack(0.2)
        else:
            await delivery.ack()

    sub = await bus.subscribe("nacker", [topic], handle)
    sent = _message(topic, 1)
    await bus.publish([sent])
    await inbox.until("a redelivery after nack", lambda: len(inbox.received) >= 2)
    assert inbox.ids()[:2] == [sent.id, sent.id]
    assert inbox.received[1].body == sent.body
    assert inbox.redelivered[1], "the second delivery was not marked redelivered"
    await _quiet()
    assert len(inbox.received) == 2, f"acked message delivered again: {inbox.ids()}"
    await sub.aclose()
    await bus.aclose()


async def an_unanswered_delivery_comes_back_after_ack_wait(open_bus: OpenBus) -> None:
    bus = await open_bus()
    topic = _topic()
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        if len(inbox.received) > 1:
            await delivery.ack()  # the first one is neither acked nor nacked

    sub = await bus.subscribe("forgetful", [topic], handle, ack_wait=1.0)
    sent = _message(topic, 1)
    await bus.publish([sent])
    await inbox.until("a redelivery after ack_wait", lambda: len(inbox.received) >= 2)
    assert inbox.ids()[:2] == [sent.id, sent.id]
    await sub.aclose()
    await bus.aclose()


async def a_failing_handler_gets_the_message_again(open_bus: OpenBus) -> None:
    bus = await open_bus()
    topic = _topic()
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        if len(inbox.received) == 1:
            raise RuntimeError("handler broke (planted)")
        await delivery.ack()

    sub = await bus.subscribe("breaks-once", [topic], handle)
    sent = _message(topic, 1)
    await bus.publish([sent])
    await inbox.until("a redelivery after an exception", lambda: len(inbox.received) >= 2)
    assert inbox.ids()[:2] == [sent.id, sent.id]
    await sub.aclose()
    await bus.aclose()


async def a_closed_member_hands_its_deliveries_over(open_bus: OpenBus) -> None:
    """What a member received but never answered goes to another member once it leaves."""
    bus_a, bus_b = await open_bus(), await open_bus()
    topic = _topic()
    first, in_first = await _member(bus_a, "handover", [topic], ack=False, ack_wait=2.0)
    sent = _message(topic, 1)
    await bus_a.publish([sent])
    await in_first.until("the first delivery", lambda: len(in_first.received) >= 1)
    await first.aclose()
    await bus_a.aclose()
    second, in_second = await _member(bus_b, "handover", [topic])
    await in_second.until("the handed-over message", lambda: sent.id in in_second.ids())
    await second.aclose()
    await bus_b.aclose()


async def deliveries_run_concurrently(open_bus: OpenBus) -> None:
    """Up to ``prefetch`` deliveries are handled at once: two wait for each other here."""
    bus = await open_bus()
    topic = _topic()
    both = asyncio.Barrier(2)
    done = Inbox()

    async def handle(delivery: Delivery) -> None:
        try:
            await asyncio.wait_for(both.wait(), DEADLINE)
        except TimeoutError:
            await delivery.nack(0.1)
            return
        done.add(delivery)
        await delivery.ack()

    sub = await bus.subscribe("parallel", [topic], handle, prefetch=4)
    await bus.publish([_message(topic, 1), _message(topic, 2)])
    await done.until("two deliveries in flight at once", lambda: len(done.received) >= 2)
    await sub.aclose()
    await bus.aclose()


async def a_repeated_id_is_delivered_once_where_the_bus_dedupes(open_bus: OpenBus) -> None:
    bus = await open_bus()
    if not bus.dedupes:
        await bus.aclose()
        return  # the inbox absorbs this bus's duplicates; nothing to check here
    topic = _topic()
    sub, inbox = await _member(bus, "dedupe", [topic])
    sent = _message(topic, 1)
    await bus.publish([sent])
    await bus.publish([sent, _message(topic, 2)])
    await inbox.until("2 distinct deliveries", lambda: len(set(inbox.ids())) >= 2)
    await _quiet()
    assert inbox.ids().count(sent.id) == 1, f"a repeated id was delivered twice: {inbox.ids()}"
    await sub.aclose()
    await bus.aclose()


async def a_thousand_messages_all_arrive(open_bus: OpenBus) -> None:
    bus = await open_bus()
    topic = _topic()
    sub, inbox = await _member(bus, "many", [topic], prefetch=256)
    sent = [_message(topic, n) for n in range(1000)]
    for i in range(0, len(sent), 100):
        await bus.publish(sent[i : i + 100])
    ids = {m.id for m in sent}
    await inbox.until("1,000 deliveries", lambda: set(inbox.ids()) >= ids)
    await sub.aclose()
    await bus.aclose()


async def publishing_nothing_is_fine(open_bus: OpenBus) -> None:
    bus = await open_bus()
    await bus.publish([])
    await bus.aclose()


CHECKS: list[Callable[[OpenBus], Awaitable[None]]] = [
    messages_arrive_whole,
    every_group_gets_every_message_once,
    a_group_gets_only_its_topics,
    a_group_keeps_messages_while_nobody_listens,
    a_nack_redelivers_the_same_message,
    an_unanswered_delivery_comes_back_after_ack_wait,
    a_failing_handler_gets_the_message_again,
    a_closed_member_hands_its_deliveries_over,
    deliveries_run_concurrently,
    a_repeated_id_is_delivered_once_where_the_bus_dedupes,
    a_thousand_messages_all_arrive,
    publishing_nothing_is_fine,
]


async def unreachable_broker_is_a_clear_error(bus: Bus) -> None:
    """``bus`` points at a port where nothing listens: open (or publish) says so."""
    try:
        await bus.open()
        await bus.publish([_message(_topic(), 1)])
    except BusUnavailableError as exc:
        assert str(exc), "the error says nothing"
    else:
        raise AssertionError("a bus with no broker behind it opened and published")
    finally:
        await bus.aclose()
