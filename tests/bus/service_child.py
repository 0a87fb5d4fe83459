"""A service process for the outbox and inbox crash tests; the test SIGKILLs it.

    python -m tests.bus.service_child DB BUS SERVICE MODE

MODE:
- ``stuck-relay``: publish one event, print ``committed`` once it is in the outbox; the
  relay never takes it (killed between the local commit and the broker publish).
- ``stuck-delete``: publish one event, print ``published`` once the broker confirmed it;
  marking it sent never finishes (killed after the publish, before the row is deleted).
- ``slow-handler``: run the service's handlers; its charge step hangs (killed inside it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any, cast

from sagaline import Engine
from sagaline.model.records import OutboxMessage
from sagaline.store import open_store
from sagaline.store.protocol import Store
from tests.bus import services


class StuckStore:
    """Delegates to ``inner``, but one outbox call never returns."""

    def __init__(self, inner: Store, stuck: str) -> None:
        self._inner = inner
        self._stuck = stuck
        self.url = inner.url

    async def claim_outbox(self, limit: int, lease_seconds: float) -> list[OutboxMessage]:
        if self._stuck == "claim_outbox":
            await asyncio.Event().wait()
        return await self._inner.claim_outbox(limit, lease_seconds)

    async def delete_outbox(self, ids: Sequence[str]) -> None:
        if self._stuck == "delete_outbox":
            print("published", flush=True)
            await asyncio.Event().wait()
        await self._inner.delete_outbox(ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def main(db: str, bus: str, service: str, mode: str) -> None:
    if mode == "slow-handler":
        services.FLAGS["slow_charge"] = True
        async with Engine(db, bus=bus, service=service, poll_interval=0.05) as engine:
            await engine.bus_ready()
            print("ready", flush=True)
            await asyncio.Event().wait()
    stuck = "claim_outbox" if mode == "stuck-relay" else "delete_outbox"
    store = cast(Store, StuckStore(open_store(db), stuck))
    async with Engine(store=store, bus=bus, service=service, worker=False) as engine:
        await engine.bus_ready()
        await engine.publish(
            "OrderCreated", services.OrderCreated("o-crash", 7), correlation_id="saga-crash"
        )
        if mode == "stuck-relay":
            print("committed", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
