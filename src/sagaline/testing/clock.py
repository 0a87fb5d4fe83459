"""A clock a test moves by hand, so that a 30-day timer fires in milliseconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta


class FakeClock:
    """Call it for the time (Unix seconds); ``advance`` it to make timers due.

    Pass it as ``Engine(url, clock=clock)``: timers, schedules, ``sagaline.now()`` and the
    audit trail follow it, and each ``advance`` wakes the engine's worker at once. Leases
    keep the database's real clock, so a jump never steals a run from a live worker.

        clock = FakeClock()
        async with Engine(url, clock=clock) as engine:
            handle = await engine.start(wait_thirty_days)
            clock.advance(timedelta(days=30))
            await handle.result()
    """

    def __init__(self, start: datetime | float | None = None) -> None:
        if isinstance(start, datetime):
            self._now = start.timestamp()
        else:
            self._now = time.time() if start is None else float(start)
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self._now

    def advance(self, by: timedelta | float) -> None:
        self._now += by.total_seconds() if isinstance(by, timedelta) else float(by)
        for wake in self._listeners:
            wake()

    def subscribe(self, wake: Callable[[], None]) -> None:
        self._listeners.append(wake)
