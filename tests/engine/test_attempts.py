"""Calling user code: error descriptions, timeouts of sync and async functions, retries."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from sagaline.engine import attempts
from sagaline.engine.attempts import (
    MESSAGE_LIMIT,
    Outcome,
    StepTimeout,
    call_once,
    call_with_retries,
    error_info,
)
from sagaline.engine.runtime import Runtime
from sagaline.model.errors import NonRetryable
from sagaline.model.retry import RetryPolicy

QUICK = RetryPolicy(max_attempts=3, initial=0.0, jitter=0.0)
ONCE = RetryPolicy(max_attempts=1)


class SdkError(Exception):
    """Like many SDK errors: formatting the message needs state that is missing."""

    def __str__(self) -> str:
        raise ValueError("no response attached")


class Interrupted(BaseException):
    """Stands in for the engine's RunInterrupted."""


@pytest.fixture
async def rt() -> AsyncIterator[Runtime]:
    pool = ThreadPoolExecutor(2, "test-step")
    yield make_runtime(pool)
    pool.shutdown(wait=True, cancel_futures=True)


def make_runtime(pool: ThreadPoolExecutor) -> Runtime:
    nothing = cast(Any, None)
    return Runtime(nothing, nothing, nothing, "test", pool, 30.0, rand=lambda: 0.0)


class Failures:
    """An ``on_failure`` that records what it was told."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.calls: list[tuple[int, dict[str, Any], float]] = []
        self.then = then

    async def __call__(self, attempt: int, error: dict[str, Any], delay: float) -> None:
        self.calls.append((attempt, error, delay))
        if self.then is not None:
            self.then()


class Blocking:
    """A plain function that blocks until released; counts how many of it run at once."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.release = threading.Event()
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running = self.most = self.calls = 0

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(self.seconds)
            return "late"
        finally:
            with self.lock:
                self.running -= 1


async def retry(
    rt: Runtime,
    fn: Callable[..., Any],
    *,
    is_async: bool,
    policy: RetryPolicy = QUICK,
    timeout: float | None = None,
    on_failure: Failures | None = None,
    interrupt: asyncio.Event | None = None,
) -> Outcome:
    return await call_with_retries(
        rt, fn, is_async, [], {}, policy, timeout, on_failure or Failures(), interrupt=interrupt
    )


# error descriptions


def test_error_info_survives_an_exception_whose_str_raises() -> None:
    info = error_info(SdkError())
    assert info["type"] == f"{__name__}.SdkError"
    assert info["message"] == "<SdkError: message unavailable (str() raised ValueError)>"


def test_error_info_names_the_class_when_the_message_is_empty() -> None:
    assert error_info(KeyError()) == {"type": "KeyError", "message": "KeyError"}


def test_error_info_replaces_nul_and_lone_surrogates() -> None:
    info = error_info(ValueError("a\x00b\ud800c\udfffd"))
    assert info["message"] == "a\ufffdb\ufffdc\ufffdd"
    json.dumps(info, ensure_ascii=False).encode("utf-8")  # fit for a JSON column


def test_error_info_caps_long_messages_and_says_so() -> None:
    message = error_info(ValueError("x" * 1_000_000))["message"]
    assert len(message) == MESSAGE_LIMIT
    assert message.endswith("... [truncated from 1000000 characters]")
    assert error_info(ValueError("x" * MESSAGE_LIMIT))["message"] == "x" * MESSAGE_LIMIT


async def test_exception_whose_str_raises_is_retried_per_policy(rt: Runtime) -> None:
    async def fails() -> None:
        raise SdkError

    failures = Failures()
    outcome = await retry(rt, fails, is_async=True, on_failure=failures)
    assert (outcome.ok, outcome.attempts) == (False, 3)
    assert outcome.error == error_info(SdkError())
    assert [attempt for attempt, _, _ in failures.calls] == [1, 2]


async def test_a_policy_that_cannot_judge_the_exception_retries_by_type(rt: Runtime) -> None:
    class Hostile(Exception):
        @property  # type: ignore[misc]
        def __class__(self) -> type:  # makes isinstance() raise
            raise RuntimeError("no class for you")

    async def fails() -> None:
        raise Hostile("boom")

    outcome = await retry(rt, fails, is_async=True)
    assert (outcome.ok, outcome.attempts, outcome.error) == (False, 3, error_info(Hostile("boom")))
    broken = RetryPolicy(max_attempts=2, initial=0.0, non_retryable=cast(Any, ("not a class",)))
    outcome = await retry(rt, fails, is_async=True, policy=broken)
    assert outcome.attempts == 2

    async def final() -> None:
        raise NonRetryable("no")

    assert (await retry(rt, final, is_async=True, policy=broken)).attempts == 1


