"""Workflows run by worker processes (``sagaline worker --import tests.scale.lockers``).

Every execution of the step inside a lock appends an ``enter`` and an ``exit`` line to
$LOCKERS_LEDGER (run, key, mode, pid, wall time), so the test can check across processes
and SIGKILLs that no two holders of a key ever overlapped.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import sagaline
from sagaline import RetryPolicy, step, workflow

FAST = RetryPolicy(max_attempts=10, initial=0.02, max_interval=0.2)


def _log(ev: str, run: str, key: str, mode: str) -> None:
    line = {"ev": ev, "run": run, "key": key, "mode": mode, "pid": os.getpid(), "t": time.time()}
    fd = os.open(os.environ["LOCKERS_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


@step(name="lockers.use", retry=FAST)
async def use(run: str, key: str, mode: str, seconds: float) -> None:
    _log("enter", run, key, mode)
    await asyncio.sleep(seconds)
    _log("exit", run, key, mode)


@workflow(name="lockers.contend")
async def contend(run: str, key: str, mode: str, seconds: float) -> str:
    async with sagaline.lock(key, mode="shared" if mode == "shared" else "exclusive"):
        await use(run, key, mode, seconds)
    return run
