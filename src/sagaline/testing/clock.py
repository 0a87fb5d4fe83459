"""A clock a test moves by hand — or that skips ahead by itself — so that a 30-day timer
fires in milliseconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta


class FakeClock:
    """Call it for the time (Unix seconds); ``advance`` it to make timers due.

    Pass it as ``Engine(url, clock=clock)``: timers, schedules, ``sagaline.now()`` and the
    audit trail follow it, and each ``advance`` wakes the engine's worker at once. Leases
    keep the database's real clock, so a jump never steals a run from a live worker.

    With ``skip=True`` it is a time-skipping clock (as Temporal's test server): whenever
    the engine's worker has no run executing and a suspended run's timer is ahead, the clock
    jumps to that timer. A test then only starts runs and awaits their results::

        clock = FakeClock(skip=True)
        async with Engine(url, clock=clock) as engine:
            handle = await engine.start(wait_thirty_days)
            await handle.result()              # the 30 days pass as soon as it sleeps

    Advancing by hand races with the workflow (it may not have reached its sleep yet); to
    do it anyway, first wait for the run to be suspended:
    ``await sagaline.testing.wait_for_status(engine, run_id, RunStatus.SUSPENDED)``.
    """

    def __init__(self, start: datetime | float | None = None, *, skip: bool = False) -> None:
        if isinstance(start, datetime):
            self._now = start.timestamp()
        else:
            self._now = time.time() if start is None else float(start)
        self.skip = skip
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self._now

    def advance(self, by: timedelta | float) -> None:
        self._now += by.total_seconds() if isinstance(by, timedelta) else float(by)
        for wake in self._listeners:
            wake()

    def skip_to(self, at: float) -> bool:
        """Jump to ``at`` if this clock skips and ``at`` is ahead; whether it jumped.

        Called by the engine's worker when it is idle and ``at`` is the next timer."""
        if not self.skip or at <= self._now:
            return False
        self.advance(at - self._now)
        return True

    def subscribe(self, wake: Callable[[], None]) -> None:
        self._listeners.append(wake)
