"""Many processes opening a new ``?schema=`` at once: each open is safe, none fails."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from sagaline import Engine

OPEN = """
import asyncio, sys, time
from sagaline import Engine
async def main() -> None:
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all open at the same instant
    async with Engine(sys.argv[1], worker=False) as engine:
        await engine.list_runs()
asyncio.run(main())
"""


async def test_workers_opening_a_new_schema_at_once_all_succeed(postgres_url: str) -> None:
    at = str(time.time() + 3.0)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", OPEN, postgres_url, at, stderr=subprocess.PIPE
        )
        for _ in range(8)
    ]
    results = await asyncio.gather(*(p.communicate() for p in procs))
    errors = [err.decode() for (_, err), p in zip(results, procs, strict=True) if p.returncode]
    assert errors == []
    async with Engine(postgres_url, worker=False) as engine:
        assert await engine.list_runs() == []
