"""``/metrics``: the process's Prometheus registry, for a scraper holding a token (a viewer's
is enough; metrics hold no payloads). What is counted is the engine's business."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from sagaline.engine.metrics import SagaCounts, metrics_for


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), headers={"content-type": CONTENT_TYPE_LATEST})


def watch_sagas(
    url: str, count: Callable[[], Awaitable[dict[str, int] | None]]
) -> Callable[[], None]:
    """Show the sagas ``count`` reads (the server's tracker's counts, by status) in
    ``/metrics`` as ``sagaline_sagas`` and ``sagaline_sagas_stalled``, counted on this loop
    when scraped (see :mod:`sagaline.engine.metrics`). Returns the call that stops it."""
    gauges = metrics_for().gauges
    counts = SagaCounts(url, asyncio.get_running_loop(), count)
    gauges.add(counts)
    return lambda: gauges.remove(counts)
