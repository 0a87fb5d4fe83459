"""The observed workload: a three-step order saga whose input steers it.

``fail-*`` orders are declined at ``obs.charge`` (non-retryable) and compensated;
``flaky-*`` orders fail ``obs.reserve`` once, then succeed on the retry; ``wait-*`` orders
wait for the signal ``go`` between reserve and charge (two executions of one run).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

import sagaline
from sagaline import Event, NonRetryable, RetryPolicy, step, wait_for_signal, workflow

FAST = RetryPolicy(max_attempts=3, initial=0.01, max_interval=0.02)
_flaked: set[str] = set()


class Declined(NonRetryable):
    pass


@step(name="obs.create", retry=FAST)
async def create(order: str) -> str:
    return f"o-{order}"


@create.compensate(retry=FAST)
async def cancel(order: str, created: str) -> None:
    pass


@step(name="obs.reserve", retry=FAST)
def reserve(order: str) -> str:  # a plain function: it runs in the engine's threads
    trace.get_current_span().add_event("reserving")  # its step's span, in this thread too
    if order.startswith("flaky-") and order not in _flaked:
        _flaked.add(order)
        raise ConnectionError("inventory service busy")
    return f"r-{order}"


@reserve.compensate(retry=FAST)
def release(order: str, reservation: str) -> None:
    pass


@step(name="obs.charge", retry=FAST)
async def charge(order: str) -> str:
    if order.startswith("fail-"):
        raise Declined("card declined")
    return f"p-{order}"


@workflow(name="obs.order")
async def order_saga(order: str) -> str:
    created = await create(order)
    reservation = await reserve(order)
    if order.startswith("wait-"):
        await wait_for_signal("go")
    payment = await charge(order)
    return f"{created}/{reservation}/{payment}"


@sagaline.on("ObsTraced", service="obs-traced", name="obs.traced")
async def traced_handler(event: Event[dict[str, Any]]) -> None:
    """A handler's run: its trace is the triggering event's (its ``traceparent``)."""
    await create(str(event.data.get("order", "")))
