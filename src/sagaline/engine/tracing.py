"""OpenTelemetry traces: one trace per run, across replays, workers and services.

Only the API is a dependency (``pip install sagaline[otel]``); which SDK and exporter record
the spans is the application's choice. Without the API :func:`available` is False and no
span is ever made.

A run's trace context is decided once, when it is started, and stored on the run: the
``traceparent`` of the span active around ``engine.start`` (so the run continues its
caller's trace — an HTTP request's, or, for a handler's run, the ``traceparent`` of the
event that triggered it). A run started outside any span stores none; its context is then
derived from its run id (:func:`derived_parent`), the same in every process. Each time a
worker executes the run, its "run" span is a child of that context, so every attempt —
before a crash, after it, on another host — lands in the same trace; step and compensation
attempt spans are children of their run span.

What a run sends carries the span current when it is sent: a child run stores the
parent's span as its ``traceparent``, and an event published by a step, a workflow, a
handler's ``on_failure`` or ``engine.publish`` carries the publisher's span, so the runs
it starts elsewhere join the same trace (:func:`current_traceparent`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sagaline.model.errors import SagalineError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - the extra is installed in development
    trace = None  # type: ignore[assignment]

TRACER = "sagaline"
_SILENT: tuple[type, ...] = (
    () if trace is None else (trace.NoOpTracerProvider, trace.ProxyTracerProvider)
)


def available() -> bool:
    """Whether opentelemetry-api is installed (``sagaline[otel]``)."""
    return trace is not None


def require() -> None:
    if trace is None:
        raise SagalineError(
            "tracing needs opentelemetry-api; install it with `pip install 'sagaline[otel]'`"
        )


def derived_parent(run_id: str) -> tuple[int, int]:
    """(trace id, span id) of the run's trace when nothing was stored for it: a pure
    function of the run id, so every worker that ever executes the run agrees."""
    digest = hashlib.sha256(f"sagaline-trace\0{run_id}".encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1  # all-zero ids are invalid
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span active in the caller, if any (None without the API).

    Reading the context records nothing, so it needs no :class:`Tracing`: ``engine.publish``
    forwards its caller's span whatever the engine's own tracing setting, as an event's
    ``traceparent`` is forwarded, since propagating a context is the caller's choice.
    """
    if trace is None:
        return None
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return format_traceparent(sc.trace_id, sc.span_id, int(sc.trace_flags))


class Tracing:
    """Starts sagaline's spans on ``provider`` (default: the global tracer provider,
    looked up at each span so an SDK configured after the engine opened is used)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        require()
        self._propagator = TraceContextTextMapPropagator()
        self._provider = provider
        self.tracer: Tracer = trace.get_tracer(TRACER, tracer_provider=provider)

    def current_traceparent(self) -> str | None:
        """The ``traceparent`` of the span active in the caller, if any."""
        return current_traceparent()

    def silent(self) -> bool:
        """Whether no SDK would record a span now: the API's no-op provider, or its proxy
        while no SDK provider is set. A run then starts no span at all (the API's no-op
        spans still cost a context per run and a lookup per step), and resumes recording
        at its next execution once the application installs an SDK.
        """
        provider = self._provider or trace.get_tracer_provider()
        return isinstance(provider, _SILENT)

    def run_parent(self, run_id: str, traceparent: str | None) -> Context:
        """The context a run's span starts in: the stored ``traceparent``, else derived."""
        if traceparent:
            ctx = self._propagator.extract({"traceparent": traceparent})
            if trace.get_current_span(ctx).get_span_context().is_valid:
                return ctx
        trace_id, span_id = derived_parent(run_id)
        flags = trace.TraceFlags.SAMPLED if self._root_sampled(trace_id) else 0
        parent = trace.SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags)
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(parent))

    def _root_sampled(self, trace_id: int) -> bool:
        """Whether the SDK's sampler would record a trace that starts with ``trace_id``.

        The derived parent stands for the root the run's trace never had, so the root
        sampler decides (``ParentBased(root=TraceIdRatioBased(0.1))`` keeps one run in ten,
        the same runs in every process, since the decision is the trace id's); otherwise a
        sampled parent would make every sampler record everything. No SDK sampler: sampled.
        """
        provider = self._provider or trace.get_tracer_provider()
        sampler = getattr(provider, "sampler", None)
        if sampler is None:
            return True
        try:
            decision = sampler.should_sample(None, trace_id, "run").decision
        except Exception:  # a user's sampler that fails: record rather than lose the trace
            return True
        return bool(decision.is_sampled())

    @contextmanager
    def remote(self, traceparent: str | None) -> Iterator[None]:
        """Make ``traceparent`` (an incoming event's) the active context, if it is valid."""
        if not traceparent:
            yield
            return
        ctx = self._propagator.extract({"traceparent": traceparent})
        if not trace.get_current_span(ctx).get_span_context().is_valid:
            yield
            return
        token = otel_context.attach(ctx)
        try:
            yield
        finally:
            otel_context.detach(token)

    def start(self, name: str, attributes: dict[str, Any], parent: Context | None = None) -> Span:
        return self.tracer.start_span(name, context=parent, attributes=attributes)

    @staticmethod
    def sampled(parent: Context) -> bool:
        """Whether the trace a run's span would start in is sampled (its parent's flag:
        the stored ``traceparent``'s, or the root sampler's decision for a derived one)."""
        return bool(trace.get_current_span(parent).get_span_context().trace_flags.sampled)

    @staticmethod
    def enter(parent: Context) -> object:
        """Make ``parent`` the current context (for the caller's task), with no span of
        this run's own; undo with :meth:`restore`."""
        return otel_context.attach(parent)

    @staticmethod
    def activate(span: Span) -> object:
        """Make ``span`` the current one (for the caller's task); undo with :meth:`restore`."""
        return otel_context.attach(trace.set_span_in_context(span))

    @staticmethod
    def restore(token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    @staticmethod
    def failed(span: Span, error_type: str, message: str) -> None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{error_type}: {message}"[:500]))
