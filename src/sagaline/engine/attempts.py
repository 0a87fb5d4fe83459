"""Calling user code: one attempt under a timeout, and the retry loop around it.

Shared by steps and compensations. Async functions run on the event loop (no thread hop);
plain functions run in the engine's bounded thread pool. A step's ``timeout`` counts from
the moment its function begins, never while it waits for a free thread.

A timed-out attempt counts as a failed one whose effect is unknown: it may have done its
work. An async function that times out is cancelled and awaited. A thread cannot be
stopped, so a plain function that times out runs on: its failure is reported at once
(``on_failure``), but neither the next attempt nor the return of
:func:`call_with_retries` (after which the caller may compensate) happens before that
thread has finished. :attr:`Outcome.unknown` tells the caller the final attempt timed out.

Anything user code raises is described by :func:`error_info`, which never raises and
yields text fit for a JSON column. ``asyncio.CancelledError`` and other exceptions that
are not ``Exception`` subclasses are never treated as a step failure: they mean shutdown
(or an interrupted run) and propagate.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sagaline.engine.runtime import Runtime
from sagaline.model.errors import NonRetryable
from sagaline.model.retry import RetryPolicy

if TYPE_CHECKING:
    from sagaline.engine.observe import Probe

log = logging.getLogger("sagaline.attempts")

MESSAGE_LIMIT = 2000
"""Longest error message kept, in characters, truncation marker included."""

STRAGGLER_WARNING = 10.0
"""Seconds a timed-out thread may run on before a warning (then again at each doubling)."""

_UNSAFE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates: invalid in JSON columns


class StepTimeout(Exception):
    """An attempt ran longer than the step's ``timeout``; its effect is unknown.

    Attributes:
        unfinished: for a plain function, the future of its thread, still running when the
            timeout fired; nothing that depends on the attempt's effect may start before it
            is done. None for an async function, which was cancelled and awaited.
    """

    def __init__(self, timeout: float, unfinished: asyncio.Future[Any] | None = None) -> None:
        super().__init__(f"attempt timed out after {timeout:g} s; its effect is unknown")
        self.unfinished = unfinished


def error_info(exc: BaseException) -> dict[str, Any]:
    """``{"type", "message"}`` describing ``exc``: never raises, always JSON-safe text."""
    cls = type(exc)
    try:
        module, name = cls.__module__, cls.__qualname__
        qualified = name if module in ("builtins", __name__) else f"{module}.{name}"
    except Exception:  # a class with a hostile __module__
        qualified = cls.__name__
    return {"type": _clean(qualified), "message": _message(exc, cls)}


def _message(exc: BaseException, cls: type[BaseException]) -> str:
    try:
        text = str(exc)
        if type(text) is not str:  # a str subclass may override anything
            text = str.__str__(text)
    except Exception as err:  # common in SDK error classes
        why = type(err).__qualname__
        return _clean(f"<{cls.__qualname__}: message unavailable (str() raised {why})>")
    if not text:
        return _clean(cls.__qualname__)
    if len(text) > MESSAGE_LIMIT:
        marker = f"... [truncated from {len(text)} characters]"
        text = text[: MESSAGE_LIMIT - len(marker)] + marker
    return _clean(text)


def _clean(text: str) -> str:
    return _UNSAFE.sub("\ufffd", text)


@dataclass(slots=True)
class Outcome:
    """What came of calling user code through :func:`call_with_retries`.

    Attributes:
        ok: the last attempt returned ``value``; otherwise ``error`` describes how it failed.
        attempts: attempts made (0 when the call could not even be prepared).
        started_at: the engine clock when the first attempt began.
        unknown: the final failed attempt timed out, so its effect is unknown (it may have
            done its work); a caller that compensates should treat it as done.
        interrupted: ``interrupt`` was set during a retry backoff, so no further attempt
            was made; ``error`` is the last attempt's.
    """

    ok: bool
    value: Any
    error: dict[str, Any] | None
    attempts: int
    started_at: float
    unknown: bool = False
    interrupted: bool = False


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
    """One attempt: what ``fn`` returns or raises, or :class:`StepTimeout`.

    A plain function's ``StepTimeout`` carries its still-running thread as ``unfinished``;
    the caller must not start anything that depends on the attempt before it is done.
    """
    if not is_async:
        return await _call_in_thread(rt.threads, fn, args, kwargs, timeout)
    if timeout is None:
        return await fn(*args, **kwargs)
    limit = asyncio.timeout(timeout)  # inline, unlike wait_for on 3.11: no task per attempt
    try:
        async with limit:
            return await fn(*args, **kwargs)
    except TimeoutError:
        if limit.expired():
            raise StepTimeout(timeout) from None
        raise  # the function's own TimeoutError: an ordinary failure


async def _call_in_thread(
    pool: ThreadPoolExecutor,
    fn: Callable[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    timeout: float | None,
) -> Any:
    loop = asyncio.get_running_loop()
    # The step runs in the caller's context, so sagaline.step_info() answers in threads too.
    context = contextvars.copy_context()
    if timeout is None:
        return await loop.run_in_executor(pool, functools.partial(context.run, fn, *args, **kwargs))
    began: asyncio.Future[None] = loop.create_future()

    def run() -> Any:
        loop.call_soon_threadsafe(_resolve, began)
        return context.run(fn, *args, **kwargs)

    done = loop.run_in_executor(pool, run)
    done.add_done_callback(lambda _: _resolve(began))  # never began: the pool shut down
    try:
        await began  # time spent queued for a free thread does not count
    except asyncio.CancelledError:
        done.cancel()  # still queued, it never starts; already begun, it runs on
        raise
    finished, _ = await asyncio.wait({done}, timeout=timeout)
    if not finished:
        raise StepTimeout(timeout, done)
    return done.result()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def call_with_retries(
    rt: Runtime,
    fn: Callable[..., Any],
    is_async: bool,
    args: list[Any],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    timeout: float | None,
    on_failure: OnFailure,
    *,
    interrupt: asyncio.Event | None = None,
    before_retry: Callable[[], Awaitable[None]] | None = None,
    probe: Probe | None = None,
    first_attempt: int = 1,
    started_at: float | None = None,
) -> Outcome:
    """Attempts of ``fn`` per ``policy`` until one succeeds or no retry is left.

    Each failed attempt that will be retried is reported to ``on_failure`` before the
    backoff. Setting ``interrupt`` cuts a backoff short: no further attempt starts, and
    the outcome is the last failure, marked ``interrupted``. Never returns, and never starts
    another attempt, while a timed-out attempt's thread still runs. ``before_retry`` runs
    before each further attempt (after the backoff) and may raise to stop it. ``probe``
    (metrics or tracing on) wraps each attempt in its span and counts it.
    ``first_attempt`` and ``started_at``: where a retry resumed after a durable backoff
    (the run slept in the database between two attempts) takes up the count.
    """
    started_at = rt.clock() if started_at is None else started_at
    attempt = first_attempt - 1
    while True:
        attempt += 1
        try:
            if probe is not None:
                call = (
                    fn(*args, **kwargs)
                    if is_async and timeout is None
                    else call_once(rt, fn, is_async, args, kwargs, timeout)
                )
                value = await probe.attempt(attempt, call)
            elif is_async and timeout is None:
                value = await fn(*args, **kwargs)  # the hot path: no coroutine in between
            else:
                value = await call_once(rt, fn, is_async, args, kwargs, timeout)
        except Exception as exc:
            info = error_info(exc)
            unknown = issubclass(type(exc), StepTimeout)  # isinstance() may run user code
            unfinished = cast(StepTimeout, exc).unfinished if unknown else None
            if not _should_retry(policy, attempt, exc):
                if unfinished is not None:
                    await _join(unfinished, fn)
                return Outcome(False, None, info, attempt, started_at, unknown)
            delay = _delay(policy, attempt, rt.rand())
            try:
                await on_failure(attempt, info, delay)
                await _back_off(delay, interrupt)
            except asyncio.CancelledError:
                raise  # shutdown: do not wait on a thread that may never finish
            except BaseException:
                if unfinished is not None:
                    await _join(unfinished, fn)
                raise
            if unfinished is not None:
                await _join(unfinished, fn)
            if interrupt is not None and interrupt.is_set():
                return Outcome(False, None, info, attempt, started_at, unknown, interrupted=True)
            if before_retry is not None:
                await before_retry()
        else:
            return Outcome(True, value, None, attempt, started_at)


def _should_retry(policy: RetryPolicy, attempt: int, exc: Exception) -> bool:
    try:
        return policy.should_retry(attempt, exc)
    except Exception:  # a non-class in non_retryable, or a hostile __class__ on exc
        log.warning("retry policy %r failed on %s; judging by type", policy, type(exc).__name__)
        return attempt < policy.max_attempts and not issubclass(type(exc), NonRetryable)


def _delay(policy: RetryPolicy, attempt: int, rand: float) -> float:
    try:
        return policy.delay(attempt, rand)
    except OverflowError:  # backoff ** attempt leaves float range after ~1,000 attempts
        return policy.max_interval


async def _back_off(delay: float, interrupt: asyncio.Event | None) -> None:
    if interrupt is None:
        await asyncio.sleep(delay)
    elif not interrupt.is_set():
        # inline in this task (no task per backoff); on 3.11 ``timeout`` never swallows
        # a cancellation, unlike ``wait_for``
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await interrupt.wait()


async def _join(unfinished: asyncio.Future[Any], fn: Callable[..., Any]) -> None:
    """Wait until a timed-out attempt's thread has finished, warning while it runs on."""
    loop = asyncio.get_running_loop()
    since, patience = loop.time(), STRAGGLER_WARNING
    while not unfinished.done():
        await asyncio.wait({unfinished}, timeout=patience)
        if not unfinished.done():
            log.warning(
                "%s still runs %.0f s after its attempt timed out; the next attempt (or the "
                "caller, which may compensate it) waits until it finishes",
                getattr(fn, "__qualname__", type(fn).__qualname__),
                loop.time() - since,
            )
            patience *= 2
    if not unfinished.cancelled():
        unfinished.exception()  # retrieved; the outcome of a timed-out attempt is not used
