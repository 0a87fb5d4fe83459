"""Waiting in tests for a run to reach a status: a condition under a deadline, never a
fixed sleep."""

from __future__ import annotations

import asyncio
import time

from sagaline.engine.engine import Engine
from sagaline.model.errors import RunNotFoundError
from sagaline.model.records import RunRecord
from sagaline.model.status import RunStatus


async def wait_for_status(
    engine: Engine, run_id: str, *statuses: RunStatus, timeout: float = 30.0
) -> RunRecord:
    """The run once its status is one of ``statuses`` (a run not created yet is waited
    for too). Raises ``TimeoutError`` saying the status it had, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: RunStatus | None = None
    while True:
        try:
            run = await engine.get_run(run_id)
        except RunNotFoundError:
            pass
        else:
            if run.status in statuses:
                return run
            last = run.status
        if time.monotonic() > deadline:
            wanted = " or ".join(s.value for s in statuses)
            had = last.value if last is not None else "no such run"
            raise TimeoutError(f"run {run_id!r} did not reach {wanted} in {timeout:g} s ({had})")
        await asyncio.sleep(0.01)
