"""Sleeping workflows for worker processes (``--import tests.scale.sleepy``)."""

from __future__ import annotations

import json
import os

import sagaline
from sagaline import step, workflow


@step(name="sleepy.mark")
async def mark(run: str, what: str) -> None:
    path = os.environ.get("FLEET_LEDGER")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"run": run, "action": what, "pid": os.getpid()}) + "\n")


@workflow(name="sleepy.until")
async def sleep_until(run: str, until: float) -> float:
    """Sleep until the absolute time ``until``; return how late the wake-up was."""
    await mark(run, "before")
    await sagaline.sleep(max(0.0, until - sagaline.now().timestamp()))
    woke = sagaline.now().timestamp()
    await mark(run, "after")
    return woke - until
