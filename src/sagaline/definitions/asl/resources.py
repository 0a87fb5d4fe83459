"""Task resources other than ``sagaline:STEP``: handlers the user registers by ARN prefix.

A handler is ``async def handler(request: TaskRequest) -> result``; it raises
:class:`AslError` for a named ASL error (any other exception is named after its class).
:func:`call` enforces the Task's ``TimeoutSeconds`` and ``HeartbeatSeconds`` around it: a
handler that runs longer, or does not call ``request.beat()`` often enough, fails with
``States.Timeout`` / ``States.HeartbeatTimeout`` as AWS's tasks do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from sagaline.definitions.asl.errors import HEARTBEAT_TIMEOUT, TIMEOUT, AslError
from sagaline.definitions.asl.host import Handler, TaskRequest

_handlers: dict[str, Handler] = {}


def register_resource(prefix: str, handler: Handler) -> None:
    """Route Task resources starting with ``prefix`` (an ARN or a part of one) to ``handler``."""
    _handlers[prefix] = handler


def unregister_resource(prefix: str) -> None:
    _handlers.pop(prefix, None)


def handler_for(resource: str) -> Handler | None:
    """The handler of the longest registered prefix of ``resource``."""
    best = max((p for p in _handlers if resource.startswith(p)), key=len, default=None)
    return None if best is None else _handlers[best]


async def call(handler: Handler, request: TaskRequest) -> Any:
    """``handler(request)`` within the Task's timeout and heartbeat; raises AslError."""
    last = [time.monotonic()]
    request = dataclasses.replace(request, beat=lambda: last.__setitem__(0, time.monotonic()))
    task = asyncio.ensure_future(handler(request))
    started = time.monotonic()
    step = min(x for x in (request.timeout, request.heartbeat, 1.0) if x is not None) / 4
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=step)
            if done:
                return _result(task)
            now = time.monotonic()
            if request.timeout is not None and now - started >= request.timeout:
                raise AslError(TIMEOUT, f"Task timed out after {request.timeout} seconds")
            if request.heartbeat is not None and now - last[0] >= request.heartbeat:
                raise AslError(HEARTBEAT_TIMEOUT, f"no heartbeat for {request.heartbeat} seconds")
    finally:
        if not task.done():
            task.cancel()


def _result(task: asyncio.Future[Any]) -> Any:
    try:
        return task.result()
    except AslError:
        raise
    except Exception as exc:
        raise AslError(type(exc).__name__, str(exc)) from exc
