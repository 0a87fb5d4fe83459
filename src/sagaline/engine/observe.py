"""The engine's observation hooks: metrics and spans at a run's execution and each attempt.

The engine holds an :class:`Observer` only when metrics or tracing are on
(``Runtime.observer`` is None otherwise), so with both off a step costs one ``is None``
test and allocates nothing. With either on, each step call gets a :class:`Probe` that
wraps every attempt: a span (a child of the run's span, current while the user's function
runs so its own spans nest under it, in threads too) and the attempt's counters and
duration.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from sagaline.engine.attempts import StepTimeout, error_info
from sagaline.engine.metrics import Metrics, metrics_for
from sagaline.engine.metrics import available as metrics_available
from sagaline.engine.tracing import Tracing
from sagaline.engine.tracing import available as tracing_available
from sagaline.model.status import RunStatus

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from sagaline.engine.context import RunContext

T = TypeVar("T")

SUCCEEDED, FAILED, TIMED_OUT, INTERRUPTED = "succeeded", "failed", "timed_out", "interrupted"
"""A step attempt's ``sagaline.outcome``; interrupted: shutdown, a cancel, a lost lease."""
_FINE = (RunStatus.COMPLETED, RunStatus.CANCELLED)
"""Settled statuses whose run span is not an error (an operator's cancel is no failure)."""


