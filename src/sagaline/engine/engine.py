"""``Engine``: the public entry point. Starts, inspects and operates runs; embeds a worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import msgspec

from sagaline.bus import Bus, open_bus
from sagaline.engine.choreography import BusLink, outside_message
from sagaline.engine.commit import Batcher, GroupCommitter
from sagaline.engine.event_waits import signal_name
from sagaline.engine.handlers import handlers_of
from sagaline.engine.ids import fresh_id
from sagaline.engine.leases import Leases
from sagaline.engine.metrics import Metrics, Snapshot
from sagaline.engine.observe import MetricsOption, Observer, TracingOption, build_observer
from sagaline.engine.registry import WorkflowDef, get_workflow, workflow_names
from sagaline.engine.runtime import Runtime
from sagaline.engine.tasks import TaskService
from sagaline.engine.wake import wait_event
from sagaline.engine.worker import Worker, new_owner_id
from sagaline.model import operations
from sagaline.model.codec import DEFAULT_MAX_PAYLOAD_BYTES, Codec, PayloadCodec
from sagaline.model.envelope import Event
from sagaline.model.errors import (
    InvalidOperationError,
    PayloadError,
    RunConflictError,
    RunFailedError,
    RunNotFoundError,
    SagalineError,
    UnknownWorkflowError,
)
from sagaline.model.locks import LockInfo, LockRequest, check_key
from sagaline.model.names import check_name
from sagaline.model.rates import QueueRate, check_rate, default_burst
from sagaline.model.records import (
    EventRecord,
    NewRun,
    OperatorChange,
    RunRecord,
    StepRecord,
)
from sagaline.model.status import ACTIVE, RunStatus
from sagaline.store import open_store
from sagaline.store.protocol import Store

log = logging.getLogger("sagaline")
R = TypeVar("R")
DEFAULT_URL = "sqlite:///sagaline.db"


class RunHandle(Generic[R]):
    """A started run: wait for its result, or ask its status."""

    def __init__(self, engine: Engine, run_id: str, workflow: WorkflowDef[Any, R] | None) -> None:
        self.engine = engine
        self.run_id = run_id
        self._workflow = workflow

    async def status(self) -> RunStatus:
        return (await self.engine.get_run(self.run_id)).status

    async def result(self) -> R:
        """The workflow's output once it completes.

        Raises:
            RunFailedError: as soon as the run ends any other way, or is parked for an
                operator (COMPENSATION_FAILED, FAILED_AFTER_PIVOT, BLOCKED).
        """
        run = await self.engine.wait(self.run_id)
        if run.status is not RunStatus.COMPLETED:
            raise RunFailedError(run.run_id, run.status, run.error)
        workflow = self._workflow
        if workflow is None:
            with contextlib.suppress(UnknownWorkflowError):
                workflow = get_workflow(run.workflow)
        return_type = workflow.signature.return_type if workflow else Any
        value: R = self.engine.codec.decode(
            run.output or b"null", return_type, f"run {run.run_id!r} result"
        )
        return value

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"


class Engine:
    """Runs sagas durably on the database at ``url`` (default ``sqlite:///sagaline.db``).

    Use it as an async context manager: entering opens the database (creating or migrating
    its schema), starts the embedded worker unless ``worker=False``, and resumes every
    unfinished run of the workflows this process has imported.

    Args:
        url: ``sqlite:///relative.db`` or ``sqlite:////absolute.db``.
        worker: execute runs in this process; ``False`` makes a client that only starts,
            inspects and operates runs.
        concurrency: runs executed at once by the embedded worker.
        lease_seconds: how long a claimed run stays this worker's without a heartbeat; a
            dead worker's runs are taken over within about this long (at once on its host).
        poll_interval: how often an idle worker looks for runs started elsewhere (on
            PostgreSQL it is also woken by LISTEN/NOTIFY).
        queues: the queues whose runs the embedded worker executes.
        clock: the time source for timers, schedules and audit timestamps (Unix seconds);
            :class:`sagaline.testing.FakeClock` makes a 30-day sleep take milliseconds.
            Leases are always judged by the database's own clock.
        max_payload_bytes: the largest encoded input, result or argument list.
        payload_codec: bytes to bytes after JSON encoding, for every payload the engine
            stores or sends (inputs, results, signals, child inputs, outbox bodies,
            outputs): :class:`sagaline.codecs.AesGcm` encrypts them, and a user's own
            :class:`~sagaline.codecs.PayloadCodec` may compress them or call a KMS
            (:class:`~sagaline.codecs.Chain` combines several). Payloads stored before it
            was configured still decode.
        metrics: Prometheus metrics (``sagaline[metrics]``): on by default when
            prometheus-client is installed, into its global registry (what ``/metrics`` and
            ``sagaline worker --metrics-port`` serve); a ``CollectorRegistry`` reports there
            instead; ``False`` turns them off.
        tracing: OpenTelemetry spans per run execution and per step attempt
            (``sagaline[otel]``): on by default when opentelemetry-api is installed, on the
            global tracer provider (a no-op until the application configures an SDK); a
            ``TracerProvider`` is used instead; ``False`` turns them off.
        durable_backoff_after: a step's retry backoff longer than this many seconds
            suspends the run in the database (a stored wake-up, no worker memory, any worker
            takes it up when it is due, a fake clock drives it) instead of sleeping under
            the lease; shorter ones sleep in memory, which is faster.
        bus: the message bus for choreography: ``nats://host:4222`` (JetStream),
            ``amqp://user:pass@host:5672/`` (RabbitMQ), or an embedded broker in a database,
            ``sqlite:///path/bus.db`` or ``postgresql://...``. With a bus, the engine relays
            its outbox and (with its worker) runs the ``@sagaline.on`` handlers of its
            service. The engine opens even while the broker is down; events wait.
        service: the service this process is (the source of its events; the handlers it
            runs); default: every handler's own.
        create: ``False`` for a client that only reads: a database (file, folder, schema)
            that is not there raises :class:`DatabaseNotFoundError` instead of being made.
        correlation_field: for messages from producers that are not sagaline: the field of
            their JSON data that holds the correlation id (``"order_id"``).
        store: a ready-made (unopened) store instead of one built from ``url``, for
            instance a fault-injecting wrapper from :mod:`sagaline.testing`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        store: Store | None = None,
        worker: bool = True,
        concurrency: int = 100,
        lease_seconds: float = 10.0,
        poll_interval: float = 1.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        sync_threads: int = 32,
        queues: Sequence[str] = ("default",),
        clock: Callable[[], float] | None = None,
        bus: str | None = None,
        service: str | None = None,
        correlation_field: str | None = None,
        create: bool = True,
        payload_codec: PayloadCodec | None = None,
        metrics: MetricsOption = None,
        tracing: TracingOption = None,
        durable_backoff_after: float = 30.0,
    ) -> None:
        if concurrency < 1 or lease_seconds <= 0 or poll_interval <= 0:
            raise SagalineError(
                "concurrency must be at least 1, lease_seconds and poll_interval positive"
            )
        if not durable_backoff_after >= 0:
            raise SagalineError("durable_backoff_after must be 0 or more seconds")
        self.url = store.url if store is not None else url or DEFAULT_URL
        self._given_store = store
        self.codec = Codec(max_payload_bytes, payload_codec)
        self._embed_worker = worker
        self._concurrency = concurrency
        self._durable_backoff_after = durable_backoff_after
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._sync_threads = sync_threads
        self._queues = list(queues)
        self._clock = clock or time.time
        self._store: Store | None = None
        self._worker: Worker | None = None
        self._task_arrived = asyncio.Event()
        self._task_service: TaskService | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._settled: dict[str, asyncio.Event] = {}
        self._final: dict[str, RunRecord] = {}
        self._creates: Batcher[tuple[NewRun, str | None], tuple[RunRecord, bool]] | None = None
        if service is not None:
            check_name("service", service)
        self.service = service
        self.bus_url = bus
        self._bus: Bus | None = open_bus(bus) if bus is not None else None
        self._correlation_field = correlation_field
        self._create = create
        self._link: BusLink | None = None
        self._observer = build_observer(metrics, tracing)
        self._snapshot: Snapshot | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        if self._store is not None:
            return
        store = self._given_store or open_store(self.url)
        await store.open(self._create)
        self._store = store
        if self._embed_worker:
            self._threads = ThreadPoolExecutor(self._sync_threads, "sagaline-step")
            rt = Runtime(
                store=store,
                codec=self.codec,
                committer=GroupCommitter(store, metrics=_metrics_of(self._observer)),
                owner=new_owner_id(),
                threads=self._threads,
                lease_seconds=self._lease_seconds,
                durable_backoff_after=self._durable_backoff_after,
                clock=self._clock,
                observer=self._observer,
            )
            self._worker = Worker(
                rt, self._concurrency, self._poll_interval, self._notify, self._queues
            )
            rt.wake = self._worker.wake
            rt.task_recorded = self._task_arrived.set
            rt.service = self.service
            await self._warn_unknown_workflows()
            await self._worker.start()
            subscribe = getattr(self._clock, "subscribe", None)
            if callable(subscribe):
                subscribe(self._worker.wake)  # a fake clock's jumps wake the worker
        if self._bus is not None:
            self._link = BusLink(
                self._bus,
                store,
                service=self.service,
                handlers=handlers_of(self.service) if self._embed_worker else [],
                start=self._start_handler,
                signal=self._signal_event,
                clock=self._clock,
                correlation_field=self._correlation_field,
                prefetch=min(self._concurrency, 256),
                unprotect=self.codec.unprotect,
            )
            if self._worker is not None:
                self._worker.rt.outbox_written = self._link.outbox_written
                self._worker.rt.watch_event = self._link.watch_event
            self._link.start()
        self._watch_state(store)

    async def aclose(self, drain_seconds: float = 0.0) -> None:
        """Close; with ``drain_seconds``, running runs first finish their current step."""
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()  # no new deliveries; the outbox keeps what is not sent
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop(drain_seconds)
        self._forget_snapshot()
        store, self._store = self._store, None
        self._creates = None
        if store is not None:
            await store.aclose()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    def _watch_state(self, store: Store) -> None:
        """Let the metrics' gauges read this engine's load and its database's counts."""
        metrics = _metrics_of(self._observer)
        if metrics is None:
            return
        worker = self._worker
        in_flight = None if worker is None else (lambda: worker.concurrency - worker.capacity)
        self._snapshot = Snapshot(
            store, asyncio.get_running_loop(), in_flight, self._concurrency if worker else 0
        )
        metrics.gauges.add(self._snapshot)

    def _forget_snapshot(self) -> None:
        snapshot, self._snapshot = self._snapshot, None
        metrics = _metrics_of(self._observer)
        if snapshot is not None and metrics is not None:
            metrics.gauges.remove(snapshot)

    def _creator(self) -> Batcher[tuple[NewRun, str | None], tuple[RunRecord, bool]]:
        if self._creates is None:
            store, lease = self.store, self._lease_seconds

            async def write(
                batch: Sequence[tuple[NewRun, str | None]],
            ) -> list[tuple[RunRecord, bool]]:
                return await store.create_runs(batch, lease)

            self._creates = Batcher(write)
        return self._creates

    @property
    def store(self) -> Store:
        if self._store is None:
            raise SagalineError(
                "the engine is not open; use `async with Engine(url) as engine:` "
                "or `await engine.open()`"
            )
        return self._store

    @property
    def tasks(self) -> TaskService:
        """What external workers ask of this engine (claim, heartbeat, complete, fail),
        wired to its worker: an answer wakes the run here at once, and a claim hears of a
        task this process records without waiting for its next poll."""
        if self._task_service is None:
            self._task_service = TaskService(
                lambda: self.store,
                self.codec,
                self._clock,  # the engine's: a task's events and wake-up on the runs' clock
                wake=lambda: self._worker.wake() if self._worker is not None else None,
                arrived=self._task_arrived,
            )
        return self._task_service

    async def _warn_unknown_workflows(self) -> None:
        known = set(workflow_names())
        for status in ACTIVE:
            for run in await self.store.list_runs(status, limit=1000):
                if run.workflow not in known:
                    log.warning(
                        "run %r (%s) is unfinished but its workflow %r is not registered in "
                        "this process; import the module that defines it to resume it here",
                        run.run_id,
                        run.status.value,
                        run.workflow,
                    )

    # -- choreography ---------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
    ) -> str:
        """Publish an event from outside any run: one outbox commit; returns its id.

        The relay sends it once the bus is reachable. ``correlation_id`` names the saga it
        belongs to (default: a new one, the message's own id).

        Raises:
            InvalidNameError: a bad topic, correlation id or key.
            PayloadError: ``payload`` cannot be encoded (nothing is published).
        """
        message = outside_message(
            self.codec, topic, payload, correlation_id, key, self.service, self._clock()
        )
        await self.store.append_outbox([message])
        if self._link is not None:
            self._link.outbox_written()
        return message.id

    async def bus_ready(self, timeout: float | None = 30.0) -> None:
        """Wait until the bus is connected and every handler of this engine subscribed
        (events published from now on reach them). For tests and startup scripts."""
        if self._link is None:
            raise SagalineError("this engine has no bus; give it one: Engine(url, bus=...)")
        await self._link.ready(timeout)

    async def outbox_size(self) -> int:
        """Events written but not yet confirmed by the broker."""
        return await self.store.outbox_size()

    async def _signal_event(self, run_id: str, topic: str, event: Event[Any]) -> bool:
        name = signal_name(topic, event.correlation_id)
        try:
            await self.signal(run_id, name, event)
        except (RunNotFoundError, InvalidOperationError):
            return False  # it ended (or is unwinding): it waits for nothing any more
        return True

    async def _start_handler(
        self, wdef: WorkflowDef[Any, Any], event: Event[Any], run_id: str
    ) -> object:
        if self._observer is None:
            return await self.start(wdef, event, run_id=run_id)
        with self._observer.remote(event.traceparent):  # the run continues the event's trace
            return await self.start(wdef, event, run_id=run_id)

    # -- starting and waiting -------------------------------------------------------------

    @overload
    async def start(
        self, wf: WorkflowDef[Any, R], *args: Any, run_id: str | None = None, **kwargs: Any
    ) -> RunHandle[R]: ...

    @overload
    async def start(
        self, wf: str, *args: Any, run_id: str | None = None, **kwargs: Any
    ) -> RunHandle[Any]: ...

    async def start(
        self,
        wf: WorkflowDef[Any, Any] | str,
        *args: Any,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> RunHandle[Any]:
        """Start a run of ``wf`` (a workflow or its name), or find the one with ``run_id``.

        Idempotent: a second start with the same ``run_id``, the same workflow and the same
        arguments returns the existing run. The same ``run_id`` with another workflow or
        other arguments raises :class:`RunConflictError`. The embedded worker begins a new
        run at once.

        Raises:
            InvalidNameError: ``run_id`` or the workflow's name is not a valid name.
            PayloadError: the arguments cannot be stored (checked before anything is written).
            RunConflictError: ``run_id`` is taken by a run started otherwise.
        """
        if isinstance(wf, str):
            wf = get_workflow(check_name("workflow name", wf))
        if not isinstance(wf, WorkflowDef):
            raise SagalineError(
                f"engine.start expects a @workflow function or its name, got {wf!r}"
            )
        wdef = wf
        if run_id is not None:
            check_name("run id", run_id)
        values = wdef.signature.bind(args, kwargs)
        data = wdef.signature.encode_args(self.codec, values)
        run_id = run_id or fresh_id()
        worker = self._worker
        runs_here = worker is not None and worker.capacity > 0 and wdef.queue in worker.queues
        owner = worker.rt.owner if worker is not None and runs_here else None
        observer = self._observer
        traceparent = None if observer is None else observer.traceparent()
        new = NewRun(run_id, wdef.name, data, wdef.queue, self._clock(), traceparent=traceparent)
        sent_at = Leases.now()
        run, created = await self._creator().submit((new, owner))
        # Even when ``created``: a store reports a run it finds claimed by this worker as
        # its own (a retry after a lost answer), and that may be another call's run.
        self._check_same_start(run, wdef, data)
        if created and observer is not None:
            observer.started(wdef.name)
        if created and worker is not None:
            if run.owner is not None:
                worker.adopt(run, fresh=True, granted_at=sent_at)
            else:
                worker.wake()
        return RunHandle(self, run_id, wdef)

    def _check_same_start(self, run: RunRecord, wdef: WorkflowDef[Any, Any], data: bytes) -> None:
        if run.workflow != wdef.name:
            raise RunConflictError(
                run.run_id, f"as a run of workflow {run.workflow!r}, not {wdef.name!r}"
            )
        if run.input == data:
            return
        # Equal arguments may still encode differently (dict order, set order): compare the
        # decoded values before calling it a conflict. Rare, so the cost does not matter.
        try:
            same = wdef.signature.decode_args(self.codec, run.input) == (
                wdef.signature.decode_args(self.codec, data)
            )
        except PayloadError:
            same = False
        if not same:
            raise RunConflictError(run.run_id, "and was started with other arguments")

    def handle(self, run_id: str) -> RunHandle[Any]:
        """A handle on an existing run, to wait for it or read its status."""
        return RunHandle(self, run_id, None)

    async def wait(self, run_id: str, timeout: float | None = None) -> RunRecord:
        """Wait until the run is settled: ended, or parked for an operator."""

        async def settle() -> RunRecord:
            delay = 0.01
            while True:
                event = self._settled.setdefault(run_id, asyncio.Event())
                if self._worker is not None and self._worker.executing(run_id):
                    await event.wait()  # executing here: no need to read until it stops
                    known = self._final.pop(run_id, None)
                    if known is not None:
                        return known  # as its final commit wrote it: no read needed
                run = await self.get_run(run_id)
                if run.status.is_settled:
                    return run
                # Runs executed here wake us at once; runs elsewhere are polled.
                await wait_event(event, delay)
                delay = min(delay * 2, 1.0)

        return await asyncio.wait_for(settle(), timeout)

    def _notify(self, run_id: str, settled: RunRecord | None = None) -> None:
        event = self._settled.pop(run_id, None)
        if event is not None:
            if settled is not None:
                self._final[run_id] = settled  # only kept for a waiter, who pops it
            event.set()

    # -- inspecting -----------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord:
        run = await self.store.load_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    async def history(self, run_id: str) -> list[EventRecord]:
        """The run's audit trail: every transition, oldest first, with timestamps."""
        await self.get_run(run_id)
        return await self.store.read_events(run_id)

    async def steps(self, run_id: str) -> list[StepRecord]:
        await self.get_run(run_id)
        return await self.store.load_steps(run_id)

    async def list_runs(self, status: RunStatus | None = None, limit: int = 100) -> list[RunRecord]:
        return await self.store.list_runs(status, limit)

    async def locks(self, key: str) -> LockInfo:
        """Who holds the semantic lock ``key`` (mode, since when, run status) and who
        waits for it, in order: a service can refuse or flag a read of an object a saga
        holds. A free key answers empty lists, never an error."""
        return await self.store.locks(check_key(key))

    async def list_locks(self, prefix: str | None = None, limit: int = 1000) -> list[LockRequest]:
        """Held and waiting lock requests of keys starting with ``prefix``, by key."""
        if prefix is not None and prefix != "":
            check_key(prefix)
        return await self.store.list_locks(prefix or None, limit)

    async def set_queue_limit(self, queue: str, limit: int | None) -> None:
        """At most ``limit`` runs of ``queue`` in flight across all workers (None: no limit)."""
        check_name("queue name", queue)
        if limit is not None and limit < 1:
            raise SagalineError(f"a queue limit must be at least 1, got {limit}")
        await self.store.set_queue_limit(queue, limit)

    async def queue_limits(self) -> dict[str, int]:
        return await self.store.queue_limits()

    async def set_queue_rate(
        self, queue: str, per_second: float | None, burst: int | None = None
    ) -> None:
        """At most ``per_second`` claims a second of ``queue`` across all workers and hosts,
        at most ``burst`` at once (default: one second's worth, at least 1); None: no rate.

        A token bucket in the database, refilled by the database's clock. Every claim
        spends a token: a run's first claim, its claim again when it wakes from a
        suspension (a sleep, a signal, a task's answer) or after a lost lease, and each
        claim of one of the queue's external tasks. It sits beside the concurrency limit
        (:meth:`set_queue_limit`); a claim takes the least that either allows.

        Raises:
            SagalineError: the rate is not positive, or the burst is below 1.
        """
        check_name("queue name", queue)
        if per_second is None:
            await self.store.set_queue_rate(queue, None)
            return
        problem = check_rate(per_second, 1 if burst is None else burst)
        if problem is not None:
            raise SagalineError(problem)
        rate = QueueRate(per_second, default_burst(per_second) if burst is None else burst)
        await self.store.set_queue_rate(queue, rate)
        if self._worker is not None:
            self._worker.wake()

    async def queue_rates(self) -> dict[str, QueueRate]:
        """The queues that have a rate limit, by name."""
        return await self.store.queue_rates()

    # -- operating ------------------------------------------------------------------------

    async def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send a signal to a run; kept until a ``wait_for_signal(name)`` consumes it.

        Raises:
            RunNotFoundError: no run has this id.
            InvalidOperationError: the run has ended, or is unwinding (it never waits for
                a signal again); the signal was not kept.
        """
        data = self.codec.encode(payload, f"signal {name!r} payload")
        unwinding = (RunStatus.COMPENSATING, RunStatus.COMPENSATION_FAILED)
        accepting = [s for s in RunStatus if not s.is_terminal and s not in unwinding]
        status = await self.store.send_signal(run_id, name, data, self._clock(), accepting)
        if status is None:
            raise RunNotFoundError(run_id)
        if status not in accepting:
            why = "already ended" if status.is_terminal else "is unwinding, now"
            raise InvalidOperationError(
                f"run {run_id!r} {why} {status.value}; the signal {name!r} was not kept"
            )
        if self._worker is not None:
            self._worker.wake()

    async def cancel(
        self, run_id: str, *, reason: str | None = None, by: str | None = None
    ) -> RunRecord:
        """Cancel a run: it stops at its next step boundary and is compensated.

        ``reason`` and ``by`` (who asked) are kept with the audit event.
        """
        run = await self._operate(
            run_id,
            lambda run, steps: _audited(
                operations.plan_cancel(run, steps, self._clock()), reason, by
            ),
        )
        if self._worker is not None:
            self._worker.request_cancel(run_id)
        return run

    async def retry(
        self, run_id: str, *, reason: str | None = None, by: str | None = None
    ) -> RunRecord:
        """Try a parked run again from where it stopped; ``reason`` and ``by`` (who asked)
        are kept with the audit event."""
        return await self._operate(
            run_id,
            lambda run, steps: _audited(
                operations.plan_retry(run, steps, self._clock()), reason, by
            ),
        )

    async def skip_compensation(self, run_id: str, *, reason: str, by: str) -> RunRecord:
        """Record the failed compensation as resolved by hand; unwinding then goes on."""
        return await self._operate(
            run_id,
            lambda run, steps: operations.plan_skip(run, steps, reason, by, self._clock()),
        )

    async def _operate(
        self, run_id: str, plan: Callable[[RunRecord, list[StepRecord]], OperatorChange]
    ) -> RunRecord:
        run = await self.get_run(run_id)
        steps = await self.store.load_steps(run_id)
        change = plan(run, steps)
        updated = await self.store.operate(change)
        if updated is None:
            now = await self.get_run(run_id)
            raise InvalidOperationError(
                f"run {run_id!r} changed to {now.status.value} meanwhile; look at it again "
                f"with `sagaline runs show {run_id}`"
            )
        if self._worker is not None:
            self._worker.wake()
        self._notify(run_id)
        return updated

    # -- scripts --------------------------------------------------------------------------

    def run_sync(
        self, wf: WorkflowDef[Any, R], *args: Any, run_id: str | None = None, **kwargs: Any
    ) -> R:
        """Start a run and wait for its result, from code without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise SagalineError(
                "run_sync cannot be called from a running event loop; use "
                "`await (await engine.start(...)).result()` instead"
            )

        async def go() -> R:
            async with self:
                handle = await self.start(wf, *args, run_id=run_id, **kwargs)
                return await handle.result()

        return asyncio.run(go())


def _metrics_of(observer: Observer | None) -> Metrics | None:
    return None if observer is None else observer.metrics


def _audited(change: OperatorChange, reason: str | None, by: str | None) -> OperatorChange:
    """``change`` with who asked for it, and why, on its audit event."""
    event = change.event.event
    if not (reason or by) or not hasattr(event, "by"):
        return change
    audited = msgspec.structs.replace(event, by=by, reason=reason)
    return msgspec.structs.replace(
        change, event=msgspec.structs.replace(change.event, event=audited)
    )
