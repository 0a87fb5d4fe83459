"""The saga gauges come from a tracker's counts, read on the owner's loop at most every few
seconds and only when scraped; a failing count keeps the last one. (Their values after a
known workload, over both stores and a real server: tests/http/test_sagas_api.py.)"""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from sagaline.engine.metrics import SagaCounts, metrics_for
from tests.observe.test_metrics import scrape, value

COUNTS = {"IN_PROGRESS": 4, "COMPLETED": 7, "COMPENSATED": 1, "FAILED": 0, "STALLED": 2}


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    async def __call__(self) -> dict[str, int] | None:
        self.calls += 1
        if self.fail:
            raise OSError("the tracker's database is down")
        return COUNTS


async def scrape_until_counted(registry: CollectorRegistry) -> None:
    deadline = time.monotonic() + 10
    while registry.get_sample_value("sagaline_sagas_stalled") is None:
        assert time.monotonic() < deadline, "the saga gauges never showed counts"
        await scrape(registry)
        await asyncio.sleep(0.02)


async def test_saga_gauges_read_cached_counts_refreshed_at_most_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = CollectorRegistry()
    gauges = metrics_for(registry).gauges
    count = Counter()
    counts = SagaCounts("sqlite:///tracker.db", asyncio.get_running_loop(), count)
    monkeypatch.setattr(SagaCounts, "every", 3600.0)
    gauges.add(counts)
    await scrape_until_counted(registry)
    for status, n in COUNTS.items():
        assert value(registry, "sagaline_sagas", status=status) == n
    assert value(registry, "sagaline_sagas_stalled") == 2
    for _ in range(20):
        await scrape(registry)
    await asyncio.sleep(0.05)
    assert count.calls == 1  # twenty scrapes within the interval, no count

    count.fail = True
    monkeypatch.setattr(SagaCounts, "every", 0.0)  # as if the interval had passed
    await scrape(registry)
    deadline = time.monotonic() + 5
    while count.calls == 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await scrape(registry)
    assert count.calls >= 2 and value(registry, "sagaline_sagas_stalled") == 2  # kept

    gauges.remove(counts)
    await scrape(registry)
    assert registry.get_sample_value("sagaline_sagas_stalled") is None


async def test_no_saga_gauge_values_while_no_tracker_recorded() -> None:
    registry = CollectorRegistry()
    gauges = metrics_for(registry).gauges

    async def nothing() -> dict[str, int] | None:
        return None

    counts = SagaCounts("sqlite:///plain.db", asyncio.get_running_loop(), nothing)
    gauges.add(counts)
    await scrape(registry)
    deadline = time.monotonic() + 5
    while counts.counted_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    text = await scrape(registry)
    assert "# TYPE sagaline_sagas gauge" in text
    assert registry.get_sample_value("sagaline_sagas", {"status": "STALLED"}) is None
    assert registry.get_sample_value("sagaline_sagas_stalled") is None
    gauges.remove(counts)