class Observer:
    """What the engine reports to: prometheus metrics, OpenTelemetry spans, or both."""

    def __init__(self, metrics: Metrics | None, tracing: Tracing | None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    def traceparent(self) -> str | None:
        """What a run started now stores: the caller's active span, if tracing is on."""
        return None if self.tracing is None else self.tracing.current_traceparent()

    def started(self, workflow: str) -> None:
        if self.metrics is not None:
            self.metrics.started(workflow)

    @contextmanager
    def remote(self, traceparent: str | None) -> Iterator[None]:
        """Run the block in an incoming event's trace (a handler's run continues it)."""
        if self.tracing is None:
            yield
        else:
            with self.tracing.remote(traceparent):
                yield

    @contextmanager
    def run(self, ctx: RunContext) -> Iterator[None]:
        """Around one execution of a run by this worker: its span, and on settling the
        finished counter and duration."""
        run, tracing = ctx.run, self.tracing
        span = token = None
        if tracing is not None and tracing.silent():
            tracing = None
        if tracing is not None:
            parent = tracing.run_parent(run.run_id, run.traceparent)
            if tracing.sampled(parent):
                attributes = {
                    "sagaline.run_id": run.run_id,
                    "sagaline.workflow": run.workflow,
                    "sagaline.attempt": max(run.lease_epoch, 1),  # one claim per execution
                    "sagaline.status": run.status.value,
                }
                span = tracing.start(f"run {run.workflow}", attributes, parent)
                token = tracing.activate(span)
                ctx.traced = span.is_recording()
            else:
                # Sampled out: the SDK's samplers drop a span whose parent is not sampled
                # (ParentBased, by trace id), so none is asked for; the step's own code
                # still runs in the run's trace context, unsampled like the run.
                token = tracing.enter(parent)
        outcome = INTERRUPTED
        try:
            yield
            outcome = _run_outcome(ctx)
        finally:
            if token is not None and tracing is not None:
                tracing.restore(token)
            if span is not None and tracing is not None:
                span.set_attribute("sagaline.outcome", outcome)
                settled = ctx.settled
                if settled is not None and settled.error and settled.status not in _FINE:
                    error = settled.error
                    tracing.failed(span, str(error.get("type")), str(error.get("message")))
                span.end()
            if self.metrics is not None and ctx.settled is not None:
                seconds = ctx.rt.clock() - run.created_at
                self.metrics.finished(run.workflow, ctx.settled.status.value, seconds)

    def probe(self, ctx: RunContext, name: str, kind: str) -> Probe:
        return Probe(self, ctx.run.run_id, name, kind, ctx.traced)


def outgoing_traceparent(observer: Observer | None, inherited: str | None) -> str | None:
    """The ``traceparent`` of what a run sends now (an event, a child run): the current
    span (a step's, else the run's) when tracing is on, so whatever it starts elsewhere
    nests under the work that sent it; else ``inherited`` (the trigger's), which keeps the
    saga in one trace even where this service records no spans."""
    current = None if observer is None else observer.traceparent()
    return current or inherited


def _run_outcome(ctx: RunContext) -> str:
    if ctx.settled is not None:
        return ctx.settled.status.value
    if ctx.waits:
        return "SUSPENDED"
    return "released"  # drained, lost its lease, or stopped on the database


class Probe:
    """One step's (or compensation's) attempts: a span and the metrics for each."""

    __slots__ = ("_children", "_kind", "_name", "_run_id", "_tracing")

    def __init__(self, observer: Observer, run_id: str, name: str, kind: str, traced: bool) -> None:
        # The run's span is not recorded (sampled out, no SDK): its steps' would not be
        # either, so skip them; what the step's code traces still finds the run's context.
        self._tracing = observer.tracing if traced else None
        m = observer.metrics
        self._children = None if m is None else m.step(name, kind)
        self._run_id, self._name, self._kind = run_id, name, kind

    async def attempt(self, number: int, call: Awaitable[T]) -> T:
        """Await ``call`` (one attempt) inside its span, counting and timing it."""
        tracing, span, token = self._tracing, None, None
        if tracing is not None:
            verb = "compensate" if self._kind == "compensation" else "step"
            # Few attributes: each costs the SDK about a tenth of a span. The workflow is on
            # the run's span, the kind in the name.
            span = tracing.start(
                f"{verb} {self._name}",
                {"sagaline.run_id": self._run_id, "sagaline.step": self._name,
                 "sagaline.attempt": number},
            )  # fmt: skip
            token = tracing.activate(span)
        began = time.perf_counter()
        outcome, error = INTERRUPTED, None
        try:
            value = await call
            outcome = SUCCEEDED
            return value
        except Exception as exc:
            outcome = TIMED_OUT if issubclass(type(exc), StepTimeout) else FAILED
            error = exc
            raise
        finally:
            self._done(began, outcome, error, span, token)

    def _done(
        self, began: float, outcome: str, error: BaseException | None, span: Any, token: object
    ) -> None:
        if self._children is not None:
            attempts, failures, duration = self._children
            attempts.inc()
            duration.observe(time.perf_counter() - began)
            if outcome != SUCCEEDED and outcome != INTERRUPTED:
                failures.inc()
        if span is not None and self._tracing is not None:
            self._tracing.restore(token)
            span.set_attribute("sagaline.outcome", outcome)
            if error is not None:
                info = error_info(error)
                span.set_attribute("sagaline.error.type", info["type"])
                self._tracing.failed(span, info["type"], info["message"])
            span.end()


MetricsOption: TypeAlias = "bool | CollectorRegistry | None"
"""``Engine(metrics=...)``: None (on when prometheus-client is installed), True, False, or
a registry to report into instead of the global one."""
TracingOption: TypeAlias = "bool | TracerProvider | None"
"""``Engine(tracing=...)``: None (on when opentelemetry-api is installed), True, False, or a
tracer provider to use instead of the global one."""


def build_observer(metrics: MetricsOption, tracing: TracingOption) -> Observer | None:
    """The engine's observer, or None when both are off.

    Raises:
        SagalineError: one was asked for explicitly and its package is not installed.
    """
    chosen_metrics: Metrics | None = None
    if metrics is None:
        metrics = metrics_available()
    if metrics is not False:
        chosen_metrics = metrics_for(None if metrics is True else metrics)
    chosen_tracing: Tracing | None = None
    if tracing is None:
        tracing = tracing_available()
    if tracing is not False:
        chosen_tracing = Tracing(None if tracing is True else tracing)
    if chosen_metrics is None and chosen_tracing is None:
        return None
    return Observer(chosen_metrics, chosen_tracing)
