"""Metrics after a known workload: every counter and histogram has the value the workload
implies, on both stores; the database gauges come from cached counts, not per scrape."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from sagaline import Engine, RunStatus
from sagaline.engine.metrics import Snapshot
from sagaline.store import open_store
from sagaline.store.protocol import RunQuery, Store
from tests.conftest import MakeEngine
from tests.observe.sagas import order_saga

WF = "obs.order"
COMPS = ("tests.observe.sagas.cancel", "tests.observe.sagas.release")


async def run_workload(engine: Engine, ok: int, fail: int, flaky: int, tag: str) -> None:
    tag = f"{tag}{uuid.uuid4().hex[:8]}"  # a flaky order fails once per process: new ids
    orders = (
        [f"ok-{tag}-{i}" for i in range(ok)]
        + [f"fail-{tag}-{i}" for i in range(fail)]
        + [f"flaky-{tag}-{i}" for i in range(flaky)]
    )
    handles = [await engine.start(order_saga, order) for order in orders]
    for handle in handles:
        with contextlib.suppress(Exception):
            await handle.result()
    statuses = [await handle.status() for handle in handles]
    expected = [RunStatus.COMPLETED] * ok + [RunStatus.COMPENSATED] * fail
    assert statuses == expected + [RunStatus.COMPLETED] * flaky


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def scrape(registry: CollectorRegistry) -> str:
    """What a scraper gets: the exposition text, rendered in another thread (as the
    exporter's HTTP thread does)."""
    return (await asyncio.to_thread(generate_latest, registry)).decode()


async def scrape_counted(registry: CollectorRegistry, status: str) -> float:
    """Scrape until the gauge shows counts (the first scrape only asks for a recount)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await scrape(registry)
        got = registry.get_sample_value("sagaline_runs", {"status": status})
        if got is not None:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError("the runs gauge never showed counts")


async def test_counters_and_histograms_after_a_known_workload(make_engine: MakeEngine) -> None:
    registry = CollectorRegistry()
    async with make_engine(metrics=registry, tracing=False) as engine:
        await run_workload(engine, ok=6, fail=3, flaky=2, tag="k")

        assert value(registry, "sagaline_runs_started_total", workflow=WF) == 11
        finished = "sagaline_runs_finished_total"
        assert value(registry, finished, workflow=WF, status="COMPLETED") == 8
        assert value(registry, finished, workflow=WF, status="COMPENSATED") == 3
        duration = "sagaline_run_duration_seconds_count"
        assert value(registry, duration, workflow=WF, status="COMPLETED") == 8
        assert value(registry, duration, workflow=WF, status="COMPENSATED") == 3

        attempts, failures = "sagaline_step_attempts_total", "sagaline_step_failures_total"
        step = {"kind": "step"}
        assert value(registry, attempts, step="obs.create", **step) == 11
        assert value(registry, attempts, step="obs.reserve", **step) == 13  # 2 retried once
        assert value(registry, attempts, step="obs.charge", **step) == 11
        assert value(registry, failures, step="obs.create", **step) == 0
        assert value(registry, failures, step="obs.reserve", **step) == 2
        assert value(registry, failures, step="obs.charge", **step) == 3  # declined: no retry
        step_seconds = "sagaline_step_duration_seconds_count"
        assert value(registry, step_seconds, step="obs.reserve", **step) == 13
        for comp in COMPS:  # each declined order undoes reserve and create, once
            assert value(registry, attempts, step=comp, kind="compensation") == 3
            assert value(registry, failures, step=comp, kind="compensation") == 0

        # 4 commits per completed order (3 steps, the end), one more for a retried attempt,
        # 5 per declined one (create, reserve, the declined charge, 2 compensations).
        checkpoints = 6 * 4 + 2 * 5 + 3 * 5
        batches = value(registry, "sagaline_commit_batch_size_count")
        assert value(registry, "sagaline_commit_batch_size_sum") >= checkpoints
        assert 0 < batches <= value(registry, "sagaline_commit_batch_size_sum")
        assert value(registry, "sagaline_commit_seconds_count") == batches

        assert await scrape_counted(registry, "COMPLETED") == 8
        assert value(registry, "sagaline_runs", status="COMPENSATED") == 3
        assert value(registry, "sagaline_outbox_backlog") == 0
        assert value(registry, "sagaline_worker_in_flight") == 0
        assert value(registry, "sagaline_worker_concurrency") == 100
    text = await scrape(registry)
    assert "sagaline_worker_concurrency 0.0" in text  # a closed engine reports nothing


async def test_the_default_registry_counts_unless_turned_off(make_engine: MakeEngine) -> None:
    def started() -> float:
        return REGISTRY.get_sample_value("sagaline_runs_started_total", {"workflow": WF}) or 0

    before = started()
    async with make_engine(tracing=False) as engine:  # metrics on: prometheus is installed
        await run_workload(engine, ok=2, fail=1, flaky=0, tag="d")
    assert started() - before == 3
    async with make_engine(metrics=False, tracing=False) as engine:
        await run_workload(engine, ok=2, fail=0, flaky=0, tag="off")
    assert started() - before == 3


async def test_in_flight_shows_runs_being_executed(make_engine: MakeEngine) -> None:
    registry = CollectorRegistry()
    async with make_engine(metrics=registry, tracing=False, concurrency=7) as engine:
        handles = [await engine.start(order_saga, f"wait-f-{i}") for i in range(3)]
        await wait_for(engine, [h.run_id for h in handles], RunStatus.SUSPENDED)
        await scrape(registry)
        assert value(registry, "sagaline_worker_concurrency") == 7
        assert value(registry, "sagaline_worker_in_flight") == 0  # suspended: released
        assert await scrape_counted(registry, "SUSPENDED") == 3
        for handle in handles:
            await engine.signal(handle.run_id, "go")
        for handle in handles:
            await handle.result()


async def wait_for(engine: Engine, run_ids: Sequence[str], status: RunStatus) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = [await engine.get_run(run_id) for run_id in run_ids]
        if all(run.status is status for run in runs):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"runs never all {status.value}")


class CountingStore:
    """A real store that counts the runs-by-status queries made on it."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.url = inner.url
        self.counts = 0

    async def count_runs(self, query: RunQuery) -> Any:
        self.counts += 1
        return await self._inner.count_runs(query)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_scrapes_read_cached_counts_refreshed_at_most_every_few_seconds(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = CollectorRegistry()
    store = CountingStore(open_store(store_url))
    monkeypatch.setattr(Snapshot, "every", 3600.0)
    async with Engine(store=store, metrics=registry, tracing=False) as engine:
        await run_workload(engine, ok=2, fail=0, flaky=0, tag="c")
        assert await scrape_counted(registry, "COMPLETED") == 2  # the first scrape counts
        counted = store.counts
        for _ in range(20):
            await scrape(registry)
        await asyncio.sleep(0.05)
        assert store.counts == counted  # twenty scrapes within the interval, no query
        monkeypatch.setattr(Snapshot, "every", 0.0)  # as if the interval had passed
        await scrape(registry)
        deadline = time.monotonic() + 5
        while store.counts == counted and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert store.counts == counted + 1  # an old count is refreshed, once
