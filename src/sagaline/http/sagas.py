"""``/api/v1/sagas``: the choreographed sagas the tracker recorded, with counts by status,
and one saga's participants, timeline and what it waits for.

A surface: :class:`~sagaline.engine.tracker.Tracker` decides every status, orders every
timeline and says what a saga waits for; this renders the same views as the UI's saga
pages and ``sagaline sagas``, from the same reading tracker as the UI. Any token may read
them, with payload access or not: the tracker keeps each event's envelope (id, type,
source, cause, time) and never its data, so a saga holds no payload whose shape to show.
A database no tracker recorded into has no sagas (``recorded: false``), not an error.

The list pages as ``/api/v1/runs`` does: ``next_cursor`` encodes the sort key of the page's
last saga, ``(started_at, correlation_id)``, and the next page starts strictly after it.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sagaline.engine.tracker import Tracker
from sagaline.http.problems import Problem, list_limit
from sagaline.http.spec import ok, query
from sagaline.http.views import when
from sagaline.model.choreography import SagaNotFoundError, SagaStatus, SagaView, lanes
from sagaline.store.tracker import Keyset

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
TrackerSource = Callable[[], Awaitable[Tracker | None]]
"""The server's reading tracker, or None while no tracker has recorded into its database."""


def _iso(moment: datetime) -> str | None:
    return when(moment.timestamp())


def saga_summary(view: SagaView) -> dict[str, Any]:
    return {
        "correlation_id": view.correlation_id,
        "name": view.name,
        "status": view.status.value,
        "started_at": _iso(view.started_at),
        "updated_at": _iso(view.updated_at),
        "events": len(view.timeline),
        "waiting_for": [
            {"events": list(w.events), "service": w.service or None} for w in view.waiting_for
        ],
    }


def saga_detail(view: SagaView) -> dict[str, Any]:
    return {
        **saga_summary(view),
        "participants": lanes(view.timeline),
        "timeline": [
            {
                "id": e.id,
                "type": e.type,
                "source": e.source,
                "causation_id": e.causation_id,
                "time": _iso(e.time),
            }
            for e in view.timeline
        ],
    }


