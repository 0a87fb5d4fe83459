"""The embedded broker beyond the conformance suite: processes, coexistence, outages, files."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from sagaline.bus import Delivery, Message, open_bus
from sagaline.bus.embedded import EmbeddedBus
from sagaline.model.errors import BusError, BusUnavailableError
from sagaline.model.records import NewRun
from sagaline.store import open_store
from sagaline.testing.bus_conformance import unreachable_broker_is_a_clear_error
from tests.proxy import Proxy

DEADLINE = 20.0


class Inbox:
    """Every delivery a subscription got, recorded once acked."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.changed = asyncio.Event()

    async def handle(self, delivery: Delivery) -> None:
        await delivery.ack()
        self.messages.append(delivery.message)
        self.changed.set()

    def ids(self) -> list[str]:
        return [m.id for m in self.messages]

    async def until(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen; received {self.ids()}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.2)


def _message(topic: str, n: int = 0) -> Message:
    return Message(id=f"{topic}-{n}-{uuid.uuid4().hex[:6]}", topic=topic, body=b'{"n": %d}' % n)


@pytest.fixture(params=["sqlite", "postgres"])
def embedded_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bus.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def bus(embedded_url: str) -> AsyncIterator[EmbeddedBus]:
    bus = EmbeddedBus(embedded_url)
    await bus.open()
    yield bus
    await bus.aclose()


# -- processes -------------------------------------------------------------------------------

PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from sagaline.bus import Message
    from sagaline.bus.embedded import EmbeddedBus

    async def main(url, topic, count):
        bus = EmbeddedBus(url)
        await bus.open()
        for n in range(count):
            await bus.publish([Message(f"{topic}-{n}", topic, b"from another process")])
            await asyncio.sleep(0.01)
        await bus.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_a_message_published_by_another_process_reaches_this_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bus.db'}"
    bus = EmbeddedBus(url)
    await bus.open()
    inbox = Inbox()
    sub = await bus.subscribe("receiver", ["crossing"], inbox.handle)
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, url, "crossing", "20"
    )
    assert await asyncio.wait_for(publisher.wait(), DEADLINE) == 0
    expected = {f"crossing-{n}" for n in range(20)}
    await inbox.until("20 messages from the other process", lambda: set(inbox.ids()) >= expected)
    assert sorted(inbox.ids()) == sorted(expected)
    assert all(m.body == b"from another process" for m in inbox.messages)
    await sub.aclose()
    await bus.aclose()


# -- sharing a database with a store ---------------------------------------------------------


@pytest.mark.parametrize("bus_first", [True, False], ids=["bus-first", "store-first"])
async def test_a_store_and_the_bus_share_one_database(embedded_url: str, bus_first: bool) -> None:
    store = open_store(embedded_url)
    bus = EmbeddedBus(embedded_url)
    for opened in (bus, store) if bus_first else (store, bus):
        await opened.open()
    run = NewRun(run_id="order-1", workflow="orders.place", input=b"{}", queue="default", at=1.0)
    await store.create_runs([(run, None)], 30.0)
    inbox = Inbox()
    sub = await bus.subscribe("shared", ["OrderCreated"], inbox.handle)
    sent = _message("OrderCreated")
    await bus.publish([sent])
    await inbox.until("the message", lambda: sent.id in inbox.ids())
    await sub.aclose()
    await bus.aclose()
    await store.aclose()

    store, bus = open_store(embedded_url), EmbeddedBus(embedded_url)
    await store.open()  # its schema checks accept the bus's tables
    await bus.open()
    loaded = await store.load_run("order-1")
    assert loaded is not None and loaded.workflow == "orders.place"
    await bus.publish([sent])  # still known: dropped as a duplicate
    again = Inbox()
    sub = await bus.subscribe("shared", ["OrderCreated"], again.handle)
    await asyncio.sleep(0.5)
    assert again.ids() == []
    await sub.aclose()
    await bus.aclose()
    await store.aclose()


# -- SQLite files ----------------------------------------------------------------------------


def _foreign_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.close()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b"not a database, just some text " * 100), "not a SQLite"),
        (_foreign_database, "not sagaline's"),
    ],
    ids=["a-folder", "a-missing-folder", "not-sqlite", "someone-elses-tables"],
)
async def test_a_sqlite_path_the_bus_cannot_use_is_a_clear_error(
    tmp_path: Path, make: Callable[[Path], object], says: str
) -> None:
    path = tmp_path / "bus.db"
    if says == "does not exist":
        path = tmp_path / "missing" / "bus.db"
    make(path)
    bus = open_bus(f"sqlite:///{path}")
    with pytest.raises(BusError, match=says) as info:
        await bus.open()
    assert not isinstance(info.value, BusUnavailableError)
    await bus.aclose()


