"""A small typed client for task workers: claim a saga's task steps over HTTP and answer.

Any language can be a worker (``examples/workers/``): the protocol is four JSON POSTs under
``/api/v1/tasks`` with a ``worker`` token. This is the Python one::

    async with Client("http://127.0.0.1:8080", token, worker="payments-1") as client:
        await client.run({"shop.charge": charge_card}, queue="payments")

A handler gets the step's arguments as keyword arguments (JSON values) and returns its
result (anything msgspec encodes: JSON values, dataclasses, ``msgspec.Struct``); raising
fails the attempt, which the saga retries per its step's policy, or not at all when the
exception is a :class:`sagaline.NonRetryable`.

Errors: :class:`TaskClientError` (``status``, ``code``, ``detail`` from the server's problem
document), and its subclass :class:`LeaseLostError` (409: the task is no longer this
worker's; drop it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import msgspec

from sagaline.model.errors import NonRetryable

log = logging.getLogger("sagaline.tasks")

Handler = Callable[..., Awaitable[Any] | Any]


class TaskClientError(Exception):
    """The server refused a request; ``code`` is the problem document's stable code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class LeaseLostError(TaskClientError):
    """409: the lease expired and the task went to another worker (or was answered)."""


@dataclass(frozen=True)
class Task:
    """A claimed task: ``input`` maps the step's parameters to their JSON values."""

    id: str
    token: str
    run_id: str
    step: str
    input: dict[str, Any]
    attempt: int
    deadline: str | None


class Client:
    """One worker's connection to a ``sagaline serve``.

    Args:
        url: the server's base URL (``http://host:8080``).
        token: a token created with ``sagaline tokens create NAME --role worker``.
        worker: this worker's name, kept with each lease it takes.
    """

    def __init__(
        self,
        url: str,
        token: str,
        worker: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.worker = worker
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/") + "/api/v1/tasks",
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, read=90.0),  # a claim long-polls up to 60 s
            transport=transport,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        response = await self._http.post(path, content=msgspec.json.encode(body))
        if response.status_code == 200:
            return response.json()
        try:
            problem = response.json()
            code, detail = str(problem["code"]), str(problem["detail"])
        except (ValueError, KeyError, TypeError):
            code, detail = "http_error", response.text[:500]
        cls = LeaseLostError if response.status_code == 409 else TaskClientError
        raise cls(response.status_code, code, detail)

    async def claim(self, queue: str, max: int = 1, wait_seconds: float = 20.0) -> list[Task]:
        """Up to ``max`` tasks of ``queue``, waiting up to ``wait_seconds`` for one."""
        body = {"queue": queue, "worker": self.worker, "max": max, "wait_seconds": wait_seconds}
        answer = await self._post("/claim", body)
        return [
            Task(
                t["id"], t["token"], t["run_id"], t["step"], t["input"], t["attempt"], t["deadline"]
            )
            for t in answer["tasks"]
        ]

    async def heartbeat(self, task: Task) -> bool:
        """Extend the lease; returns whether the task's run was cancelled (stop work)."""
        answer = await self._post(f"/{task.id}/heartbeat", {"token": task.token})
        return bool(answer["cancel_requested"])

    async def complete(self, task: Task, result: Any) -> None:
        """Answer with the step's result (refused with 422 if it does not fit its type)."""
        body = {"token": task.token, "result": msgspec.to_builtins(result)}
        await self._post(f"/{task.id}/complete", body)

    async def fail(self, task: Task, type: str, message: str, non_retryable: bool = False) -> str:
        """Fail this attempt; returns ``"retrying"`` or ``"failed"`` (the step failed)."""
        body = {
            "token": task.token,
            "error": {"type": type, "message": message},
            "non_retryable": non_retryable,
        }
        return str((await self._post(f"/{task.id}/fail", body))["outcome"])

    async def run(
        self,
        handlers: Mapping[str, Handler],
        queue: str,
        *,
        heartbeat_every: float = 5.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Claim and answer tasks of ``queue`` one at a time until ``stop`` is set.

        A task whose step has no handler is failed as non-retryable, naming the step. While
        a handler runs, the lease is extended every ``heartbeat_every`` seconds (keep it
        well under the step's ``heartbeat_timeout``). When the heartbeat says the run was
        cancelled, the handler is stopped and the task failed as non-retryable, so that the
        run, which waits for the answer of a task a worker holds, unwinds at once.
        """
        stop = stop or asyncio.Event()
        while not stop.is_set():
            for task in await self.claim(queue, 1, wait_seconds=5.0):
                await self._handle(handlers, task, heartbeat_every)

    async def _handle(self, handlers: Mapping[str, Handler], task: Task, every: float) -> None:
        handler = handlers.get(task.step)
        if handler is None:
            await self.fail(task, "UnknownStep", f"no handler for step {task.step!r}", True)
            return
        work = asyncio.ensure_future(_call(handler, task.input))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=every)
                if not work.done() and await self.heartbeat(task):
                    work.cancel()
                    with contextlib.suppress(BaseException):
                        await work
                    why = "its run was cancelled; the handler was stopped"
                    await self.fail(task, "Cancelled", why, True)
                    log.info("task %s stopped: its run was cancelled", task.id)
                    return
            try:
                result = work.result()
            except Exception as exc:
                retryable = not isinstance(exc, NonRetryable)
                await self.fail(task, type(exc).__qualname__, str(exc), not retryable)
                return
            await self.complete(task, result)
        except LeaseLostError:
            log.warning("task %s: the lease was lost; another worker has it", task.id)
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work


async def _call(handler: Handler, args: dict[str, Any]) -> Any:
    value = handler(**args)
    if asyncio.iscoroutine(value):
        return await value
    return value
