"""The bus conformance suite (``sagaline.testing.bus_conformance``) over every bus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from sagaline.bus import Bus
from sagaline.testing.bus_conformance import CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_bus_conformance(
    check: Callable[[Callable[[], Awaitable[Bus]]], Awaitable[None]],
    open_bus: Callable[[], Awaitable[Bus]],
) -> None:
    await check(open_bus)
