"""Choreography on every bus: handlers as durable runs, the outbox, the inbox, failure events.

Each service is an ``Engine`` with its own database (as in production: each service owns
its data) sharing one bus namespace. A *tap* (a subscription of its own on the bus) sees
what really went over the wire, independently of sagaline's tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sagaline import RunStatus
from sagaline.bus import Message
from tests.bus import services as s
from tests.bus.harness import Services, runs_of, settled, until

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    s.CALLS.clear()
    s.SEEN.clear()
    s.FLAGS.update(out_of_stock=False)
    yield


async def test_an_event_reaches_every_subscribed_service_once(services: Services) -> None:
    order = await services.start("order")
    payment = await services.start("payment")
    notify = await services.start("notify")
    tap = await services.tap("PaymentSucceeded")
    message_id = await order.publish(
        "OrderCreated", s.OrderCreated("o-1", 30), correlation_id="saga-1"
    )
    assert await settled(payment, "payment.charge", 1) == [RunStatus.COMPLETED]
    assert await settled(notify, "notify.order_created", 1) == [RunStatus.COMPLETED]
    await tap.until("PaymentSucceeded on the bus", lambda: len(tap.received) >= 1)
    assert s.CALLS["charge"] == ["o-1"] and s.CALLS["notify"] == ["o-1"]
    event = s.SEEN[0]
    assert (event.id, event.type, event.correlation_id) == (message_id, "OrderCreated", "saga-1")
    assert event.source == "order" and event.causation_id is None
    out = tap.received[0]
    assert out.headers["sagaline-correlation-id"] == "saga-1"  # inherited from the trigger
    assert out.headers["sagaline-causation-id"] == message_id
    assert out.headers["sagaline-source"] == "payment"
    await asyncio.sleep(0.5)
    assert len(tap.received) == 1 and s.CALLS["charge"] == ["o-1"]
    assert await payment.outbox_size() == 0 and await order.outbox_size() == 0


async def test_a_message_delivered_twice_runs_its_handler_once(services: Services) -> None:
    payment = await services.start("payment")
    bus = await services.raw_bus()
    body = b'{"order_id": "o-2", "amount": 5}'
    headers = {"sagaline-correlation-id": "saga-2", "sagaline-time": "2026-12-01T10:00:00+00:00"}
    twice = Message("dup-1", "OrderCreated", body, headers)
    await bus.publish([twice])
    await bus.publish([twice, Message("other-1", "OrderCreated", body, headers)])
    await settled(payment, "payment.charge", 2)
    await asyncio.sleep(0.5)
    assert sorted(await runs_of(payment, "payment.charge")) == [RunStatus.COMPLETED] * 2
    assert s.CALLS["charge"] == ["o-2", "o-2"]  # one per distinct message id


async def test_a_failing_handler_publishes_its_failure_event_and_others_compensate(
    services: Services,
) -> None:
    s.FLAGS["out_of_stock"] = True
    order = await services.start("order")
    payment = await services.start("payment")
    inventory = await services.start("inventory")
    tap = await services.tap("PaymentSucceeded", "InventoryFailed")
    await order.publish("OrderCreated", s.OrderCreated("o-3", 30), correlation_id="saga-3")
    assert await settled(inventory, "inventory.reserve", 1) == [RunStatus.FAILED]
    await until("the refund", lambda: s.CALLS["refund_payment"] == ["o-3"])
    assert await settled(payment, "payment.refund", 1) == [RunStatus.COMPLETED]
    await tap.until("both events on the bus", lambda: len(tap.received) >= 2)
    failure = next(e for e in s.SEEN if e.type == "InventoryFailed")
    assert failure.correlation_id == "saga-3"
    assert failure.source == "inventory"
    data = failure.data
    assert isinstance(data, dict)
    assert data["error"]["type"].endswith("NonRetryable")
    assert data["error"]["message"] == "no stock for o-3"
    assert data["event"] == {"order_id": "o-3", "payment_id": "pay-o-3"}
    payment_succeeded = next(m for m in tap.received if m.topic == "PaymentSucceeded")
    assert failure.causation_id == payment_succeeded.id  # the message that caused it


async def test_a_foreign_json_message_is_accepted_with_its_correlation_field(
    services: Services,
) -> None:
    foreign = await services.start("foreign", correlation_field="order_id")
    bus = await services.raw_bus()
    await bus.publish([Message("ext-1", "Foreign", b'{"order_id": "o-4", "note": "hi"}', {})])
    assert await settled(foreign, "foreign.handler", 1) == [RunStatus.COMPLETED]
    event = s.SEEN[0]
    assert event.id == "ext-1" and event.correlation_id == "o-4"
    assert event.data == {"order_id": "o-4", "note": "hi"} and event.source is None


async def test_an_event_that_does_not_decode_parks_its_run_and_keeps_the_message(
    services: Services,
) -> None:
    strict = await services.start("strict")
    bus = await services.raw_bus()
    await bus.publish([Message("bad-1", "Strict", b'{"order_id": 7}', {})])
    assert await settled(strict, "strict.handler", 1) == [RunStatus.BLOCKED]
    run = next(r for r in await strict.list_runs() if r.workflow == "strict.handler")
    assert run.error is not None and run.error["type"] == "PayloadDecodeError"
    assert "order_id" in run.error["message"]
    assert b'"order_id":7' in run.input  # the message is kept, with the run
    assert s.CALLS["strict"] == []


async def test_an_orchestrated_saga_publishes_each_event_once(services: Services) -> None:
    shop = await services.start("shop")
    tap = await services.tap("OrderCreated", "Flaky", "ShipmentBooked")
    handle = await shop.start(s.orchestrated_publisher, "o-5", run_id="hybrid-1")
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "o-5"
    await tap.until("three events", lambda: len(tap.received) >= 3)
    await asyncio.sleep(0.5)
    assert sorted(m.topic for m in tap.received) == ["Flaky", "OrderCreated", "ShipmentBooked"]
    flaky = next(m for m in tap.received if m.topic == "Flaky")
    assert b'"attempt":2' in flaky.body  # the failed first attempt's event never went out
    assert all(m.headers["sagaline-correlation-id"] == "hybrid-1" for m in tap.received)
    history = [e.type for e in await shop.history("hybrid-1")]
    assert history.count("EventPublished") == 3


async def test_a_workflow_sends_a_command_and_waits_durably_for_its_reply(
    services: Services,
) -> None:
    shop = await services.start("shop")
    await services.start("stock")
    handle = await shop.start(s.orchestrated_command, "A-17", 30.0, run_id="cmd-1")
    assert await asyncio.wait_for(handle.result(), 30) == "A-17:True:stock"
    assert s.CALLS["reserve_stock"] == ["cmd-1"]  # the saga's correlation is the run id
    history = [e.type for e in await shop.history("cmd-1")]
    assert "RunSuspended" in history and "SignalConsumed" in history


async def test_a_wait_for_an_event_that_never_comes_times_out(services: Services) -> None:
    shop = await services.start("shop")  # no stock service: nobody answers
    handle = await shop.start(s.orchestrated_command, "B-2", 0.5, run_id="cmd-2")
    assert await asyncio.wait_for(handle.result(), 30) == "no reply"
