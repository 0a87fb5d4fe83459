"""Prometheus metrics: what a monitoring system needs to see sagaline like any other service.

Optional: ``prometheus-client`` comes with ``pip install sagaline[metrics]``; without it
:func:`available` is False and nothing here is built, so the engine costs nothing extra.

Every engine of a process reports into one :class:`Metrics` per registry (the default:
prometheus-client's global ``REGISTRY``, which ``sagaline serve``'s ``/metrics`` and
``sagaline worker --metrics-port`` expose): a metric name can be registered only once, and
a process's metrics are its own whatever the number of engines in it.

Counters and histograms are updated where things happen (a step attempt, a commit, a run
settling). The gauges that need the database — runs by status, the outbox backlog, and
(where a tracker is read, as ``sagaline serve`` does) choreographed sagas by status — are
read from counts kept by :class:`Snapshot` and :class:`SagaCounts`: a scrape never queries
the database itself; it schedules a recount on the owner's loop when the last one is older
than ``every`` seconds, so a million runs cost one indexed count every few seconds, and
only while someone scrapes. A scrape shows the counts of the previous recount.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from sagaline.model.errors import SagalineError
from sagaline.model.records import Checkpoint, CommitResult
from sagaline.store.protocol import RunQuery, Store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = logging.getLogger("sagaline.metrics")


STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                30, 60)  # fmt: skip
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
               4 * 3600, 86400)  # fmt: skip
COMMIT_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@functools.cache
def available() -> bool:
    """Whether prometheus-client is installed (``sagaline[metrics]``). Imported only when
    an engine turns metrics on: a process that never does (a worker with no metrics port)
    does not pay for loading it."""
    return importlib.util.find_spec("prometheus_client") is not None


def _client() -> ModuleType:
    require()
    import prometheus_client

    return prometheus_client


def require() -> None:
    if not available():
        raise SagalineError(
            "metrics need prometheus-client; install it with `pip install 'sagaline[metrics]'`"
        )


class Metrics:
    """The engine's metrics in one registry; get it with :func:`metrics_for`.

    Label children are cached per name: a step attempt costs two counter increments and a
    histogram observation, with no label lookup once its step has been seen.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        require()
        pc = _client()
        self.registry = registry
        self.runs_started = pc.Counter(
            "sagaline_runs_started", "Runs started, by workflow.", ["workflow"], registry=registry
        )
        self.runs_finished = pc.Counter(
            "sagaline_runs_finished",
            "Runs that ended or were parked for an operator, by workflow and status "
            "(a parked run counts again when it ends after an operator's action).",
            ["workflow", "status"],
            registry=registry,
        )
        self.run_duration = pc.Histogram(
            "sagaline_run_duration_seconds",
            "From a run's start to its end (or parking), by workflow and status.",
            ["workflow", "status"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.step_attempts = pc.Counter(
            "sagaline_step_attempts",
            "Attempts of steps and compensations, by step and kind (step, compensation).",
            ["step", "kind"],
            registry=registry,
        )
        self.step_failures = pc.Counter(
            "sagaline_step_failures",
            "Failed attempts (retried or not), by step and kind.",
            ["step", "kind"],
            registry=registry,
        )
        self.step_duration = pc.Histogram(
            "sagaline_step_duration_seconds",
            "One attempt of a step or compensation, by step and kind.",
            ["step", "kind"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.commit_batch = pc.Histogram(
            "sagaline_commit_batch_size",
            "Checkpoints written by one group commit.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = pc.Histogram(
            "sagaline_commit_seconds",
            "Latency of one group commit (one database transaction).",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )
        self.gauges = StateCollector()
        registry.register(self.gauges)
        self._steps: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._runs: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._started: dict[str, Any] = {}

    def step(self, name: str, kind: str) -> tuple[Any, Any, Any]:
        """(attempts, failures, duration) children for one step."""
        key = (name, kind)
        children = self._steps.get(key)
        if children is None:
            children = (
                self.step_attempts.labels(name, kind),
                self.step_failures.labels(name, kind),
                self.step_duration.labels(name, kind),
            )
            self._steps[key] = children
        return children

    def started(self, workflow: str) -> None:
        child = self._started.get(workflow)
        if child is None:
            child = self._started[workflow] = self.runs_started.labels(workflow)
        child.inc()

    def finished(self, workflow: str, status: str, seconds: float) -> None:
        key = (workflow, status)
        children = self._runs.get(key)
        if children is None:
            children = (
                self.runs_finished.labels(workflow, status),
                self.run_duration.labels(workflow, status),
            )
            self._runs[key] = children
        children[0].inc()
        children[1].observe(max(seconds, 0.0))

    def timed_commit(
        self, commit: Callable[[Sequence[Checkpoint]], Awaitable[list[CommitResult]]]
    ) -> Callable[[Sequence[Checkpoint]], Awaitable[list[CommitResult]]]:
        """``commit`` measured: each call's batch size and latency, and the child runs
        whose creation landed with it (they start there, not in ``engine.start``)."""
        batch_size, seconds = self.commit_batch, self.commit_seconds

        async def write(batch: Sequence[Checkpoint]) -> list[CommitResult]:
            began = time.perf_counter()
            results = await commit(batch)
            seconds.observe(time.perf_counter() - began)
            batch_size.observe(len(batch))
            for cp, result in zip(batch, results, strict=False):
                if cp.new_runs and result.landed:
                    for run in cp.new_runs:
                        self.started(run.workflow)
            return results

        return write


_lock = threading.Lock()
_by_registry: dict[int, Metrics] = {}


def metrics_for(registry: CollectorRegistry | None = None) -> Metrics:
    """The process's :class:`Metrics` in ``registry`` (default: the global ``REGISTRY``)."""
    require()
    registry = registry if registry is not None else _client().REGISTRY
    with _lock:
        found = _by_registry.get(id(registry))
        if found is None or found.registry is not registry:
            found = _by_registry[id(registry)] = Metrics(registry)
        return found


class Counted:
    """Counts for the gauges, refreshed on their owner's loop at most every ``every``
    seconds and only when a scrape asks for them, so scraping never blocks on the database
    (a scrape runs in the exporter's thread, or in the API's loop) and never scans per
    request. Subclasses say what :meth:`recount` reads."""

    every = 5.0

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.loop = loop
        self.counted_at: float | None = None
        """When the counts were last read (``time.monotonic``); None: never yet."""
        self._counting: Any = None

    async def recount(self) -> None:
        raise NotImplementedError

    def due(self) -> None:
        """Ask for a recount on the owner's loop if the last one is old (from any thread)."""
        if self._counting is not None and not self._counting.done():
            return  # (a done one may have been stored after it finished: not "in progress")
        if self.counted_at is not None and time.monotonic() - self.counted_at < self.every:
            return
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            self._counting = asyncio.run_coroutine_threadsafe(self.recount(), self.loop)


class Snapshot(Counted):
    """One engine's view for the gauges: its worker's load, and its database's counts
    (refreshed on the engine's own loop, as :class:`Counted` says)."""

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        in_flight: Callable[[], int] | None,
        concurrency: int,
    ) -> None:
        super().__init__(store.url, loop)
        self.store = store
        self.in_flight = in_flight
        self.concurrency = concurrency
        self.by_status: dict[str, int] = {}
        self.outbox: int | None = None

    async def recount(self) -> None:
        """Read the counts now (a failure keeps the last ones: a scrape must not fail)."""
        try:
            counts = await self.store.count_runs(RunQuery())
            self.by_status = {status.value: n for status, n in counts.items()}
            self.outbox = await self.store.outbox_size()
        except Exception as exc:
            log.debug("counting runs for the metrics failed: %s", exc)
        finally:
            self.counted_at = time.monotonic()


class SagaCounts(Counted):
    """A tracker's choreographed sagas by status for the gauges, read by ``count`` (the
    tracker's counts; None while no tracker has recorded into ``url``) on the loop of the
    process that reads them, as :class:`Counted` says."""

    def __init__(
        self,
        url: str,
        loop: asyncio.AbstractEventLoop,
        count: Callable[[], Awaitable[dict[str, int] | None]],
    ) -> None:
        super().__init__(url, loop)
        self.count = count
        self.by_status: dict[str, int] | None = None

    async def recount(self) -> None:
        """Read the counts now (a failure keeps the last ones: a scrape must not fail)."""
        try:
            self.by_status = await self.count()
        except Exception as exc:
            log.debug("counting sagas for the metrics failed: %s", exc)
        finally:
            self.counted_at = time.monotonic()


class StateCollector:
    """The gauges read at scrape time from each open engine's :class:`Snapshot` and each
    tracker reader's :class:`SagaCounts`."""

    def __init__(self) -> None:
        self._snapshots: weakref.WeakSet[Snapshot] = weakref.WeakSet()
        self._sagas: weakref.WeakSet[SagaCounts] = weakref.WeakSet()

    def add(self, counted: Snapshot | SagaCounts) -> None:
        if isinstance(counted, SagaCounts):
            self._sagas.add(counted)
        else:
            self._snapshots.add(counted)

    def remove(self, counted: Snapshot | SagaCounts) -> None:
        if isinstance(counted, SagaCounts):
            self._sagas.discard(counted)
        else:
            self._snapshots.discard(counted)

    def describe(self) -> list[Metric]:
        return []  # names are known only at collect time; nothing to check at register

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        snapshots = list(self._snapshots)
        for snapshot in snapshots:
            snapshot.due()
        runs = GaugeMetricFamily(
            "sagaline_runs",
            "Runs in the database by status, as counted at most a few seconds ago.",
            labels=["status"],
        )
        backlog = GaugeMetricFamily(
            "sagaline_outbox_backlog", "Events written but not yet confirmed by the broker."
        )
        totals: dict[str, int] = {}
        outbox: int | None = None
        for snapshot in _freshest_by_url(snapshots):
            for status, n in snapshot.by_status.items():
                totals[status] = totals.get(status, 0) + n
            if snapshot.outbox is not None:
                outbox = (outbox or 0) + snapshot.outbox
        for status, n in sorted(totals.items()):
            runs.add_metric([status], n)
        yield runs
        if outbox is not None:
            backlog.add_metric([], outbox)
        yield backlog
        workers = [s for s in snapshots if s.in_flight is not None]
        in_flight = GaugeMetricFamily(
            "sagaline_worker_in_flight", "Runs this process's workers are executing."
        )
        in_flight.add_metric([], sum(_call(s.in_flight) for s in workers))
        yield in_flight
        capacity = GaugeMetricFamily(
            "sagaline_worker_concurrency", "Runs this process's workers may execute at once."
        )
        capacity.add_metric([], sum(s.concurrency for s in workers))
        yield capacity
        yield from self._saga_gauges()

    def _saga_gauges(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        readers = list(self._sagas)
        for counts in readers:
            counts.due()
        sagas = GaugeMetricFamily(
            "sagaline_sagas",
            "Choreographed sagas the tracker recorded, by status, as counted at most a few "
            "seconds ago.",
            labels=["status"],
        )
        stalled = GaugeMetricFamily(
            "sagaline_sagas_stalled",
            "Choreographed sagas past their deadline and not ended: a service is not answering.",
        )
        totals: dict[str, int] | None = None
        for counts in _freshest_by_url(readers):
            if counts.by_status is not None:
                totals = {} if totals is None else totals
                for status, n in counts.by_status.items():
                    totals[status] = totals.get(status, 0) + n
        if totals is not None:
            for status, n in sorted(totals.items()):
                sagas.add_metric([status], n)
            stalled.add_metric([], totals.get("STALLED", 0))
        yield sagas
        yield stalled


C = TypeVar("C", bound=Counted)


def _freshest_by_url(counted: Iterable[C]) -> list[C]:
    """Several engines (or readers) on one database count it once: the latest count of
    each; distinct databases add up."""
    by_url: dict[str, C] = {}
    for item in counted:
        best = by_url.get(item.url)
        if best is None or (item.counted_at or 0.0) > (best.counted_at or 0.0):
            by_url[item.url] = item
    return list(by_url.values())


def _call(fn: Callable[[], int] | None) -> int:
    try:
        return fn() if fn is not None else 0
    except Exception:  # a worker closing while scraped
        return 0
