"""How late durable timers fire: 1,000 runs sleeping until times spread over 10 s.

    python -m bench.timers [--db URL] [--timers 1000] [--spread 10]

One worker process (``sagaline worker``) executes the runs; each run records the time its
timer was seen due (``sagaline.now()`` after the sleep). Lateness = that time - due time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sagaline import Engine, RunStatus
from tests.scale.sleepy import sleep_until

ROOT = Path(__file__).parents[1]


async def measure(url: str, timers: int, spread: float) -> list[float]:
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sagaline",
            "worker",
            "--db",
            url,
            "--import",
            "tests.scale.sleepy",
            "--concurrency",
            "200",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with Engine(url, worker=False) as client:
            await asyncio.sleep(2.0)
            start = time.time() + 3.0
            gate = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with gate:
                    due = start + random.uniform(0, spread)
                    await client.start(sleep_until, f"t{i}", due, run_id=f"t{i}")

            await asyncio.gather(*(one(i) for i in range(timers)))
            while len(await client.list_runs(RunStatus.COMPLETED, limit=timers + 1)) < timers:
                await asyncio.sleep(0.2)
            return sorted([await client.handle(f"t{i}").result() for i in range(timers)])
    finally:
        worker.terminate()
        worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", default=None)
    parser.add_argument("--timers", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls = args.db or [
            f"sqlite:///{tmp}/timers.db",
            f"postgresql://postgres@127.0.0.1:5432/test?schema=timers_{uuid.uuid4().hex[:8]}",
        ]
        for url in urls:
            late = asyncio.run(measure(url, args.timers, args.spread))
            p50, p99 = late[len(late) // 2], late[int(len(late) * 0.99)]
            name = url.split(":", 1)[0]
            results[name] = {
                "p50_ms": round(p50 * 1000, 1),
                "p99_ms": round(p99 * 1000, 1),
                "max_ms": round(late[-1] * 1000, 1),
            }
            print(
                f"{name:10} {args.timers} timers over {args.spread:g} s: lateness p50 "
                f"{p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {late[-1] * 1000:.1f} ms"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
