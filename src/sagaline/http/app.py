"""The ASGI application ``sagaline serve`` runs: ``/api/v1``, the web UI at ``/``,
``/metrics`` and ``/healthz``.

Only ``/healthz``, the sign-in page and the UI's static files are public. The API takes a
bearer token or the UI's session; the UI's pages send a caller without either to sign in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from sagaline.engine.engine import Engine
from sagaline.http import problems, ui
from sagaline.http.guard import BodyLimit, Guard, SecurityHeaders
from sagaline.http.limits import DEFAULT_MAX_BODY_BYTES
from sagaline.http.locks import LockRoutes
from sagaline.http.metrics import metrics, watch_sagas
from sagaline.http.problems import Problem
from sagaline.http.routes import Api, json
from sagaline.http.sagas import SagaRoutes
from sagaline.http.sessions import Sessions
from sagaline.http.tasks import TaskRoutes, WorkerFence
from sagaline.model.errors import SagalineError

log = logging.getLogger("sagaline.http")
PUBLIC = ("/healthz",)


def problem_response(problem: Problem, request: Request) -> Response:
    headers = {"www-authenticate": "Bearer"} if problem.status == 401 else None
    return Response(
        problems.body(problem, request.url.path), problem.status, headers, problems.PROBLEM_JSON
    )


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request)


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SagalineError)
    problem = problems.from_error(exc)
    if problem.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return problem_response(problem, request)


async def on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    detail = {404: "no such endpoint; see /api/v1/openapi.json"}.get(exc.status_code, exc.detail)
    problem = Problem(exc.status_code, codes.get(exc.status_code, "http_error"), detail)
    return problem_response(problem, request)


async def on_crash(request: Request, exc: Exception) -> Response:
    return problem_response(
        Problem(500, "internal_error", "the server failed to handle the request; see its log"),
        request,
    )


async def healthz(request: Request) -> Response:
    return json({"status": "ok"})


def create_app(
    engine: Engine,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    stopping: Callable[[], bool] = lambda: False,
) -> ASGIApp:
    """The application over ``engine``, which it opens at startup and closes at shutdown.

    Args:
        engine: the engine whose runs it shows and operates (opened by the app's lifespan).
        max_body_bytes: larger request bodies are refused with 413.
        stopping: true once the server is shutting down: the UI's live streams, which
            would otherwise hold a graceful shutdown to its deadline, then end.
    """

    sagas = ui.Sagas(engine.url)
    saga_routes = SagaRoutes(sagas.tracker)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with engine:
            unwatch = watch_sagas(engine.url, saga_routes.counts)
            try:
                yield
            finally:
                unwatch()
                await sagas.aclose()

    api = Api(engine)
    sessions = Sessions()
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Mount(
                "/api/v1",
                routes=[
                    *TaskRoutes(engine).routes(),
                    *LockRoutes(engine).routes(),
                    *saga_routes.routes(),
                    *api.routes(),
                ],
            ),
            *ui.ui_routes(engine, sessions, stopping, sagas),
        ],
        exception_handlers={
            Problem: on_problem,
            SagalineError: on_error,
            HTTPException: on_http,
            Exception: on_crash,
        },
        lifespan=lifespan,
    )
    guarded = Guard(
        BodyLimit(WorkerFence(app), max_body_bytes),
        lambda: engine.store,
        sessions,
        (*PUBLIC, *ui.PUBLIC),
        ui.PUBLIC_PREFIXES,
    )
    return SecurityHeaders(guarded)
