"""``sagaline.wait_for_event``: a workflow waits durably for an event from the bus.

The hybrid's command/reply: an orchestrated workflow publishes a command event and waits
for the reply another service publishes. The wait is a signal wait underneath: the run
records that it waits for (topic, correlation id) before it suspends, the engine's bus
link subscribes to the topic (group ``service.waits.topic``), and each matching event
becomes a signal for every run waiting for it. Publish the command in the workflow right
before waiting: both commit together, after the wait is recorded, so the reply cannot
arrive before anyone waits for it.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sagaline.engine.context import current_context
from sagaline.engine.durable import await_signal
from sagaline.model.envelope import Event
from sagaline.model.errors import EventTimeoutError, SagalineError, SignalTimeoutError
from sagaline.model.names import check_name
from sagaline.model.topics import check_topic


def signal_name(topic: str, correlation_id: str) -> str:
    """The signal an event becomes for a waiting run; one per (topic, saga)."""
    digest = hashlib.sha256(correlation_id.encode()).hexdigest()[:24]
    return f"event:{topic[:200]}:{digest}"


async def wait_for_event(
    topic: str,
    *,
    correlation_id: str | None = None,
    timeout: timedelta | float | None = None,
    type: Any = Any,
) -> Event[Any]:
    """Suspend until an event on ``topic`` of this saga arrives; return it (``data`` as
    ``type``).

    ``correlation_id`` defaults to this run's saga: the triggering event's in a handler,
    the run id in a workflow (which is also what ``publish`` stamps by default).

    Raises:
        EventTimeoutError: ``timeout`` passed first.
        SagalineError: called outside a workflow, or the engine has no bus.
    """
    ctx = current_context()
    if ctx is None:
        raise SagalineError(
            "sagaline.wait_for_event() was called outside a running workflow; it only "
            "works inside a @workflow or a @sagaline.on handler"
        )
    check_topic(topic)
    if correlation_id is not None:
        check_name("correlation id", correlation_id)
    trigger = ctx.trigger()
    correlation = correlation_id or (
        trigger.correlation_id if trigger is not None else ctx.run.run_id
    )
    watch = ctx.rt.watch_event
    if watch is None:
        raise SagalineError(
            "sagaline.wait_for_event() needs a bus: give the engine one, "
            "Engine(url, bus='nats://...'), in every process that runs this workflow"
        )
    run_id = ctx.run.run_id

    async def before_waiting() -> None:
        await watch(run_id, topic, correlation)

    name = signal_name(topic, correlation)
    try:
        event: Event[Any] = await await_signal(ctx, name, timeout, Event[type], before_waiting)
    except SignalTimeoutError:
        raise EventTimeoutError(topic, correlation, run_id) from None
    return event
