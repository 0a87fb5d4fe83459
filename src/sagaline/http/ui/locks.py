"""The UI's pages of semantic locks: every key held or waited for (by key prefix), and one
key's holders and queue.

A surface: the store keeps the queues and decides every grant; these pages read
:meth:`Engine.list_locks` and :meth:`Engine.locks`, as ``GET /api/v1/locks`` does, and
render the API's own view of each request (:func:`sagaline.http.locks.request_view`). A free
key, or one nobody ever took, is a page that says it is free, not an error.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sagaline.engine.engine import Engine
from sagaline.http.locks import lock_limit, request_view
from sagaline.http.problems import Problem
from sagaline.http.ui.pages import filled
from sagaline.http.ui.render import page
from sagaline.model.errors import InvalidNameError
from sagaline.model.locks import LockInfo, LockRequest
from sagaline.model.status import RunStatus


def lock_view(r: LockRequest) -> dict[str, Any]:
    """The API's view of a request, with since when it holds (or waits) and whether its run
    is parked: a parked holder keeps the key until an operator ends the run."""
    view = request_view(r)
    view["since"] = view["granted_at"] or view["requested_at"]
    try:
        view["parked"] = r.held and RunStatus(r.run_status or "").is_parked
    except ValueError:  # its run is gone (no status), or has one this code does not know
        view["parked"] = False
    return view


def info_view(info: LockInfo) -> dict[str, Any]:
    return {
        "key": info.key,
        "holders": [lock_view(r) for r in info.holders],
        "waiters": [lock_view(r) for r in info.waiters],
    }


def by_key(requests: list[LockRequest]) -> list[LockInfo]:
    """The requests (the store's order: by key, then arrival) as one queue per key; keys
    whose requests were all refused (deadlock victims) are left out, as the API leaves
    those requests out."""
    grouped: dict[str, list[LockRequest]] = {}
    for r in requests:
        grouped.setdefault(r.key, []).append(r)
    infos = [LockInfo.of(key, group) for key, group in grouped.items()]
    return [info for info in infos if not info.free]


class Locks:
    """The lock pages, bound to one open engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def list(self, request: Request) -> Response:
        params = filled(request.query_params)
        prefix = params.get("prefix", "")
        context: dict[str, Any] = {"prefix": prefix, "locks": [], "cut_at": None, "error": None}
        try:
            limit = lock_limit(params)
            found = await self.engine.list_locks(prefix or None, limit + 1)
        except Problem as problem:
            return page(request, "locks.html", 422, **{**context, "error": problem.detail})
        except InvalidNameError as exc:  # the prefix, checked by the rule for keys
            return page(request, "locks.html", 422, **{**context, "error": str(exc)})
        if len(found) > limit:
            context["cut_at"] = limit
        context["locks"] = [info_view(info) for info in by_key(found[:limit])]
        return page(request, "locks.html", **context)

    async def show(self, request: Request) -> Response:
        key: str = request.path_params["key"]
        try:
            info = await self.engine.locks(key)
        except InvalidNameError as exc:
            return page(request, "lock.html", 422, key=key, lock=None, error=str(exc))
        return page(request, "lock.html", key=key, lock=info_view(info), error=None)
