"""RabbitMQ-specific behaviour of :class:`AmqpBus`, on the machine's broker.

Each test works in an exchange of its own (``bus_url``) and removes it afterwards; an
outage is a :class:`tests.proxy.Proxy` cutting the connection, never the broker stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiormq
import pytest
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.common import FieldTable
from pamqp.header import ContentHeader, ProtocolHeader
from yarl import URL

from sagaline.bus.amqp import AmqpBus, delete_namespace
from sagaline.bus.protocol import Delivery, Message, Subscription
from sagaline.model.errors import BusError, BusUnavailableError
from sagaline.testing.bus_conformance import DEADLINE, Inbox, unreachable_broker_is_a_clear_error
from tests.bus.brokers import AMQP_URL, bus_url, cleanup
from tests.proxy import Proxy


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    url = bus_url("rabbitmq", tmp_path)
    yield url
    await asyncio.get_running_loop().run_in_executor(None, cleanup, "rabbitmq", url)


async def _opened(url: str) -> AmqpBus:
    bus = AmqpBus(url)
    await bus.open()
    return bus


def _exchange(url: str) -> str:
    return URL(url).query["exchange"]


def _message(topic: str) -> Message:
    return Message(id=f"m-{uuid.uuid4().hex[:8]}", topic=topic, body=b'{"n": 1}')


async def _acking(bus: AmqpBus, group: str, topics: list[str]) -> tuple[Inbox, Subscription]:
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        await delivery.ack()

    return inbox, await bus.subscribe(group, topics, handle)


async def _publish_without_id(exchange: str, topic: str, body: bytes, headers: FieldTable) -> None:
    """Publish as a plain foreign client does: no ``message_id`` (aio-pika always sets one)."""
    broker = URL(AMQP_URL)
    reader, writer = await asyncio.open_connection(broker.host, broker.port or 5672)

    async def expect(kind: type[object]) -> None:
        head = await reader.readexactly(7)
        rest = await reader.readexactly(int.from_bytes(head[3:7], "big") + 1)
        got = frame.unmarshal(head + rest)[2]
        assert isinstance(got, kind), got

    def send(channel: int, *frames: frame.FrameTypes) -> None:
        for one in frames:
            writer.write(frame.marshal(one, channel))

    try:
        writer.write(ProtocolHeader().marshal())
        await expect(commands.Connection.Start)
        login = f"\0{broker.user or 'guest'}\0{broker.password or 'guest'}"
        send(0, commands.Connection.StartOk(client_properties={}, response=login))
        await expect(commands.Connection.Tune)
        send(0, commands.Connection.TuneOk(channel_max=1, frame_max=131072, heartbeat=0))
        send(0, commands.Connection.Open(virtual_host=broker.path[1:] or "/"))
        await expect(commands.Connection.OpenOk)
        send(1, commands.Channel.Open())
        await expect(commands.Channel.OpenOk)
        send(1, commands.Confirm.Select())
        await expect(commands.Confirm.SelectOk)
        properties = commands.Basic.Properties(headers=headers, delivery_mode=2)
        send(
            1,
            commands.Basic.Publish(exchange=exchange, routing_key=topic),
            ContentHeader(0, len(body), properties),
            ContentBody(body),
        )
        await expect(commands.Basic.Ack)
        send(0, commands.Connection.Close(200, "done", 0, 0))
        await expect(commands.Connection.CloseOk)
    finally:
        writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port  # closed on return: nobody listens there


async def test_a_foreign_message_without_an_id_gets_a_stable_one(url: str) -> None:
    bus = await _opened(url)
    inbox = Inbox()

    async def handle(delivery: Delivery) -> None:
        inbox.add(delivery)
        if len(inbox.received) == 1:
            await delivery.nack(0.1)
        else:
            await delivery.ack()

    sub = await bus.subscribe("legacy", ["orders.created"], handle)
    body = b'{"order": 7}'
    headers: FieldTable = {"x-from": bytearray(b"legacy"), "x-n": 7}
    await _publish_without_id(_exchange(url), "orders.created", body, headers)
    await inbox.until("a delivery and its redelivery", lambda: len(inbox.received) >= 2)
    first, again = inbox.received[:2]
    digest = hashlib.sha256(b"orders.created\0" + body).hexdigest()
    assert first.id == again.id == f"sha256:{digest}"
    assert inbox.redelivered[:2] == [False, True]
    assert (first.topic, first.body) == ("orders.created", body)
    assert first.headers == {"x-from": "legacy", "x-n": "7"}
    await sub.aclose()
    await bus.aclose()


async def test_an_unreachable_broker_is_a_clear_error_naming_the_host() -> None:
    port = _free_port()
    url = f"amqp://sagaline:s3cret-pw@127.0.0.1:{port}/?exchange=t{uuid.uuid4().hex[:12]}"
    await asyncio.wait_for(unreachable_broker_is_a_clear_error(AmqpBus(url)), DEADLINE)
    with pytest.raises(BusUnavailableError) as caught:
        await asyncio.wait_for(AmqpBus(url).open(), DEADLINE)
    text = str(caught.value)
    assert f"127.0.0.1:{port}" in text
    assert "s3cret-pw" not in text
    assert "Traceback" not in text


async def test_a_bus_that_is_not_open_or_a_bad_url_is_a_bus_error(url: str) -> None:
    with pytest.raises(BusError, match="not open"):
        await AmqpBus(url).publish([_message("t")])
    with pytest.raises(BusError, match="not a RabbitMQ URL"):
        AmqpBus("http://127.0.0.1:5672/")
    bus = await _opened(url)
    with pytest.raises(BusError, match="group '@x'"):
        await bus.subscribe("@x", ["t"], lambda d: d.ack())
    await bus.aclose()


async def test_subscribing_again_with_other_topics_unbinds_the_old_ones(url: str) -> None:
    bus = await _opened(url)
    _, first = await _acking(bus, "moving", ["old.topic"])
    await first.aclose()
    inbox, second = await _acking(bus, "moving", ["new.topic"])
    await bus.publish([_message("old.topic"), _message("new.topic")])
    await inbox.until("the new topic's message", lambda: len(inbox.received) >= 1)
    await asyncio.sleep(1.0)  # room for a stray delivery of the old topic
    assert [m.topic for m in inbox.received] == ["new.topic"]
    await second.aclose()
    await bus.aclose()


async def test_delete_namespace_leaves_nothing_behind(url: str) -> None:
    bus = await _opened(url)
    for group in ("one", "two.with.dots"):
        _, sub = await _acking(bus, group, ["some.topic"])
        await sub.aclose()
    await bus.aclose()
    await delete_namespace(url)
    await delete_namespace(url)  # nothing there is fine
    exchange = _exchange(url)
    names = [f"{exchange}.one", f"{exchange}.two.with.dots", f"{exchange}.@groups"]
    async with aiormq.connect(AMQP_URL) as connection:
        for name in names:
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                await channel.queue_declare(name, passive=True)
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await channel.exchange_declare(exchange, passive=True)


async def test_an_outage_fails_publish_and_both_sides_recover(url: str) -> None:
    broker = URL(AMQP_URL)
    async with Proxy(broker.host or "127.0.0.1", broker.port or 5672) as proxy:
        bus = await _opened(str(URL(url).with_port(proxy.port)))
        inbox, sub = await _acking(bus, "survivor", ["outage.test"])
        before = _message("outage.test")
        await bus.publish([before])
        await inbox.until("the message before the outage", lambda: before.id in inbox.ids())

        await proxy.cut()
        cut_at = time.monotonic()
        for _ in range(2):  # the first may meet the dying connection, the second a dead one
            with pytest.raises(BusUnavailableError, match=f"127.0.0.1:{proxy.port}"):
                await asyncio.wait_for(bus.publish([_message("outage.test")]), DEADLINE)
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - cut_at)))
        await proxy.restore()

        after = _message("outage.test")
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                await bus.publish([after])
                break
            except BusUnavailableError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await inbox.until("the message after the outage", lambda: after.id in inbox.ids())
        await sub.aclose()
        await bus.aclose()
