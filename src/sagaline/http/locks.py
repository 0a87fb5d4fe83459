"""``/api/v1/locks``: who holds which business key, and who waits for it. A surface: it
reads :meth:`Engine.locks` / :meth:`Engine.list_locks` and renders; any token may read it
(a lock holds no payload).

A service asks ``GET /api/v1/locks/order:42`` before it serves a read of order 42: a held
key means a saga is changing the object (the "pending" answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sagaline.engine.engine import Engine
from sagaline.http.problems import list_limit
from sagaline.http.spec import ok, query
from sagaline.model.locks import LockRequest

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def request_view(r: LockRequest) -> dict[str, Any]:
    return {
        "key": r.key,
        "run_id": r.run_id,
        "mode": r.mode,
        "state": "held" if r.held else "waiting",
        "requested_at": _iso(r.requested_at),
        "granted_at": _iso(r.granted_at),
        "run_status": r.run_status,
    }


def lock_limit(params: Mapping[str, str]) -> int:
    """The ``limit`` of a lock list (the API's and the locks page's alike)."""
    return list_limit(params, DEFAULT_LIMIT, MAX_LIMIT)


def _json(value: Any) -> Response:
    return Response(msgspec.json.encode(value), 200, None, "application/json")


class LockRoutes:
    """The handlers, bound to one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def routes(self) -> list[Route]:
        return [
            Route("/locks", self.list_locks, methods=["GET"]),
            Route("/locks/{key:path}", self.show, methods=["GET"]),
        ]

    async def list_locks(self, request: Request) -> Response:
        prefix = request.query_params.get("prefix") or None
        limit = lock_limit(request.query_params)
        requests = await self.engine.list_locks(prefix, limit)
        live = [r for r in requests if r.refused is None]
        return _json({"locks": [request_view(r) for r in live]})

    async def show(self, request: Request) -> Response:
        info = await self.engine.locks(request.path_params["key"])
        return _json(
            {
                "key": info.key,
                "free": info.free,
                "holders": [request_view(r) for r in info.holders],
                "waiters": [request_view(r) for r in info.waiters],
            }
        )


LOCK = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "run_id", "mode", "state", "requested_at", "granted_at", "run_status"],
    "properties": {
        "key": {"type": "string"},
        "run_id": {"type": "string"},
        "mode": {"enum": ["exclusive", "shared"]},
        "state": {"enum": ["held", "waiting"]},
        "requested_at": {"type": "string", "format": "date-time"},
        "granted_at": {"type": ["string", "null"], "format": "date-time"},
        "run_status": {"type": ["string", "null"], "description": "The run's status"},
    },
}


def schemas() -> dict[str, Any]:
    """The OpenAPI components these routes answer with."""
    lock_ref = {"$ref": "#/components/schemas/LockRequest"}
    return {
        "LockRequest": LOCK,
        "LockList": {
            "type": "object",
            "additionalProperties": False,
            "required": ["locks"],
            "properties": {"locks": {"type": "array", "items": lock_ref}},
        },
        "LockInfo": {
            "type": "object",
            "additionalProperties": False,
            "required": ["key", "free", "holders", "waiters"],
            "properties": {
                "key": {"type": "string"},
                "free": {"type": "boolean"},
                "holders": {"type": "array", "items": lock_ref},
                "waiters": {
                    "type": "array",
                    "items": lock_ref,
                    "description": "In the order they will get the key",
                },
            },
        },
    }


def paths(unauthenticated: Any, invalid: Any) -> dict[str, Any]:
    """The OpenAPI paths of these routes."""

    return {
        "/locks": {
            "get": {
                "summary": "Semantic locks held or waited for, by key",
                "operationId": "listLocks",
                "parameters": [
                    query(
                        "prefix", {"type": "string"}, "Only keys starting with this, e.g. order:"
                    ),
                    query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                        f"At most this many requests (default {DEFAULT_LIMIT})",
                    ),
                ],
                "responses": {
                    "200": ok("Lock requests", "LockList"),
                    "401": unauthenticated,
                    "422": invalid,
                },
            }
        },
        "/locks/{key}": {
            "get": {
                "summary": "Who holds a key and who waits for it (empty for a free key)",
                "operationId": "showLock",
                "parameters": [
                    {
                        "name": "key",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    }
                ],
                "responses": {
                    "200": ok("The key's holders and waiters", "LockInfo"),
                    "401": unauthenticated,
                    "404": {
                        "description": "No such endpoint: the path holds a newline, which no "
                        "key may hold either",
                        "content": {
                            "application/problem+json": {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        },
                    },
                    "422": invalid,
                },
            }
        },
    }