def encode_cursor(key: Keyset) -> str:
    raw = msgspec.json.encode(list(key))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Keyset:
    """The keyset a ``next_cursor`` encodes.

    Raises:
        Problem: 422 ``invalid_cursor``, not a cursor this API returned.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, correlation_id = msgspec.json.decode(raw, type=tuple[float, str])
        correlation_id.encode()  # a lone surrogate: no database could compare it
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise _bad_cursor() from None
    if not math.isfinite(at) or "\x00" in correlation_id:  # no saga has either
        raise _bad_cursor()
    return at, correlation_id


def _bad_cursor() -> Problem:
    return Problem(422, "invalid_cursor", "cursor is not one this API returned")


@dataclass(frozen=True)
class SagaListQuery:
    status: SagaStatus | None
    limit: int
    before: Keyset | None


def saga_query(params: QueryParams) -> SagaListQuery:
    """The list's ``status`` (any case, as ``sagaline sagas list --status``), ``limit`` and
    ``cursor``.

    Raises:
        Problem: 422, a parameter is not valid.
    """
    text = (params.get("status") or "").strip().upper()
    try:
        status = SagaStatus(text) if text else None
    except ValueError:
        names = ", ".join(s.value for s in SagaStatus)
        detail = f"unknown saga status {text!r}; use one of {names}"
        raise Problem(422, "invalid_request", detail) from None
    limit = list_limit(params, DEFAULT_LIMIT, MAX_LIMIT)
    cursor = params.get("cursor")
    return SagaListQuery(status, limit, None if cursor is None else decode_cursor(cursor))


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), 200, None, "application/json")


class SagaRoutes:
    """The handlers, over the server's reading tracker (shared with the UI's saga pages)."""

    def __init__(self, tracker: TrackerSource) -> None:
        self._tracker = tracker

    def routes(self) -> list[Route]:
        return [
            Route("/sagas", self.list_sagas, methods=["GET"]),
            Route("/sagas/{correlation_id:path}", self.show, methods=["GET"]),
        ]

    async def list_sagas(self, request: Request) -> Response:
        query = saga_query(request.query_params)
        tracker = await self._tracker()
        if tracker is None:
            zeros = {s.value: 0 for s in SagaStatus}
            return _json({"recorded": False, "sagas": [], "counts": zeros, "next_cursor": None})
        page = await tracker.page(query.status, query.limit, query.before)
        counts = await tracker.counts()
        return _json(
            {
                "recorded": True,
                "sagas": [saga_summary(v) for v in page.sagas],
                "counts": {s.value: n for s, n in counts.items()},
                "next_cursor": None if page.next is None else encode_cursor(page.next),
            }
        )

    async def show(self, request: Request) -> Response:
        correlation_id: str = request.path_params["correlation_id"]
        tracker = await self._tracker()
        if tracker is None:
            raise SagaNotFoundError(correlation_id)
        return _json(saga_detail(await tracker.saga(correlation_id)))

    async def counts(self) -> dict[str, int] | None:
        """Sagas by status for the gauges; None while no tracker has recorded here."""
        tracker = await self._tracker()
        if tracker is None:
            return None
        return {s.value: n for s, n in (await tracker.counts()).items()}


STATUS = {"type": "string", "enum": [s.value for s in SagaStatus]}
TIME = {"type": "string", "format": "date-time"}
TEXT_OR_NULL = {"anyOf": [{"type": "string"}, {"type": "null"}]}
COUNTS = {
    "type": "object",
    "description": "Every saga the tracker recorded, by status",
    "additionalProperties": False,
    "required": [s.value for s in SagaStatus],
    "properties": {s.value: {"type": "integer", "minimum": 0} for s in SagaStatus},
}
SUMMARY_PROPERTIES: dict[str, Any] = {
    "correlation_id": {"type": "string", "description": "The saga's id"},
    "name": {
        **TEXT_OR_NULL,
        "description": "The Choreography it was declared by (null: undeclared)",
    },
    "status": STATUS,
    "started_at": {**TIME, "description": "Its first event's time"},
    "updated_at": {**TIME, "description": "Its latest event's time"},
    "events": {"type": "integer", "minimum": 1, "description": "Events recorded"},
    "waiting_for": {
        "type": "array",
        "description": "What it waits for (empty once it ended): one of these events, "
        "from this service",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["events", "service"],
            "properties": {
                "events": {"type": "array", "items": {"type": "string"}},
                "service": {
                    **TEXT_OR_NULL,
                    "description": "Expected to send one (null: whoever sends it)",
                },
            },
        },
    },
}
EVENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "type", "source", "causation_id", "time"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "description": "The event's type (its topic)"},
        "source": {**TEXT_OR_NULL, "description": "The service that published it"},
        "causation_id": {**TEXT_OR_NULL, "description": "The id of the event it answers"},
        "time": TIME,
    },
}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }


def schemas() -> dict[str, Any]:
    """The OpenAPI components these routes answer with."""
    return {
        "SagaSummary": _object(SUMMARY_PROPERTIES),
        "SagaList": _object(
            {
                "recorded": {
                    "type": "boolean",
                    "description": "Whether a tracker has recorded into this database "
                    "(`sagaline tracker --db` with the server's database)",
                },
                "sagas": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/SagaSummary"},
                    "description": "A page of them (it may hold fewer than limit, and still "
                    "have a next one: a saga whose status changed while read is left out)",
                },
                "counts": COUNTS,
                "next_cursor": {
                    **TEXT_OR_NULL,
                    "description": "Pass it as cursor for the next page (null: the last)",
                },
            }
        ),
        "SagaDetail": _object(
            {
                **SUMMARY_PROPERTIES,
                "participants": {
                    "type": "array",
                    "items": TEXT_OR_NULL,
                    "description": "The services, in the order they first publish "
                    "(null: events without a source)",
                },
                "timeline": {
                    "type": "array",
                    "items": EVENT,
                    "description": "Every recorded event, each after the one it answers, "
                    "then by time",
                },
            }
        ),
    }


def paths(unauthenticated: Any, invalid: Any) -> dict[str, Any]:
    """The OpenAPI paths of these routes."""

    return {
        "/sagas": {
            "get": {
                "summary": "List choreographed sagas, the most recently started first, with "
                "counts by status",
                "operationId": "listSagas",
                "parameters": [
                    query("status", STATUS, "Only sagas in this status (any case), e.g. STALLED"),
                    query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                        f"At most this many sagas (default {DEFAULT_LIMIT})",
                    ),
                    query(
                        "cursor",
                        {"type": "string"},
                        "next_cursor of the last page (with the same status)",
                    ),
                ],
                "responses": {
                    "200": ok("The sagas", "SagaList"),
                    "401": unauthenticated,
                    "422": invalid,
                },
            }
        },
        "/sagas/{correlation_id}": {
            "get": {
                "summary": "One saga: status, participants, timeline and what it waits for",
                "operationId": "showSaga",
                "parameters": [
                    {
                        "name": "correlation_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                        "description": "The saga's correlation id, percent-encoded",
                    }
                ],
                "responses": {
                    "200": ok("The saga", "SagaDetail"),
                    "401": unauthenticated,
                    "404": {
                        "description": "No event of this saga was recorded (`saga_not_found`)",
                        "content": {
                            "application/problem+json": {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        },
                    },
                },
            }
        },
    }
