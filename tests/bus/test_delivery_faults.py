"""What the outbox and the inbox promise under faults, on every bus.

- A service killed between its local commit and the broker publish: on restart the event
  goes out (once its relay runs).
- A relay killed after the broker confirmed and before it marked the row sent publishes
  again; the consumer's inbox absorbs the duplicate (and a deduplicating bus drops it).
- A consumer killed inside a handler: the run resumes; its step is recorded once.
- A broker unreachable for 20 s: events wait in the outbox and are delivered after.
Processes are really killed (SIGKILL); brokers are cut through a proxy, never stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sagaline import RunStatus
from tests.bus import services as s
from tests.bus.harness import Services, settled, until
from tests.proxy import Proxy

pytestmark = pytest.mark.crash
ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    s.CALLS.clear()
    s.SEEN.clear()
    s.FLAGS.update(out_of_stock=False, slow_charge=False)
    yield


def spawn(db: str, bus: str, service: str, mode: str, ledger: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "SAGALINE_TEST_LEDGER": str(ledger), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bus.service_child", db, bus, service, mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


async def said(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert line.strip() == expected, f"the service process said {line!r}, not {expected!r}"


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.parametrize("mode", ["stuck-relay", "stuck-delete"])
async def test_a_service_killed_around_its_publish_delivers_the_event_once(
    services: Services, tmp_path: Path, mode: str
) -> None:
    payment = await services.start("payment")
    tap = await services.tap("OrderCreated")
    proc = spawn(services.db("order"), services.bus_url, "order", mode, tmp_path / "ledger")
    try:
        await said(proc, "committed" if mode == "stuck-relay" else "published")
    finally:
        kill(proc)
    if mode == "stuck-relay":
        await asyncio.sleep(0.5)
        assert tap.received == [], "the event went out although the relay never ran"
    order = await services.start("order")  # the restarted service: its relay runs
    assert await settled(payment, "payment.charge", 1) == [RunStatus.COMPLETED]

    async def drained() -> None:
        while await order.outbox_size():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(drained(), 30)
    await asyncio.sleep(1.0)
    assert s.CALLS["charge"] == ["o-crash"], "the inbox let a duplicate through"
    copies = tap.ids().count(tap.received[0].id)
    dedupes = (await services.raw_bus()).dedupes
    expected = 1 if mode == "stuck-relay" or dedupes else 2
    assert copies == expected, f"{copies} copies on the bus, expected {expected}"


async def test_a_consumer_killed_inside_its_handler_resumes_with_each_step_once(
    services: Services, tmp_path: Path
) -> None:
    order = await services.start("order")
    ledger = tmp_path / "ledger"
    proc = spawn(services.db("payment"), services.bus_url, "payment", "slow-handler", ledger)
    try:
        await said(proc, "ready")
        await order.publish("OrderCreated", s.OrderCreated("o-kill", 3), correlation_id="k")
        await until(
            "the charge to start", lambda: ledger.exists() and "charge" in ledger.read_text()
        )
    finally:
        kill(proc)
    payment = await services.start("payment")
    assert await settled(payment, "payment.charge", 1) == [RunStatus.COMPLETED]
    run = next(r for r in await payment.list_runs() if r.workflow == "payment.charge")
    steps = [st for st in await payment.steps(run.run_id) if st.kind.value == "step"]
    assert [(st.name.rsplit(".", 1)[-1], st.status.value) for st in steps] == [
        ("charge", "SUCCEEDED")
    ]
    assert ledger.read_text().splitlines() == ["charge o-kill"]  # in the killed process
    assert s.CALLS["charge"] == ["o-kill"]  # ran again here, recorded once


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


# A SQLite file has no network to cut: the three networked buses only.
@pytest.mark.parametrize("bus_kind", ["embedded-postgres", "nats", "rabbitmq"], indirect=True)
async def test_events_wait_in_the_outbox_while_the_broker_is_unreachable(
    services: Services, bus_kind: str
) -> None:
    parts = urlsplit(services.bus_url)
    async with Proxy(parts.hostname or "127.0.0.1", parts.port or 0) as proxy:
        bus = _through(services.bus_url, proxy.port)
        order = await services.start("order", bus=bus)
        payment = await services.start("payment", bus=bus)
        await proxy.cut()
        await order.publish("OrderCreated", s.OrderCreated("o-out", 1), correlation_id="out")
        await asyncio.sleep(20)  # the outage
        assert await order.outbox_size() == 1, "the event left the outbox during the outage"
        assert s.CALLS["charge"] == []
        await proxy.restore()
        assert await settled(payment, "payment.charge", 1) == [RunStatus.COMPLETED]
        assert s.CALLS["charge"] == ["o-out"]

        async def drained() -> None:
            while await order.outbox_size():
                await asyncio.sleep(0.05)

        await asyncio.wait_for(drained(), 30)
