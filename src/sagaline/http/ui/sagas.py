"""The UI's pages of choreographed sagas: the list (by status), one saga's timeline and
what it waits for, and the stalled ones on the landing page.

A surface: the tracker (:class:`sagaline.engine.tracker.Tracker`, reading the server's own
database) decides every status; these pages only render its views. A database no tracker
has recorded into has no sagas, which the pages say, rather than an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from sagaline.engine.tracker import Tracker
from sagaline.http.ui.render import page
from sagaline.model.choreography import SagaNotFoundError, SagaStatus, SagaView
from sagaline.model.errors import SagalineError

log = logging.getLogger("sagaline.http")
PAGE_SIZE = 50
RETRY_SECONDS = 10.0
"""How long a database without a tracker's tables is taken at its word before asking
again (a tracker may start recording into it at any time)."""


def saga_url(correlation_id: str) -> str:
    return f"/sagas/{quote(correlation_id, safe='')}"


def saga_summary(view: SagaView) -> dict[str, Any]:
    """What a list shows of a saga; user text stays text (the templates escape it)."""
    return {
        "correlation_id": view.correlation_id,
        "url": saga_url(view.correlation_id),
        "name": view.name or "",
        "status": view.status.value,
        "started_at": view.started_at.isoformat(),
        "updated_at": view.updated_at.isoformat(),
        "events": len(view.timeline),
        "waiting_for": [str(w) for w in view.waiting_for],
    }


class Sagas:
    """The saga pages, over a reading tracker opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._tracker: Tracker | None = None
        self._missing_until = 0.0
        self._lock = asyncio.Lock()

    async def tracker(self) -> Tracker | None:
        """The tracker reading this database, or None while no tracker has written to it."""
        if self._tracker is not None:
            return self._tracker
        if time.monotonic() < self._missing_until:
            return None
        async with self._lock:
            if self._tracker is None and time.monotonic() >= self._missing_until:
                tracker = Tracker(db=self.url)
                try:
                    await tracker.open()
                except SagalineError as exc:
                    log.debug("no choreographed sagas in %s: %s", self.url, exc)
                    self._missing_until = time.monotonic() + RETRY_SECONDS
                    await _close_quietly(tracker)
                    return None
                self._tracker = tracker
        return self._tracker

    async def aclose(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            await _close_quietly(tracker)

    async def stalled(self) -> list[dict[str, Any]] | None:
        """The stalled sagas for the landing page; None when there is no tracker data."""
        tracker = await self.tracker()
        if tracker is None:
            return None
        return [saga_summary(v) for v in await tracker.sagas(SagaStatus.STALLED, PAGE_SIZE)]

    async def list(self, request: Request) -> Response:
        wanted = request.query_params.get("status", "").strip().upper()
        statuses = [s.value for s in SagaStatus]
        context: dict[str, Any] = {
            "sagas": [],
            "statuses": statuses,
            "chosen": wanted,
            "recorded": True,
            "error": None,
        }
        if wanted and wanted not in statuses:
            context["error"] = f"unknown saga status {wanted!r}; use one of {', '.join(statuses)}"
            return page(request, "sagas.html", 422, **context)
        tracker = await self.tracker()
        if tracker is None:
            context["recorded"] = False
            return page(request, "sagas.html", **context)
        views = await tracker.sagas(wanted or None, PAGE_SIZE)
        context["sagas"] = [saga_summary(v) for v in views]
        return page(request, "sagas.html", **context)

    async def show(self, request: Request) -> Response:
        correlation_id: str = request.path_params["correlation_id"]
        tracker = await self.tracker()
        if tracker is None:
            return page(request, "saga_missing.html", 404, correlation_id=correlation_id)
        try:
            view = await tracker.saga(correlation_id)
        except SagaNotFoundError:
            return page(request, "saga_missing.html", 404, correlation_id=correlation_id)
        timeline = [
            {
                "id": e.id,
                "type": e.type,
                "source": e.source or "",
                "causation_id": e.causation_id or "",
                "time": e.time.isoformat(),
            }
            for e in view.timeline
        ]
        return page(request, "saga.html", saga=saga_summary(view), timeline=timeline)


async def _close_quietly(tracker: Tracker) -> None:
    try:
        await tracker.aclose()
    except Exception as exc:  # closing what never fully opened
        log.debug("closing the tracker: %s", exc)