async def test_newer_bus_tables_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = EmbeddedBus(f"sqlite:///{path}")
    await bus.open()
    await bus.aclose()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE bus_meta SET version = 99")
    conn.commit()
    conn.close()
    newer = EmbeddedBus(f"sqlite:///{path}")
    with pytest.raises(BusError, match="version 99, newer"):
        await newer.open()
    await newer.aclose()


# -- PostgreSQL outages ----------------------------------------------------------------------


def _through(url: str, port: int, password: str | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    auth = f"{user}:{password}" if password else user
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{port}"))


async def test_a_postgres_outage_fails_publish_and_the_subscription_resumes(
    postgres_url: str,
) -> None:
    parts = urlsplit(postgres_url)
    direct = EmbeddedBus(postgres_url)
    await direct.open()
    async with Proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        # The server may trust 127.0.0.1; the password is there to be kept out of errors.
        bus = EmbeddedBus(_through(postgres_url, proxy.port, password="s3cret-pw"))
        await bus.open()
        inbox = Inbox()
        sub = await bus.subscribe("outage", ["Outage"], inbox.handle)
        before = _message("Outage", 1)
        await bus.publish([before])
        await inbox.until("a message before the outage", lambda: before.id in inbox.ids())

        await proxy.cut()
        during = _message("Outage", 2)
        with pytest.raises(BusUnavailableError) as info:
            await bus.publish([during])
        assert "s3cret-pw" not in str(info.value)
        assert "127.0.0.1" in str(info.value), info.value
        await direct.publish([during])  # kept for the group while its member is cut off
        await asyncio.sleep(1.5)  # the subscription's claims fail and back off meanwhile
        assert during.id not in inbox.ids()

        await proxy.restore()
        await inbox.until("the message sent during the outage", lambda: during.id in inbox.ids())
        after = _message("Outage", 3)
        await bus.publish([after])
        await inbox.until("a message after the outage", lambda: after.id in inbox.ids())
        assert sorted(inbox.ids()) == sorted([before.id, during.id, after.id])
        await sub.aclose()
        await bus.aclose()
    await direct.aclose()


async def test_an_unreachable_postgres_is_a_clear_error() -> None:
    await unreachable_broker_is_a_clear_error(EmbeddedBus("postgresql://postgres@127.0.0.1:9/x"))


def test_a_bad_postgres_url_is_refused_without_its_password() -> None:
    with pytest.raises(BusError, match="bad schema name") as info:
        EmbeddedBus("postgresql://postgres:s3cret-pw@127.0.0.1/x?schema=Not-Valid")
    assert "s3cret-pw" not in str(info.value)


# -- behaviour of both -----------------------------------------------------------------------


async def test_prune_forgets_acked_messages_and_keeps_queued_ones(bus: EmbeddedBus) -> None:
    idle = await bus.subscribe("idle", ["Kept"], Inbox().handle)
    await idle.aclose()  # the group stays and collects "Kept"
    inbox = Inbox()
    sub = await bus.subscribe("pruning", ["Pruned"], inbox.handle)
    acked, queued = _message("Pruned", 1), _message("Kept", 2)
    await bus.publish([acked, queued])
    await inbox.until("the first delivery, acked", lambda: inbox.ids() == [acked.id])

    assert await bus.prune(older_than=0.0) >= 1
    await bus.publish([acked, queued])  # the acked id is forgotten; the queued one is not
    await inbox.until("the pruned id, delivered anew", lambda: len(inbox.ids()) == 2)
    kept = Inbox()
    idle = await bus.subscribe("idle", ["Kept"], kept.handle)
    await kept.until("the kept message", lambda: queued.id in kept.ids())
    await asyncio.sleep(0.5)
    assert kept.ids() == [queued.id], "a message still queued was pruned"
    await idle.aclose()
    await sub.aclose()


async def test_subscribing_again_replaces_the_groups_topics(bus: EmbeddedBus) -> None:
    first = await bus.subscribe("moving", ["Old"], Inbox().handle)
    await first.aclose()
    inbox = Inbox()
    sub = await bus.subscribe("moving", ["New"], inbox.handle)
    old, new = _message("Old"), _message("New")
    await bus.publish([old, new])
    await inbox.until("the new topic's message", lambda: new.id in inbox.ids())
    await asyncio.sleep(0.5)
    assert inbox.ids() == [new.id]
    await sub.aclose()


async def test_closing_twice_is_fine_and_a_closed_bus_refuses_to_publish(
    embedded_url: str,
) -> None:
    bus = EmbeddedBus(embedded_url)
    await bus.open()
    sub = await bus.subscribe("closing", ["Closing"], Inbox().handle)
    await sub.aclose()
    await sub.aclose()
    await bus.aclose()
    await bus.aclose()
    with pytest.raises(BusError, match="closed"):
        await bus.publish([_message("Closing")])
