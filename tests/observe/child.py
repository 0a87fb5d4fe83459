"""A worker process for the trace-across-a-kill test; the test kills it and starts another.

    python -m tests.observe.child DB_URL SPANS [--start RUN_ID ORDER] [--kill-commit N]

Every span it ends is appended to SPANS (one JSON object a line) by a
``SimpleSpanProcessor``, which exports as each span ends: what a SIGKILL cuts off is only
the spans still open, as with any real exporter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from sagaline import Engine
from sagaline.store import open_store
from sagaline.testing import CrashingStore
from tests.observe.sagas import order_saga


class JsonLinesExporter(SpanExporter):
    """Each span as one line of JSON, written and closed at once (nothing buffered)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a", encoding="utf-8") as f:
            for span in spans:
                f.write(json.dumps(describe(span)) + "\n")
        return SpanExportResult.SUCCESS


def describe(span: ReadableSpan) -> dict[str, object]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "attributes": dict(span.attributes or {}),
        "pid": os.getpid(),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("spans", type=Path)
    parser.add_argument("--start", nargs=2, metavar=("RUN_ID", "ORDER"))
    parser.add_argument("--kill-commit", type=int, default=0)
    args = parser.parse_args()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(args.spans)))
    store = CrashingStore(open_store(args.db), args.kill_commit).as_store()
    async with Engine(store=store, poll_interval=0.05, metrics=False, tracing=provider) as engine:
        if args.start:
            run_id, order = args.start
            with provider.get_tracer("the caller").start_as_current_span("start order"):
                await engine.start(order_saga, order, run_id=run_id)
        while True:
            runs = await engine.list_runs()
            if runs and all(run.status.is_settled for run in runs):
                break
            await asyncio.sleep(0.05)
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
