"""The tracker on every bus: choreography's central view, rebuilt from what went over the wire.

The services are engines of :mod:`tests.bus.services` (each on its own database) and the
saga is declared in :mod:`tests.bus.tracked`; the tracker is one more member of the bus,
with a store of its own. Waits are for conditions, with generous deadlines.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sagaline import Engine
from sagaline.bus import Message
from sagaline.engine.tracker import Choreography, Tracker, declarations
from sagaline.model import choreography as choreo
from sagaline.model import envelope
from sagaline.model.choreography import (
    Envelope,
    Link,
    SagaNotFoundError,
    SagaStatus,
    SagaView,
    Subscription,
)
from sagaline.model.errors import DatabaseError, DefinitionError
from sagaline.store.tracker import open_tracker_store
from sagaline.testing.clock import FakeClock
from tests.bus import services as s
from tests.bus import tracked
from tests.bus.harness import DEADLINE, Services

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    s.CALLS.clear()
    s.SEEN.clear()
    s.FLAGS.update(out_of_stock=False)
    yield
    s.FLAGS.update(out_of_stock=False)


def tracker_db(services: Services) -> str:
    return f"sqlite:///{services.tmp_path / 'tracker.db'}"


async def start_tracker(services: Services, **kwargs: object) -> Tracker:
    tracker = Tracker(bus=services.bus_url, db=tracker_db(services), **kwargs)  # type: ignore[arg-type]
    await services.stack.enter_async_context(tracker)
    await tracker.ready()
    return tracker


async def until_saga(
    tracker: Tracker, correlation_id: str, condition: Callable[[SagaView], bool], what: str
) -> SagaView:
    deadline = time.monotonic() + DEADLINE
    view = None
    while True:
        try:
            view = await tracker.saga(correlation_id)
        except SagaNotFoundError:
            pass
        else:
            if condition(view):
                return view
        if time.monotonic() > deadline:
            raise AssertionError(f"saga {correlation_id}: {what} within {DEADLINE:.0f} s: {view}")
        await asyncio.sleep(0.05)


def lanes(view: SagaView) -> list[tuple[str, str | None]]:
    return [(e.type, e.source) for e in view.timeline]


def edges(mermaid: str) -> set[tuple[str, str, str]]:
    """(publisher, event, consumer) by service name, read back from the chart."""
    names = {"outside": "(outside)", "nobody": "(no consumer)"}
    found = set()
    for line in mermaid.splitlines()[1:]:
        line = line.strip()
        if "-->" in line:
            left, event, right = line.replace("-->|", "|").split("|")
            found.add((names[left.strip()], event, names[right.strip()]))
        elif line.startswith("s"):
            node, label = line.split("[", 1)
            names[node] = label.strip('[]"')
    return found


async def test_a_completed_saga_has_its_timeline_across_services_in_causal_order(
    services: Services,
) -> None:
    tracker = await start_tracker(services)
    order = await services.start("order")
    await services.start("payment")
    await services.start("inventory")
    first = await order.publish("OrderCreated", s.OrderCreated("o-1", 30), correlation_id="saga-1")
    view = await until_saga(
        tracker, "saga-1", lambda v: v.status is SagaStatus.COMPLETED, "completed"
    )
    assert view.name == tracked.ORDER.name == "tracked_order"
    assert lanes(view) == [
        ("OrderCreated", "order"),
        ("PaymentSucceeded", "payment"),
        ("InventoryReserved", "inventory"),
    ]
    assert view.timeline[0].id == first and view.timeline[0].causation_id is None
    assert [e.causation_id for e in view.timeline[1:]] == [e.id for e in view.timeline[:-1]]
    assert {e.correlation_id for e in view.timeline} == {"saga-1"}
    assert view.waiting_for == []
    assert view.started_at == view.timeline[0].time <= view.updated_at
    assert [v.correlation_id for v in await tracker.sagas()] == ["saga-1"]
    assert [v.correlation_id for v in await tracker.sagas(SagaStatus.COMPLETED)] == ["saga-1"]
    assert await tracker.sagas(SagaStatus.STALLED) == []
    assert await tracker.sagas("in_progress") == []
    chart = edges(tracker.map())
    assert {
        ("order", "OrderCreated", "payment"),
        ("order", "OrderCreated", "notify"),  # declared, though not running
        ("payment", "PaymentSucceeded", "inventory"),
        ("inventory", "InventoryReserved", "(no consumer)"),
        ("inventory", "InventoryFailed", "refunds"),  # declared on_failure
    } <= chart


async def test_a_compensated_saga_ends_on_its_refund(services: Services) -> None:
    s.FLAGS["out_of_stock"] = True
    tracker = await start_tracker(services)
    order = await services.start("order")
    for name in ("payment", "inventory", "refunds"):
        await services.start(name)
    await order.publish("OrderCreated", s.OrderCreated("o-2", 30), correlation_id="saga-2")
    view = await until_saga(
        tracker, "saga-2", lambda v: v.status is SagaStatus.COMPENSATED, "compensated"
    )
    assert lanes(view) == [
        ("OrderCreated", "order"),
        ("PaymentSucceeded", "payment"),
        ("InventoryFailed", "inventory"),
        ("PaymentRefunded", "refunds"),
    ]
    assert [e.causation_id for e in view.timeline[1:]] == [e.id for e in view.timeline[:-1]]
    assert view.waiting_for == []
    assert [v.correlation_id for v in await tracker.sagas("compensated")] == ["saga-2"]
    assert ("refunds", "PaymentRefunded", "(no consumer)") in edges(tracker.map())


async def test_a_saga_no_one_answers_stalls_and_says_whom_it_waits_for(
    services: Services,
) -> None:
    clock = FakeClock()
    tracker = await start_tracker(services, clock=clock)
    order = await services.start("order")
    await services.start("payment")
    inventory = await services.start("inventory")
    await order.publish("OrderCreated", s.OrderCreated("o-a", 1), correlation_id="saga-a")
    await until_saga(tracker, "saga-a", lambda v: v.status is SagaStatus.COMPLETED, "completed")
    await inventory.aclose()  # from now on nobody reserves stock
    await order.publish("OrderCreated", s.OrderCreated("o-b", 1), correlation_id="saga-b")
    view = await until_saga(tracker, "saga-b", lambda v: len(v.timeline) == 2, "paid")
    assert view.status is SagaStatus.IN_PROGRESS
    # Inventory was seen answering PaymentSucceeded with InventoryReserved in saga-a, and
    # declares InventoryFailed as its failure.
    assert [str(x) for x in view.waiting_for] == [
        "InventoryReserved or InventoryFailed from inventory"
    ]
    deadline_at = view.started_at.timestamp() + (tracked.ORDER.deadline or 0)
    clock.advance(deadline_at - 0.01 - clock())
    assert (await tracker.saga("saga-b")).status is SagaStatus.IN_PROGRESS
    assert await tracker.sagas(SagaStatus.STALLED) == []
    clock.advance(0.02)
    view = await tracker.saga("saga-b")
    assert view.status is SagaStatus.STALLED
    assert [(x.events, x.service) for x in view.waiting_for] == [
        (["InventoryReserved", "InventoryFailed"], "inventory")
    ]
    assert [v.correlation_id for v in await tracker.sagas(SagaStatus.STALLED)] == ["saga-b"]
    assert await tracker.sagas(SagaStatus.IN_PROGRESS) == []
    assert (await tracker.saga("saga-a")).status is SagaStatus.COMPLETED


async def test_duplicates_are_absorbed(services: Services) -> None:
    tracker = await start_tracker(services)
    bus = await services.raw_bus()
    tap = await services.tap("OrderCreated", "PaymentSucceeded")

    def headers(source: str, cause: str | None = None) -> dict[str, str]:
        return envelope.headers(
            correlation_id="saga-d", causation_id=cause, source=source, at=time.time()
        )

    twice = Message("dup-1", "OrderCreated", b'{"order_id": "o-d", "amount": 5}', headers("order"))
    answer = Message("dup-2", "PaymentSucceeded", b"{}", headers("payment", "dup-1"))
    await bus.publish([twice])
    await bus.publish([twice, answer])
    await tap.until("every copy delivered", lambda: len(tap.received) >= (2 if bus.dedupes else 3))
    view = await until_saga(tracker, "saga-d", lambda v: len(v.timeline) == 2, "both recorded")
    await tracker.record(view.timeline[0])  # and once more by hand
    await asyncio.sleep(0.5)  # a late copy from the bus is absorbed too
    view = await tracker.saga("saga-d")
    assert [e.id for e in view.timeline] == ["dup-1", "dup-2"]
    summary = await tracker.store.summary("saga-d")
    assert summary is not None and summary.events == 2


async def test_a_foreign_message_joins_the_saga_its_correlation_field_names(
    services: Services,
) -> None:
    tracker = await start_tracker(services, correlation_field="order_id")
    bus = await services.raw_bus()
    await bus.publish([Message("f-1", "OrderCreated", b'{"order_id": "o-f", "amount": 1}')])
    view = await until_saga(tracker, "o-f", lambda v: len(v.timeline) == 1, "recorded")
    assert lanes(view) == [("OrderCreated", None)] and view.name == "tracked_order"
    with pytest.raises(SagaNotFoundError, match="'nope' not found"):
        await tracker.saga("nope")


# -- the commands, in processes of their own ---------------------------------------------------

CLI_ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
TRACKER_COMMAND = "import typer; from sagaline.sagas_cli import tracker; typer.run(tracker)"


def sagas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagaline.sagas_cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**CLI_ENV, **(env or {})},
        cwd=ROOT,
    )


async def start_tracker_process(services: Services, db: str) -> asyncio.subprocess.Process:
    log = (services.tmp_path / "tracker.log").open("w")
    services.stack.callback(log.close)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", TRACKER_COMMAND, "--bus", services.bus_url, "--db", db),
        *("--import", "tests.bus.tracked"),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
        env={**os.environ, **CLI_ENV},
    )

    async def stop() -> None:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    services.stack.push_async_callback(stop)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
    assert b"tracker listening as group 'tracker'" in line, (line, services.tmp_path)
    return proc


async def test_the_tracker_process_and_the_sagas_commands(services: Services) -> None:
    db = tracker_db(services)
    proc = await start_tracker_process(services, db)
    order = await services.start("order")
    await services.start("payment")
    await services.start("inventory")
    await order.publish("OrderCreated", s.OrderCreated("o-p", 3), correlation_id="saga-p")
    async with Tracker(db=db) as reader:
        await until_saga(reader, "saga-p", lambda v: v.status is SagaStatus.COMPLETED, "done")

    listed = await asyncio.to_thread(sagas, "list", env={"SAGALINE_DB": db})
    assert listed.returncode == 0, listed.stderr
    assert "saga-p" in listed.stdout and "tracked_order" in listed.stdout
    assert "COMPLETED" in listed.stdout
    stalled = await asyncio.to_thread(sagas, "list", "--status", "stalled", "--db", db)
    assert "0 saga(s)" in stalled.stdout and "saga-p" not in stalled.stdout

    shown = await asyncio.to_thread(sagas, "show", "saga-p", "--db", db)
    assert shown.returncode == 0, shown.stderr
    assert "saga saga-p · tracked_order · COMPLETED" in shown.stdout
    lines = shown.stdout.splitlines()
    header = next(line for line in lines if "┃" in line)
    columns = [cell.strip() for cell in header.split("┃")][1:-1]
    assert columns == ["+ms", "order", "payment", "inventory"]
    rows = [line for line in lines if "│" in line]
    placed = [[cell.strip() for cell in row.split("│")][2:-1] for row in rows]
    assert placed == [
        ["OrderCreated", "", ""],
        ["", "PaymentSucceeded", ""],
        ["", "", "InventoryReserved"],
    ]

    charted = await asyncio.to_thread(sagas, "map", "--db", db)
    assert charted.stdout.startswith("flowchart LR\n")
    assert ("payment", "PaymentSucceeded", "inventory") in edges(charted.stdout)

    missing = await asyncio.to_thread(sagas, "show", "no-such-saga", "--db", db)
    assert missing.returncode == 1 and "not found" in missing.stdout
    assert "Traceback" not in missing.stdout + missing.stderr
    bad = await asyncio.to_thread(sagas, "list", "--status", "done", "--db", db)
    assert bad.returncode == 2 and "STALLED" in bad.stdout
    nowhere = await asyncio.to_thread(sagas, "list", "--db", f"{db}.missing")
    assert nowhere.returncode == 1 and "no tracker has recorded" in nowhere.stdout
    assert not Path(f"{db}.missing".removeprefix("sqlite:///")).exists()

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), DEADLINE) == 0
    assert proc.stdout is not None
    assert b"tracker stopped" in await proc.stdout.read()


# -- the tracker's store, on SQLite and PostgreSQL ----------------------------------------------


def at(seconds: float) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


async def test_a_summary_decided_from_fewer_events_than_recorded_never_lands(
    store_url: str,
) -> None:
    store = open_tracker_store(store_url)
    await store.open()
    try:
        first = Envelope("m1", "OrderCreated", "saga-s", "order", None, at(0))
        second = Envelope("m2", "PaymentSucceeded", "saga-s", "payment", "m1", at(1))
        assert await store.record([first, first], 5.0) == ["m1"]
        assert await store.record([first], 5.0) == []
        by_start = {tracked.ORDER.start: tracked.ORDER}
        stale = choreo.summarize("saga-s", [first], by_start)
        await store.record([second], 6.0)
        assert not await store.save_summary(stale, choreo.links([first]))
        events = (await store.events(["saga-s", "other"]))["saga-s"]
        assert sorted(e.id for e in events) == ["m1", "m2"]
        assert events[0].time in (at(0), at(1))
        fresh = choreo.summarize("saga-s", events, by_start)
        assert await store.save_summary(fresh, choreo.links(events))
        assert await store.summary("saga-s") == fresh
        assert Link("payment", "OrderCreated", "PaymentSucceeded") in await store.links()
        stalled = choreo.query_for(SagaStatus.STALLED)
        assert await store.list_sagas(stalled, at(29).timestamp(), 10) == []
        assert await store.list_sagas(stalled, at(30).timestamp(), 10) == [fresh]
        running = choreo.query_for(SagaStatus.IN_PROGRESS)
        assert await store.list_sagas(running, at(29).timestamp(), 10) == [fresh]
        assert await store.list_sagas(choreo.query_for(None), 0, 10) == [fresh]
        await store.save_knowledge([tracked.ORDER], [Subscription("h", "svc", "A", "B")])
        await store.save_knowledge([], [Subscription("h", "svc", "C", None)])  # replaces
        assert await store.declarations() == [choreo.Declaration(**vars(tracked.ORDER))]
        assert await store.subscriptions() == [Subscription("h", "svc", "C", None)]
    finally:
        await store.aclose()


async def test_the_tracker_shares_a_database_with_a_sagaline_store_and_an_embedded_bus(
    store_url: str,
) -> None:
    async with (
        Engine(store_url, bus=store_url, service="order", poll_interval=0.05) as order,
        Tracker(bus=store_url, db=store_url) as tracker,
    ):
        await tracker.ready()
        await order.bus_ready()
        await order.publish("OrderCreated", s.OrderCreated("o-x", 1), correlation_id="saga-x")
        view = await until_saga(tracker, "saga-x", lambda v: len(v.timeline) == 1, "recorded")
        assert lanes(view) == [("OrderCreated", "order")]
        assert await order.list_runs() == []


def test_a_tracker_file_can_later_hold_a_store_and_a_foreign_file_is_refused(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"

    async def tracker_first() -> None:
        async with Tracker(db=url, bus=f"sqlite:///{tmp_path / 'bus.db'}"):
            pass
        async with Engine(url) as engine:
            assert await engine.list_runs() == []
        async with Tracker(db=url) as reader:
            assert await reader.sagas() == []

    asyncio.run(tracker_first())
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")

    async def open_foreign() -> None:
        async with Tracker(db=f"sqlite:///{foreign}", bus=f"sqlite:///{tmp_path / 'bus.db'}"):
            pass

    with pytest.raises(DatabaseError, match="not sagaline's"):
        asyncio.run(open_foreign())


async def test_a_reader_refuses_a_database_no_tracker_wrote(postgres_url: str) -> None:
    with pytest.raises(DatabaseError, match="no tracker has recorded"):
        async with Tracker(db=postgres_url):
            pass


def test_a_tracker_that_knows_no_topic_says_what_to_import(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *(sys.executable, "-c", TRACKER_COMMAND),
            *("--bus", f"sqlite:///{tmp_path / 'bus.db'}", "--import", "json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**CLI_ENV, "SAGALINE_DB": f"sqlite:///{tmp_path / 'tracker.db'}"},
        cwd=ROOT,
    )
    assert run.returncode == 1 and "knows no topic" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "tracker.db").exists()


def test_a_choreography_is_declared_once_per_name_and_per_start() -> None:
    again = Choreography(
        "tracked_order",
        start="OrderCreated",
        completed="InventoryReserved",
        compensated="PaymentRefunded",
        deadline=30.0,
    )
    assert again == tracked.ORDER and tracked.ORDER in declarations()
    with pytest.raises(DefinitionError, match="already declared otherwise"):
        Choreography("tracked_order", start="OrderCreated", completed="Other")
    with pytest.raises(DefinitionError, match="both start with 'OrderCreated'"):
        Choreography("another_order", start="OrderCreated", completed="InventoryReserved")
    assert "another_order" not in [d.name for d in declarations()]
