"""``open_bus``: a factory of opened buses on one fresh namespace, over all four buses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from sagaline.bus import Bus
from sagaline.bus import open_bus as make_bus
from tests.bus.brokers import BUSES, bus_url, cleanup
from tests.bus.harness import Services


@pytest.fixture(params=BUSES)
def bus_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def bus_namespace(bus_kind: str, tmp_path: Path) -> Iterator[str]:
    """Sync on purpose: the probe and the cleanup run their own event loops."""
    url = bus_url(bus_kind, tmp_path)
    yield url
    cleanup(bus_kind, url)


@pytest.fixture
async def open_bus(bus_namespace: str) -> AsyncIterator[Callable[[], Awaitable[Bus]]]:
    opened: list[Bus] = []

    async def make() -> Bus:
        bus = make_bus(bus_namespace)
        await bus.open()
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        await bus.aclose()  # idempotent: most checks closed theirs already


@pytest.fixture
async def services(bus_namespace: str, tmp_path: Path) -> AsyncIterator[Services]:
    async with AsyncExitStack() as stack:
        yield Services(stack, tmp_path, bus_namespace)
