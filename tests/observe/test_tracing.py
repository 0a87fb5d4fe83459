"""Spans with the SDK's in-memory exporter: one trace per run, a span per execution of the
run and per attempt of each step and compensation under it, continued across a suspension
and from the caller's span when there is one."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from sagaline import RunStatus
from sagaline.engine.tracing import derived_parent, format_traceparent
from tests.conftest import MakeEngine
from tests.observe.sagas import order_saga


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_run(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    runs: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in exporter.get_finished_spans():
        run_id = (span.attributes or {}).get("sagaline.run_id")
        if run_id is not None:  # not the caller's own span
            runs[str(run_id)].append(span)
    return runs


def attr(span: ReadableSpan, name: str) -> object:
    return (span.attributes or {}).get(name)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_each_run_is_one_trace_of_its_execution_and_attempts(
    make_engine: MakeEngine, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tag = uuid.uuid4().hex[:8]
    orders = {"ok": f"ok-{tag}", "fail": f"fail-{tag}", "flaky": f"flaky-{tag}"}
    async with make_engine(metrics=False, tracing=provider) as engine:
        handles = {k: await engine.start(order_saga, v, run_id=v) for k, v in orders.items()}
        for handle in handles.values():
            with contextlib.suppress(Exception):
                await handle.result()
    runs = by_run(exporter)
    assert set(runs) == set(orders.values())
    traces = {run_id: {s.context.trace_id for s in group} for run_id, group in runs.items()}
    assert all(len(ids) == 1 for ids in traces.values())  # one trace per run...
    assert len({next(iter(ids)) for ids in traces.values()}) == 3  # ...each its own

    for run_id, group in runs.items():
        (run_span,) = [s for s in group if s.name == "run obs.order"]
        # Started outside any span: the trace is derived from the run id, in every process.
        trace_id, root = derived_parent(run_id)
        assert run_span.context.trace_id == trace_id and parent_id(run_span) == root
        assert run_span.kind is SpanKind.INTERNAL
        for span in group:
            if span is not run_span:
                assert parent_id(span) == run_span.context.span_id
                assert attr(span, "sagaline.run_id") == run_id

    def attempts(run_id: str) -> list[tuple[str, object, object]]:
        steps = [s for s in runs[run_id] if not s.name.startswith("run ")]
        steps.sort(key=lambda s: s.start_time or 0)
        return [(s.name, attr(s, "sagaline.attempt"), attr(s, "sagaline.outcome")) for s in steps]

    assert attempts(orders["ok"]) == [
        ("step obs.create", 1, "succeeded"),
        ("step obs.reserve", 1, "succeeded"),
        ("step obs.charge", 1, "succeeded"),
    ]
    assert attempts(orders["flaky"]) == [
        ("step obs.create", 1, "succeeded"),
        ("step obs.reserve", 1, "failed"),
        ("step obs.reserve", 2, "succeeded"),
        ("step obs.charge", 1, "succeeded"),
    ]
    assert attempts(orders["fail"]) == [
        ("step obs.create", 1, "succeeded"),
        ("step obs.reserve", 1, "succeeded"),
        ("step obs.charge", 1, "failed"),
        ("compensate tests.observe.sagas.release", 1, "succeeded"),
        ("compensate tests.observe.sagas.cancel", 1, "succeeded"),
    ]
    outcome = {r: attr(next(s for s in g if s.name.startswith("run ")), "sagaline.outcome")
               for r, g in runs.items()}  # fmt: skip
    assert outcome == {orders["ok"]: "COMPLETED", orders["flaky"]: "COMPLETED",
                       orders["fail"]: "COMPENSATED"}  # fmt: skip

    failed = [s for s in runs[orders["fail"]] if attr(s, "sagaline.outcome") == "failed"]
    assert failed[0].status.status_code is StatusCode.ERROR
    assert attr(failed[0], "sagaline.error.type") == "tests.observe.sagas.Declined"
    reserve = [s for s in runs[orders["ok"]] if s.name == "step obs.reserve"]
    assert [e.name for e in reserve[0].events] == ["reserving"]  # the thread saw its span


async def test_a_run_started_inside_a_span_continues_that_trace(
    make_engine: MakeEngine, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("the caller")
    async with make_engine(metrics=False, tracing=provider) as engine:
        with tracer.start_as_current_span("POST /orders") as request:
            handle = await engine.start(order_saga, f"ok-{uuid.uuid4().hex[:8]}")
        await handle.result()
        stored = (await engine.get_run(handle.run_id)).traceparent
    ctx = request.get_span_context()
    assert stored == format_traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))
    run_spans = by_run(exporter)[handle.run_id]
    assert {s.context.trace_id for s in run_spans} == {ctx.trace_id}
    (run_span,) = [s for s in run_spans if s.name.startswith("run ")]
    assert parent_id(run_span) == ctx.span_id


async def test_a_suspended_run_resumes_in_the_same_trace(
    make_engine: MakeEngine, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    async with make_engine(metrics=False, tracing=provider) as engine:
        handle = await engine.start(order_saga, f"wait-{uuid.uuid4().hex[:8]}")
        while await handle.status() is not RunStatus.SUSPENDED:
            await asyncio.sleep(0.02)
        await engine.signal(handle.run_id, "go")
        await handle.result()
    group = by_run(exporter)[handle.run_id]
    executions = sorted((s for s in group if s.name.startswith("run ")),
                        key=lambda s: s.start_time or 0)  # fmt: skip
    assert [attr(s, "sagaline.outcome") for s in executions] == ["SUSPENDED", "COMPLETED"]
    assert len({s.context.trace_id for s in group}) == 1
    assert len({parent_id(s) for s in executions}) == 1  # both children of the run's root
    (charge,) = [s for s in group if s.name == "step obs.charge"]
    assert parent_id(charge) == executions[1].context.span_id  # ran in the second


async def test_the_sdks_root_sampler_decides_for_runs_started_outside_a_span(
    make_engine: MakeEngine,
) -> None:
    sampler = ParentBased(TraceIdRatioBased(0.5))
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run_ids = [f"ok-sampled-{i}" for i in range(16)]  # fixed ids: a fixed decision
    async with make_engine(metrics=False, tracing=provider) as engine:
        for run_id in run_ids:
            await (await engine.start(order_saga, run_id, run_id=run_id)).result()
    provider.shutdown()
    kept = {
        run_id
        for run_id in run_ids
        if sampler.should_sample(None, derived_parent(run_id)[0], "run").decision
        is Decision.RECORD_AND_SAMPLE
    }
    assert 0 < len(kept) < len(run_ids)  # with these ids, 0.5 keeps some and drops some
    runs = by_run(exporter)
    assert set(runs) == kept  # the same runs in every process: the decision is the trace id's
    assert all(len(runs[run_id]) == 4 for run_id in kept)  # a run span and its 3 steps
