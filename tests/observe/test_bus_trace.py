"""Across services: a handler's run continues the trace of the event that triggered it
(the envelope's ``traceparent``), so a choreographed saga is one trace."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagaline import Engine, RunStatus
from sagaline.bus import open_bus
from sagaline.bus.protocol import Message
from tests.observe import sagas  # noqa: F401  (registers the handler)

TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


async def test_a_handlers_run_continues_the_events_trace(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus_url = f"sqlite:///{tmp_path / 'bus.db'}"
    async with Engine(
        f"sqlite:///{tmp_path / 'svc.db'}",
        bus=bus_url,
        service="obs-traced",
        poll_interval=0.05,
        metrics=False,
        tracing=provider,
    ) as engine:
        await engine.bus_ready()
        producer = open_bus(bus_url)
        await producer.open()
        try:
            headers = {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}
            body = json.dumps({"order": "t-1"}).encode()
            await producer.publish([Message("traced-1", "ObsTraced", body, headers)])
        finally:
            await producer.aclose()
        run = None
        for _ in range(500):
            runs = [r for r in await engine.list_runs() if r.workflow == "obs.traced"]
            if runs and runs[0].status.is_settled:
                run = runs[0]
                break
            await asyncio.sleep(0.02)
        assert run is not None and run.status is RunStatus.COMPLETED
        assert run.traceparent == headers["traceparent"]
    provider.shutdown()
    spans = [s for s in exporter.get_finished_spans() if s.attributes]
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    (run_span,) = [s for s in spans if s.name == "run obs.traced"]
    assert run_span.parent is not None and f"{run_span.parent.span_id:016x}" == SPAN_ID
    (step_span,) = [s for s in spans if s.name == "step obs.create"]
    assert step_span.parent is not None
    assert step_span.parent.span_id == run_span.context.span_id