async def test_backoff_that_leaves_float_range_waits_max_interval(rt: Runtime) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 1100:
            raise ValueError(calls)
        return "done"

    policy = RetryPolicy(max_attempts=1100, initial=0.0, max_interval=0.0)
    outcome = await retry(rt, flaky, is_async=True, policy=policy)
    assert (outcome.ok, outcome.attempts) == (True, 1100)


# async functions


async def test_async_functions_run_inline_in_the_calling_task(rt: Runtime) -> None:
    caller = asyncio.current_task()
    seen: list[Any] = []

    async def step() -> str:
        seen.append((asyncio.current_task(), threading.current_thread()))
        return "ok"

    for timeout in (None, 5.0):
        outcome = await retry(rt, step, is_async=True, timeout=timeout)
        assert (outcome.ok, outcome.value, outcome.unknown) == (True, "ok", False)
    assert seen == [(caller, threading.main_thread())] * 2


async def test_async_timeout_cancels_and_awaits_the_attempt(rt: Runtime) -> None:
    unwound: list[int] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)
            unwound.append(len(unwound) + 1)

    outcome = await retry(rt, slow, is_async=True, policy=RetryPolicy(2, 0.0), timeout=0.02)
    assert (outcome.ok, outcome.attempts, outcome.unknown) == (False, 2, True)
    assert outcome.error is not None and outcome.error["type"] == "StepTimeout"
    assert "effect is unknown" in outcome.error["message"]
    assert unwound == [1, 2]


async def test_a_functions_own_timeout_error_is_an_ordinary_failure(rt: Runtime) -> None:
    async def times_out_itself() -> None:
        raise TimeoutError("upstream timed out")

    outcome = await retry(rt, times_out_itself, is_async=True, policy=ONCE, timeout=5.0)
    assert outcome.error == {"type": "TimeoutError", "message": "upstream timed out"}
    assert not outcome.unknown


# plain functions in the thread pool


async def test_time_queued_for_a_thread_does_not_count_toward_the_timeout() -> None:
    pool = ThreadPoolExecutor(1)
    rt = make_runtime(pool)
    hog = Blocking()
    hogging = asyncio.ensure_future(call_once(rt, hog, False, [], {}, None))
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, hog.release.set)
    outcome = await retry(rt, lambda: "quick", is_async=False, policy=ONCE, timeout=0.1)
    assert (outcome.ok, outcome.value) == (True, "quick")
    assert await hogging == "late"
    pool.shutdown()


async def test_timed_out_thread_is_reported_then_awaited_before_the_next_attempt(
    rt: Runtime,
) -> None:
    fn = Blocking(seconds=0.2)
    running_when_reported: list[int] = []
    failures = Failures(lambda: running_when_reported.append(fn.running))
    outcome = await retry(
        rt, fn, is_async=False, policy=RetryPolicy(2, 0.0), timeout=0.02, on_failure=failures
    )
    assert (outcome.ok, outcome.attempts, outcome.unknown) == (False, 2, True)
    assert outcome.error == error_info(StepTimeout(0.02))
    assert running_when_reported == [1]  # recorded while its thread still ran
    assert (fn.calls, fn.most, fn.running) == (2, 1, 0)  # never two at once; none left


async def test_final_failure_after_a_timeout_is_not_unknown(rt: Runtime) -> None:
    calls = 0

    def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.1)
        raise ValueError("no")

    outcome = await retry(rt, step, is_async=False, policy=RetryPolicy(2, 0.0), timeout=0.02)
    assert (outcome.attempts, outcome.unknown) == (2, False)
    assert outcome.error == {"type": "ValueError", "message": "no"}


