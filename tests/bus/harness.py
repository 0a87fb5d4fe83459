"""The choreography tests' kit: service engines on one bus, a tap, waits for conditions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from sagaline import Engine, RunStatus
from sagaline.bus import Bus, Delivery, open_bus
from sagaline.testing.bus_conformance import Inbox

DEADLINE = 30.0


async def until(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {DEADLINE:.0f} s")
        await asyncio.sleep(0.02)


class Services:
    """Engines of named services, each on its own SQLite file, all on one bus."""

    def __init__(self, stack: AsyncExitStack, tmp_path: Path, bus_url: str) -> None:
        self.stack = stack
        self.tmp_path = tmp_path
        self.bus_url = bus_url
        self.engines: dict[str, Engine] = {}

    async def start(self, name: str, bus: str | None = None, **kwargs: object) -> Engine:
        """The service ``name`` on its database (``name.db``: a restart finds its data)."""
        engine = Engine(
            self.db(name),
            bus=bus or self.bus_url,
            service=name,
            poll_interval=0.05,
            **kwargs,  # type: ignore[arg-type]
        )
        await self.stack.enter_async_context(engine)
        await engine.bus_ready()
        self.engines[name] = engine
        return engine

    def db(self, name: str) -> str:
        return f"sqlite:///{self.tmp_path / f'{name}.db'}"

    async def tap(self, *topics: str) -> Inbox:
        """Everything published to ``topics`` from now on, as the bus delivers it."""
        bus = open_bus(self.bus_url)
        await bus.open()
        self.stack.push_async_callback(bus.aclose)
        inbox = Inbox()

        async def take(delivery: Delivery) -> None:
            inbox.add(delivery)
            await delivery.ack()

        sub = await bus.subscribe("tap", list(topics), take)
        self.stack.push_async_callback(sub.aclose)
        return inbox

    async def raw_bus(self) -> Bus:
        bus = open_bus(self.bus_url)
        await bus.open()
        self.stack.push_async_callback(bus.aclose)
        return bus


async def runs_of(engine: Engine, workflow: str) -> list[RunStatus]:
    return [r.status for r in await engine.list_runs(limit=1000) if r.workflow == workflow]


async def settled(engine: Engine, workflow: str, count: int) -> list[RunStatus]:
    async def check() -> list[RunStatus]:
        while True:
            statuses = await runs_of(engine, workflow)
            if len(statuses) >= count and all(st.is_settled for st in statuses):
                return statuses
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(check(), DEADLINE)
