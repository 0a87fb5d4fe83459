"""A worker process running parallel branches of several steps, for the crash tests.

    python branches.py DB_URL [--start RUN_ID] [--kill-commit N [--before]]

Branch a: step, durable sleep, step; branch b: step, child workflow, step; then one more
step. Each real execution is appended to CRASH_LEDGER, so a test counts executions across
the processes it kills and restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

import sagaline
from sagaline import Engine, RetryPolicy, step, workflow
from sagaline.store import open_store
from sagaline.testing import CrashingStore

LEDGER = Path(os.environ.get("CRASH_LEDGER", "ledger.jsonl"))
FAST = RetryPolicy(max_attempts=3, initial=0.01, max_interval=0.05)


@step(name="cb.work", retry=FAST)
async def work(key: str) -> str:
    with LEDGER.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"action": key, "pid": os.getpid()}) + "\n")
    return f"done-{key}"


@workflow(name="cb.kid")
async def kid(key: str) -> str:
    return await work(key)


async def _a() -> list[str]:
    first = await work("a1")
    await sagaline.sleep(0.05)
    return [first, await work("a2")]


async def _b() -> list[str]:
    first = await work("b1")
    child = await sagaline.start_child(kid, "b-kid")
    return [first, await child.result(), await work("b2")]


@workflow(name="cb.branches")
async def branches() -> list[str]:
    a, b = await asyncio.gather(_a(), _b())
    return [*a, *b, await work("end")]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--start")
    parser.add_argument("--kill-commit", type=int)
    parser.add_argument("--before", action="store_true")
    args = parser.parse_args()
    store = open_store(args.db)
    if args.kill_commit:
        store = CrashingStore(store, args.kill_commit, before=args.before).as_store()
    async with Engine(store=store, poll_interval=0.05) as engine:
        if args.start:
            await engine.start(branches, run_id=args.start)
        while True:
            runs = await engine.list_runs()
            if runs and all(run.status.is_settled for run in runs):
                return
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
