"""``/api/v1/tasks``: external workers claim task steps and answer them. A surface: each
handler checks the caller is a worker, parses its body and calls
:class:`~sagaline.engine.tasks.TaskService`, which decides everything.

A worker token may do nothing else (:class:`WorkerFence`), and only a worker token may use
these routes: a worker's credentials are spread over many hosts and languages, so they
open the least.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sagaline.engine.engine import Engine
from sagaline.engine.tasks import (
    MAX_CLAIM,
    MAX_WAIT_SECONDS,
    TaskLeaseLostError,
    TaskNotFoundError,
    TaskResultError,
    UnknownQueueError,
)
from sagaline.http.auth import Principal, Role
from sagaline.http.guard import send_problem
from sagaline.http.problems import Problem
from sagaline.model.errors import SagalineError, UnknownStepError
from sagaline.model.names import check_name

PREFIX = "/api/v1/tasks"
WORKER_NAME_LIMIT = 200


class ClaimRequest(msgspec.Struct, forbid_unknown_fields=True):
    queue: str
    worker: str
    max: int = 1
    wait_seconds: float = 0.0


class HeartbeatRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    details: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    """Accepted and, for now, not kept."""


class CompleteRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class TaskError(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    message: str = ""


class FailRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    error: TaskError
    non_retryable: bool = False


def json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status, None, "application/json")


async def read(request: Request, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise Problem(422, "invalid_request", f"the request body is not valid: {exc}") from None


def worker_of(request: Request) -> Principal:
    """The caller, if it holds a worker token; otherwise the 403 saying which is needed."""
    who: Principal = request.state.principal
    if who.role is not Role.WORKER:
        raise Problem(
            403,
            "forbidden",
            f"token {who.name!r} is a {who.role.value}'s; task routes need a token with the "
            f"worker role (`sagaline tokens create NAME --role worker`)",
        )
    return who


def problem_of(exc: SagalineError) -> Problem:
    """The API's answer to what the task service refused."""
    if isinstance(exc, TaskNotFoundError):
        return Problem(404, exc.code, str(exc))
    if isinstance(exc, TaskLeaseLostError):
        return Problem(409, exc.code, str(exc))
    if isinstance(exc, TaskResultError | UnknownQueueError):
        return Problem(422, exc.code, str(exc))
    if isinstance(exc, UnknownStepError):
        return Problem(422, exc.code, f"{exc}; start `sagaline serve` with --import MODULE")
    raise exc


class TaskRoutes:
    """The handlers, bound to one engine."""

    def __init__(self, engine: Engine) -> None:
        self.tasks = engine.tasks

    def routes(self) -> list[Route]:
        return [
            Route("/tasks/claim", self.claim, methods=["POST"]),
            Route("/tasks/{task_id}/heartbeat", self.heartbeat, methods=["POST"]),
            Route("/tasks/{task_id}/complete", self.complete, methods=["POST"]),
            Route("/tasks/{task_id}/fail", self.fail, methods=["POST"]),
        ]

    async def claim(self, request: Request) -> Response:
        worker_of(request)
        body: ClaimRequest = await read(request, ClaimRequest)
        check_name("queue", body.queue)
        if not body.worker or len(body.worker) > WORKER_NAME_LIMIT:
            raise Problem(422, "invalid_request", "worker must be 1 to 200 characters")
        if not 1 <= body.max <= MAX_CLAIM:
            raise Problem(422, "invalid_request", f"max must be between 1 and {MAX_CLAIM}")
        if not 0 <= body.wait_seconds <= MAX_WAIT_SECONDS:
            raise Problem(
                422, "invalid_request", f"wait_seconds must be between 0 and {MAX_WAIT_SECONDS:g}"
            )
        try:
            claimed = await self.tasks.claim(body.queue, body.worker, body.max, body.wait_seconds)
        except SagalineError as exc:
            raise problem_of(exc) from None
        return json(
            {
                "tasks": [
                    {
                        "id": t.id,
                        "token": t.token,
                        "run_id": t.run_id,
                        "step": t.step,
                        "queue": t.queue,
                        "input": t.input,
                        "attempt": t.attempt,
                        "deadline": t.deadline,
                    }
                    for t in claimed
                ]
            }
        )

    async def heartbeat(self, request: Request) -> Response:
        worker_of(request)
        body: HeartbeatRequest = await read(request, HeartbeatRequest)
        try:
            deadline, cancel = await self.tasks.heartbeat(
                request.path_params["task_id"], body.token
            )
        except SagalineError as exc:
            raise problem_of(exc) from None
        return json({"deadline": deadline, "cancel_requested": cancel})

    async def complete(self, request: Request) -> Response:
        worker_of(request)
        body: CompleteRequest = await read(request, CompleteRequest)
        result = b"null" if body.result is msgspec.UNSET else bytes(body.result)
        task_id = request.path_params["task_id"]
        try:
            await self.tasks.complete(task_id, body.token, result)
        except SagalineError as exc:
            raise problem_of(exc) from None
        return json({"id": task_id, "outcome": "completed"})

    async def fail(self, request: Request) -> Response:
        worker_of(request)
        body: FailRequest = await read(request, FailRequest)
        task_id = request.path_params["task_id"]
        error = body.error
        try:
            retried = await self.tasks.fail(
                task_id, body.token, error.type, error.message, body.non_retryable
            )
        except SagalineError as exc:
            raise problem_of(exc) from None
        return json({"id": task_id, "outcome": "retrying" if retried else "failed"})


class WorkerFence:
    """Inside the guard: a worker token reaches the task routes and nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            who = scope.get("state", {}).get("principal")
            path: str = scope.get("path", "")
            if (
                isinstance(who, Principal)
                and who.role is Role.WORKER
                and not path.startswith(PREFIX + "/")
            ):
                detail = f"token {who.name!r} is a worker's: it may only claim and answer tasks"
                await send_problem(send, Problem(403, "forbidden", detail), path)
                return
        await self.app(scope, receive, send)
