"""``/metrics``: the process's Prometheus registry, for a scraper holding a token (a viewer's
is enough; metrics hold no payloads). What is counted is the engine's business."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response


async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), headers={"content-type": CONTENT_TYPE_LATEST})
