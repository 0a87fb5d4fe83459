"""The chaos saga, run by ``sagaline worker --import tests.chaos.saga`` processes.

Four steps, each with a compensation; a plan says whether the saga fails (at which step)
and how long each step takes. Every step and compensation appends one line when it begins
and one when it ends to the ledger named by $CHAOS_LEDGER, and the workflow appends an
``ack`` line after each step returns. The ledger is the oracle's own record, written with
``O_APPEND`` (one ``write`` per line, so lines from several processes never interleave)
and never read by sagaline.

An ``ack`` means more than "the step returned": the engine hands a step's result to the
workflow only after its checkpoint has committed, so an ack proves the step is recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from sagaline import NonRetryable, RetryPolicy, step, step_info, workflow

STEPS = 4
QUICK = RetryPolicy(max_attempts=20, initial=0.02, max_interval=0.5)
_fd: list[int] = []


@dataclass
class Plan:
    run: str
    fail_at: int = -1
    """The step that fails for good (NonRetryable), or -1: the saga completes."""
    seconds: float = 0.02
    """How long each step takes: the window in which a fault finds it mid-execution."""
    think: float = 0.0
    """How long the workflow's own code takes between two steps (a plain asyncio sleep):
    the window in which a fault finds a run between steps, its last step recorded."""


class PlannedFailure(NonRetryable):
    pass


def append(fd: int, line: dict[str, Any]) -> None:
    """One ledger line: a single ``write`` on an ``O_APPEND`` descriptor."""
    os.write(fd, (json.dumps(line) + "\n").encode())


def open_ledger(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def record(line: dict[str, Any]) -> None:
    if not _fd:
        _fd.append(open_ledger(os.environ["CHAOS_LEDGER"]))
    append(_fd[0], line)


def _line(plan: Plan, act: str, ev: str, **extra: Any) -> None:
    info = step_info()
    record(
        {
            "run": plan.run,
            "act": act,
            "ev": ev,
            "attempt": info.attempt,
            "pid": os.getpid(),
            "t": time.time(),
            **extra,
        }
    )


async def _forward(plan: Plan, index: int) -> int:
    act = f"s{index}"
    _line(plan, act, "begin")
    await asyncio.sleep(plan.seconds)
    failing = plan.fail_at == index
    _line(plan, act, "end", ok=not failing)
    if failing:
        raise PlannedFailure(f"step {index} fails by plan")
    return os.getpid()


async def _undo(plan: Plan, index: int) -> None:
    act = f"u{index}"
    _line(plan, act, "begin")
    await asyncio.sleep(plan.seconds / 2)
    _line(plan, act, "end", ok=True)


@step(name="chaos.s0", retry=QUICK)
async def s0(plan: Plan) -> int:
    return await _forward(plan, 0)


@s0.compensate(retry=QUICK)
async def u0(plan: Plan, pid: int) -> None:
    await _undo(plan, 0)


@step(name="chaos.s1", retry=QUICK)
async def s1(plan: Plan) -> int:
    return await _forward(plan, 1)


@s1.compensate(retry=QUICK)
async def u1(plan: Plan, pid: int) -> None:
    await _undo(plan, 1)


@step(name="chaos.s2", retry=QUICK)
async def s2(plan: Plan) -> int:
    return await _forward(plan, 2)


@s2.compensate(retry=QUICK)
async def u2(plan: Plan, pid: int) -> None:
    await _undo(plan, 2)


@step(name="chaos.s3", retry=QUICK)
async def s3(plan: Plan) -> int:
    return await _forward(plan, 3)


@s3.compensate(retry=QUICK)
async def u3(plan: Plan, pid: int) -> None:
    await _undo(plan, 3)


@workflow(name="chaos.saga")
async def saga(plan: Plan) -> list[int]:
    """The pid that ran each step, as recorded."""
    pids = []
    for index, forward in enumerate((s0, s1, s2, s3)):
        pids.append(await forward(plan))
        ack = {"run": plan.run, "act": f"s{index}", "ev": "ack", "pid": os.getpid()}
        record({**ack, "t": time.time()})
        if plan.think:
            await asyncio.sleep(plan.think)
    return pids