async def test_a_thread_running_long_after_its_timeout_is_warned_about(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(attempts, "STRAGGLER_WARNING", 0.05)
    fn = Blocking(seconds=0.3)
    with caplog.at_level(logging.WARNING, "sagaline.attempts"):
        outcome = await retry(rt, fn, is_async=False, policy=ONCE, timeout=0.02)
    assert outcome.unknown and fn.running == 0
    assert any("after its attempt timed out" in r.getMessage() for r in caplog.records)


async def test_interruption_from_on_failure_waits_for_the_timed_out_thread(
    rt: Runtime,
) -> None:
    fn = Blocking(seconds=0.2)

    def interrupt() -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        await retry(rt, fn, is_async=False, timeout=0.02, on_failure=Failures(interrupt))
    assert (fn.calls, fn.running) == (1, 0)


async def test_shutdown_during_backoff_does_not_wait_for_a_stuck_thread(rt: Runtime) -> None:
    fn = Blocking()
    policy = RetryPolicy(2, initial=10.0)
    task = asyncio.ensure_future(retry(rt, fn, is_async=False, policy=policy, timeout=0.02))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.running == 1
    fn.release.set()


async def test_a_call_cancelled_while_queued_never_runs() -> None:
    pool = ThreadPoolExecutor(1)
    rt = make_runtime(pool)
    hog, queued = Blocking(), Blocking()
    hogging = asyncio.ensure_future(call_once(rt, hog, False, [], {}, None))
    waiting = asyncio.ensure_future(call_once(rt, queued, False, [], {}, 1.0))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.01)  # the pool's future is cancelled a loop iteration later
    hog.release.set()
    await hogging
    pool.shutdown(wait=True)
    assert queued.calls == 0


async def test_a_call_queued_when_the_pool_shuts_down_does_not_hang() -> None:
    pool = ThreadPoolExecutor(1)
    rt = make_runtime(pool)
    hog = Blocking()
    hogging = asyncio.ensure_future(call_once(rt, hog, False, [], {}, None))
    waiting = asyncio.ensure_future(call_once(rt, lambda: None, False, [], {}, 1.0))
    await asyncio.sleep(0.05)
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 2.0)
    hog.release.set()
    await hogging


# interruptible backoff


async def test_interrupt_during_backoff_stops_retrying(rt: Runtime) -> None:
    calls = 0

    async def fails() -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"attempt {calls}")

    interrupt = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, interrupt.set)
    began = time.monotonic()
    outcome = await retry(
        rt, fails, is_async=True, policy=RetryPolicy(5, initial=10.0), interrupt=interrupt
    )
    assert time.monotonic() - began < 2.0
    assert (outcome.ok, outcome.interrupted, outcome.attempts, calls) == (False, True, 1, 1)
    assert outcome.error == {"type": "ValueError", "message": "attempt 1"}


async def test_interrupt_set_by_on_failure_skips_the_backoff(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fails() -> None:
        raise ValueError("no")

    async def no_sleep(delay: float) -> None:
        raise AssertionError(f"slept {delay}")

    interrupt = asyncio.Event()
    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    outcome = await retry(
        rt,
        fails,
        is_async=True,
        policy=RetryPolicy(5, initial=10.0),
        on_failure=Failures(interrupt.set),
        interrupt=interrupt,
    )
    assert (outcome.interrupted, outcome.attempts) == (True, 1)


async def test_an_unset_interrupt_lets_retries_go_on(rt: Runtime) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError(calls)
        return "done"

    policy = RetryPolicy(3, initial=0.01)
    outcome = await retry(rt, flaky, is_async=True, policy=policy, interrupt=asyncio.Event())
    assert (outcome.ok, outcome.value, outcome.attempts, outcome.interrupted) == (
        True,
        "done",
        3,
        False,
    )


async def test_interrupt_while_a_timed_out_thread_finishes_starts_no_attempt(
    rt: Runtime,
) -> None:
    fn = Blocking(seconds=0.3)
    interrupt = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, interrupt.set)
    outcome = await retry(
        rt, fn, is_async=False, policy=RetryPolicy(3, 0.0), timeout=0.02, interrupt=interrupt
    )
    assert (outcome.interrupted, outcome.unknown, outcome.attempts) == (True, True, 1)
    assert (fn.calls, fn.running) == (1, 0)


async def test_an_interrupt_does_not_mark_a_final_failure(rt: Runtime) -> None:
    async def fails() -> None:
        raise ValueError("no")

    interrupt = asyncio.Event()
    interrupt.set()
    outcome = await retry(rt, fails, is_async=True, policy=ONCE, interrupt=interrupt)
    assert (outcome.ok, outcome.interrupted, outcome.attempts) == (False, False, 1)
