"""What only the NATS bus has to get right: foreign producers, outages, its own layout.

Every test runs on a stream of its own on the machine's nats-server; outages are a
:class:`tests.proxy.Proxy` cutting the connection, never the server stopped.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import nats
import pytest
from nats.aio.client import Client
from nats.js import api

from sagaline.bus import Delivery, Message
from sagaline.bus.nats import NatsBus
from sagaline.model.errors import BusUnavailableError
from sagaline.testing.bus_conformance import DEADLINE, Inbox, unreachable_broker_is_a_clear_error
from tests.bus.brokers import NATS_URL, bus_url, cleanup
from tests.proxy import Proxy


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    """A URL on a stream of its own, deleted afterwards."""
    made = bus_url("nats", tmp_path)
    yield made
    await asyncio.get_running_loop().run_in_executor(None, cleanup, "nats", made)


@asynccontextmanager
async def raw_nats() -> AsyncIterator[Client]:
    """The plain nats-py client, as a producer or an operator outside sagaline uses it."""
    nc = await nats.connect(NATS_URL.split("?", 1)[0], connect_timeout=5)
    try:
        yield nc
    finally:
        await nc.close()


def _query(url: str, name: str) -> str:
    return url.split(f"{name}=", 1)[1].split("&", 1)[0]


def _topic() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _message(topic: str, n: int) -> Message:
    return Message(id=f"{topic}-{n}", topic=topic, body=b'{"n": %d}' % n)


def _ns(inbox: Inbox) -> set[str]:
    """The numbers of the messages received (see ``_message``)."""
    return {m.id.rsplit("-", 1)[1] for m in inbox.received}


async def _publish_until_confirmed(bus: NatsBus, messages: list[Message]) -> None:
    """Retry as a relay does, until the broker is back (under a generous deadline)."""
    deadline = time.monotonic() + 2 * DEADLINE
    while True:
        try:
            await bus.publish(messages)
            return
        except BusUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_foreign_message_gets_a_stable_id_across_redeliveries(url: str) -> None:
    bus = NatsBus(url)
    await bus.open()
    topic = _topic()
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        if len(inbox.received) == 1:
            await delivery.nack(0.2)
        else:
            await delivery.ack()

    sub = await bus.subscribe("foreign-reader", [topic], handle)
    async with raw_nats() as nc:  # a core publish: no Nats-Msg-Id, no JetStream ack
        subject = f"{_query(url, 'prefix')}.{topic}"
        await nc.publish(subject, b"not ours \xff", headers={"x-origin": "legacy"})
        await nc.flush()
    await inbox.until("a redelivery", lambda: len(inbox.received) >= 2)
    first, again = inbox.received[:2]
    assert first.id == again.id == f"{_query(url, 'stream')}:1"
    assert again.body == b"not ours \xff"
    assert first.topic == topic
    assert again.headers == {"x-origin": "legacy"}
    assert inbox.redelivered[:2] == [False, True]
    await sub.aclose()
    await bus.aclose()


async def test_nats_headers_stay_out_of_the_message(url: str) -> None:
    bus = NatsBus(url)
    await bus.open()
    topic = _topic()
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        await delivery.ack()

    sub = await bus.subscribe("reader", [topic], handle)
    sent = Message(id="m-1", topic=topic, body=b"{}", headers={"traceparent": "00-ab-cd-01"})
    await bus.publish([sent])
    await inbox.until("the delivery", lambda: len(inbox.received) >= 1)
    assert inbox.received[0] == sent
    await sub.aclose()
    await bus.aclose()


async def test_an_unreachable_broker_is_a_clear_error_soon() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nobody listens there
    bus = NatsBus(f"nats://127.0.0.1:{port}?stream=NOBODY")
    await asyncio.wait_for(unreachable_broker_is_a_clear_error(bus), 2 * DEADLINE)
    with pytest.raises(BusUnavailableError, match=f"127.0.0.1:{port}"):
        await asyncio.wait_for(bus.open(), 2 * DEADLINE)


async def test_publish_fails_during_an_outage_and_delivery_resumes_after(url: str) -> None:
    target = urlsplit(NATS_URL)
    async with Proxy(target.hostname or "127.0.0.1", target.port or 4222) as proxy:
        parts = urlsplit(url)
        proxied = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
        bus = NatsBus(proxied)
        await bus.open()
        topic = _topic()
        inbox = Inbox()

        async def handle(delivery: Delivery) -> None:
            inbox.add(delivery)
            await delivery.ack()

        sub = await bus.subscribe("survivor", [topic], handle)
        await bus.publish([_message(topic, 1)])
        await inbox.until("the first delivery", lambda: len(inbox.received) >= 1)

        await proxy.cut()
        outage_ends = time.monotonic() + 3.0
        while time.monotonic() < outage_ends:
            with pytest.raises(BusUnavailableError, match=f"127.0.0.1:{proxy.port}"):
                await asyncio.wait_for(bus.publish([_message(topic, 2)]), DEADLINE)
            await asyncio.sleep(0.5)
        await proxy.restore()

        later = [_message(topic, 2), _message(topic, 3)]
        await _publish_until_confirmed(bus, later)
        await inbox.until("deliveries after the outage", lambda: {"2", "3"} <= _ns(inbox))
        await sub.aclose()
        await bus.aclose()


async def test_resubscribing_with_other_topics_moves_the_group(url: str) -> None:
    bus = NatsBus(url)
    await bus.open()
    old, new = _topic(), _topic()
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        await delivery.ack()

    group = "payment.charge / v2"  # characters a consumer name cannot hold
    await (await bus.subscribe(group, [old], handle)).aclose()
    other = await bus.subscribe("bystander", [old], handle)
    await other.aclose()
    sub = await bus.subscribe(group, [new], handle)
    await bus.publish([_message(old, 1), _message(new, 2)])
    await inbox.until("the new topic's message", lambda: len(inbox.received) >= 1)
    await asyncio.sleep(1.0)  # room for a stray delivery of the old topic
    assert [m.topic for m in inbox.received] == [new]
    async with raw_nats() as nc:
        consumers = await nc.jetstream().consumers_info(_query(url, "stream"))
    topics = sorted((c.config.filter_subject or "").rsplit(".", 1)[1] for c in consumers)
    assert topics == sorted([new, old]), "the bystander's consumer must stay, the group's go"
    await sub.aclose()
    await bus.aclose()


async def test_open_adopts_an_existing_stream_and_keeps_its_limits(url: str) -> None:
    stream, prefix = _query(url, "stream"), _query(url, "prefix")
    async with raw_nats() as nc:
        js = nc.jetstream()
        await js.add_stream(
            api.StreamConfig(
                name=stream, subjects=[f"{prefix}.>"], max_msgs=5000, duplicate_window=10
            )
        )
        bus = NatsBus(url)
        await bus.open()
        await bus.aclose()
        config = (await js.stream_info(stream)).config
    assert config.duplicate_window == 120
    assert config.max_msgs == 5000


async def test_more_topics_than_prefetch_all_flow_within_the_limit(url: str) -> None:
    """One consumer per topic shares the subscription's slots: none starves, none exceeds."""
    bus = NatsBus(url)
    await bus.open()
    topics = [_topic() for _ in range(4)]
    inbox = Inbox()
    in_flight = [0]
    most = [0]

    async def handle(delivery: Delivery) -> None:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        await asyncio.sleep(0.05)
        in_flight[0] -= 1
        inbox.add(delivery)
        await delivery.ack()

    sub = await bus.subscribe("narrow", topics, handle, prefetch=2)
    sent = [_message(topic, n) for n in range(3) for topic in topics]
    await bus.publish(sent)
    ids = {m.id for m in sent}
    await inbox.until("every topic's messages", lambda: set(inbox.ids()) >= ids)
    assert most[0] <= 2, f"{most[0]} deliveries in hand at once with prefetch=2"
    await sub.aclose()
    await bus.aclose()
