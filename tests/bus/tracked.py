"""The order saga of :mod:`tests.bus.services`, declared for the tracker.

Its refund path ends in no event of its own there, so a service of this module's own
(``refunds``, which no other test starts) answers ``InventoryFailed`` with
``PaymentRefunded``: the saga's compensated end.
"""

from __future__ import annotations

from typing import Any

import sagaline
from sagaline import Event
from sagaline.engine.tracker import Choreography
from tests.bus import services  # noqa: F401 - the saga's other handlers

ORDER = Choreography(
    "tracked_order",
    start="OrderCreated",
    completed="InventoryReserved",
    compensated="PaymentRefunded",
    deadline=30.0,
)


@sagaline.on("InventoryFailed", service="refunds", name="refunds.refund")
async def refund(event: Event[dict[str, Any]]) -> None:
    original = event.data["event"]
    assert isinstance(original, dict)
    await sagaline.publish("PaymentRefunded", {"order_id": original["order_id"]})
