"""Calling user code: one attempt under a timeout, and the retry loop around it.

Shared by steps and compensations. Async functions run on the event loop (no thread hop);
plain functions run in the engine's bounded thread pool. A timed-out attempt counts as a
failed one. ``asyncio.CancelledError`` and other ``BaseException``s are never treated as a
step failure: they mean shutdown and propagate.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sagaline.engine.runtime import Runtime
from sagaline.model.retry import RetryPolicy


class StepTimeout(Exception):
    """An attempt ran longer than the step's ``timeout``."""


def error_info(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    module = cls.__module__
    name = cls.__qualname__ if module in ("builtins", __name__) else f"{module}.{cls.__qualname__}"
    return {"type": name, "message": str(exc) or cls.__qualname__}


@dataclass
class Outcome:
    ok: bool
    value: Any
    error: dict[str, Any] | None
    attempts: int
    started_at: float


OnFailure = Callable[[int, dict[str, Any], float], Awaitable[None]]
"""Called after each failed attempt that will be retried: (attempt, error, delay)."""


async def call_once(
    rt: Runtime,
    fn: Callable[..., Any],
    is_async: bool,
    args: list[Any],
    kwargs: dict[str, Any],
    timeout: float | None,
) -> Any:
    if is_async:
        awaitable: Awaitable[Any] = fn(*args, **kwargs)
    else:
        call = functools.partial(fn, *args, **kwargs)
        awaitable = asyncio.get_running_loop().run_in_executor(rt.threads, call)
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise StepTimeout(f"attempt timed out after {timeout:g} s") from None


async def call_with_retries(
    rt: Runtime,
    fn: Callable[..., Any],
    is_async: bool,
    args: list[Any],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    timeout: float | None,
    on_failure: OnFailure,
) -> Outcome:
    started_at = rt.clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            value = await call_once(rt, fn, is_async, args, kwargs, timeout)
        except Exception as exc:
            info = error_info(exc)
            if not policy.should_retry(attempt, exc):
                return Outcome(False, None, info, attempt, started_at)
            delay = policy.delay(attempt, rt.rand())
            await on_failure(attempt, info, delay)
            await asyncio.sleep(delay)
        else:
            return Outcome(True, value, None, attempt, started_at)
