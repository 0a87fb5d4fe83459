"""What a run sends carries its current span: a child run and the handler runs that a
published event starts elsewhere land in the sender's trace, under the span that sent them,
so a saga of children and services is one trace."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sagaline
from sagaline import Engine, Event, RunStatus, start_child, step, workflow
from sagaline.model.records import RunRecord
from tests.conftest import MakeEngine
from tests.observe.sagas import FAST


@step(name="obs.prop.pack", retry=FAST)
async def pack(order: str) -> str:
    return f"packed-{order}"


@workflow(name="obs.prop.child")
async def packing(order: str) -> str:
    return await pack(order)


@workflow(name="obs.prop.parent")
async def fulfil(order: str) -> str:
    child = await start_child(packing, order)
    return await child.result()


@step(name="obs.prop.ship", retry=FAST)
async def ship(order: str) -> str:
    await sagaline.publish("ObsPropShipped", {"order": order})
    return f"shipped-{order}"


@workflow(name="obs.prop.sender")
async def sender(order: str) -> str:
    return await ship(order)


@sagaline.on("ObsPropShipped", service="obs-prop-b", name="obs.prop.receiver")
async def receiver(event: Event[dict[str, Any]]) -> None:
    await pack(str(event.data.get("order", "")))


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def settled(
    engine: Engine, matches: Callable[[RunRecord], bool], count: int = 1
) -> list[RunRecord]:
    """The runs ``matches`` picks, once ``count`` of them have settled."""
    for _ in range(1000):
        runs = [r for r in await engine.list_runs() if matches(r)]
        if len(runs) >= count and all(r.status.is_settled for r in runs):
            return runs
        await asyncio.sleep(0.02)
    raise AssertionError(f"runs not settled: {[(r.run_id, r.status) for r in runs]}")


async def test_a_child_runs_in_its_parents_trace_under_the_parents_run_span(
    make_engine: MakeEngine, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    order = f"child-{uuid.uuid4().hex[:8]}"
    async with make_engine(metrics=False, tracing=provider) as engine:
        handle = await engine.start(fulfil, order, run_id=order)
        assert await handle.result() == f"packed-{order}"
        (child,) = await settled(engine, lambda r: r.parent_run_id == order)
    assert child.status is RunStatus.COMPLETED
    parent_runs = [s for s in named(exporter, "run obs.prop.parent")]
    (child_run,) = named(exporter, "run obs.prop.child")
    (pack_span,) = named(exporter, "step obs.prop.pack")
    trace_ids = {s.context.trace_id for s in [*parent_runs, child_run, pack_span]}
    assert len(trace_ids) == 1  # the parent's executions, the child and its step: one trace
    # The child was started by one of the parent's executions (the parent suspends while
    # it waits for the child, so it has more than one): its run span is that one's child.
    assert parent_id(child_run) in {s.context.span_id for s in parent_runs}
    assert child.traceparent is not None
    assert child.traceparent.split("-")[2] == f"{parent_id(child_run):016x}"
    assert parent_id(pack_span) == child_run.context.span_id


async def test_an_event_published_by_a_step_starts_runs_in_the_publishers_trace(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    bus = f"sqlite:///{tmp_path / 'bus.db'}"
    order = f"svc-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {"bus": bus, "poll_interval": 0.05, "metrics": False}
    async with (
        Engine(f"sqlite:///{tmp_path / 'a.db'}", service="obs-prop-a", tracing=provider,
               **options) as a,
        Engine(f"sqlite:///{tmp_path / 'b.db'}", service="obs-prop-b", tracing=provider,
               **options) as b,
    ):  # fmt: skip
        await a.bus_ready()
        await b.bus_ready()
        assert await (await a.start(sender, order, run_id=order)).result() == f"shipped-{order}"
        (received,) = await settled(b, lambda r: r.workflow == "obs.prop.receiver")
    assert received.status is RunStatus.COMPLETED
    (ship_span,) = named(exporter, "step obs.prop.ship")
    (sender_run,) = named(exporter, "run obs.prop.sender")
    (receiver_run,) = named(exporter, "run obs.prop.receiver")
    (pack_span,) = named(exporter, "step obs.prop.pack")
    assert {s.context.trace_id for s in [sender_run, ship_span, receiver_run, pack_span]} == {
        sender_run.context.trace_id
    }
    assert parent_id(receiver_run) == ship_span.context.span_id  # under the publishing step
    assert parent_id(pack_span) == receiver_run.context.span_id


async def test_engine_publish_carries_the_callers_span_to_the_runs_it_starts(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    bus = f"sqlite:///{tmp_path / 'bus.db'}"
    options: dict[str, Any] = {"bus": bus, "poll_interval": 0.05, "metrics": False}
    async with (
        Engine(f"sqlite:///{tmp_path / 'a.db'}", service="obs-prop-a", tracing=provider,
               **options) as a,
        Engine(f"sqlite:///{tmp_path / 'b.db'}", service="obs-prop-b", tracing=provider,
               **options) as b,
    ):  # fmt: skip
        await b.bus_ready()
        with provider.get_tracer("caller").start_as_current_span("http request") as request:
            await a.publish("ObsPropShipped", {"order": "outside"})
        (received,) = await settled(b, lambda r: r.workflow == "obs.prop.receiver")
    assert received.status is RunStatus.COMPLETED
    (receiver_run,) = named(exporter, "run obs.prop.receiver")
    assert receiver_run.context.trace_id == request.get_span_context().trace_id
    assert parent_id(receiver_run) == request.get_span_context().span_id
