"""Sagas/s of the 4-step order saga with 1, 2 and 4 worker processes on PostgreSQL, next to
the server's raw single-row INSERT+COMMIT rate (1 and 16 connections) in the same run.

    python -m bench.pg_scaleout [--url postgresql://postgres@127.0.0.1:5432/test]
                                [--sagas 2000] [--workers 1 2 4] [--json FILE]

Each worker count gets a fresh schema. Workers are real ``sagaline worker`` processes;
the client starts every saga (64 starts in flight) and the clock runs from the first start
to the last completion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.workload import order_saga
from sagaline import Engine

ROOT = Path(__file__).parents[1]
WORKER = [sys.executable, "-m", "sagaline", "worker"]


async def floor(url: str, connections: int, seconds: float = 3.0) -> float:
    """Single-row INSERT+COMMIT per second over ``connections`` connections."""
    setup = await asyncpg.connect(url)
    await setup.execute("DROP TABLE IF EXISTS bench_floor")
    await setup.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, data bytea)")
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    done = 0
    end = time.perf_counter() + seconds

    async def writer(conn: asyncpg.Connection) -> None:
        nonlocal done
        while time.perf_counter() < end:
            await conn.execute("INSERT INTO bench_floor (data) VALUES ($1)", b"x" * 64)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(c) for c in conns))
    rate = done / (time.perf_counter() - started)
    for conn in conns:
        await conn.close()
    await setup.execute("DROP TABLE bench_floor")
    await setup.close()
    return rate


async def completed(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'COMPLETED'"))
    finally:
        await conn.close()


async def scale(url: str, workers: int, sagas: int) -> float:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    db = f"{url}?schema={schema}"
    async with Engine(db, worker=False) as client:
        procs = [
            subprocess.Popen(
                [*WORKER, "--db", db, "--import", "bench.workload", "--concurrency", "100"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        try:
            await asyncio.sleep(2.0)  # let every worker import, connect and listen
            gate = asyncio.Semaphore(64)

            async def start(i: int) -> None:
                async with gate:
                    await client.start(order_saga, f"o{i}", run_id=f"o{i}")

            started = time.perf_counter()
            await asyncio.gather(*(start(i) for i in range(sagas)))
            while await completed(url, schema) < sagas:
                await asyncio.sleep(0.05)
            return sagas / (time.perf_counter() - started)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait()
            conn = await asyncpg.connect(url)
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # generated name: hex only
            await conn.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    floor_1 = await floor(args.url, 1)
    floor_16 = await floor(args.url, 16)
    print(f"floor  INSERT+COMMIT  1 connection  {floor_1:8.0f}/s")
    print(f"floor  INSERT+COMMIT 16 connections {floor_16:8.0f}/s")
    rows = {}
    for n in args.workers:
        rate = await scale(args.url, n, args.sagas)
        rows[n] = rate
        print(
            f"{n} worker(s)  {rate:8.1f} sagas/s   = {rate / floor_16:.3f} x floor(16)"
            f"   = {rate * 6 / floor_16:.2f} x floor(16) / 6"
        )
    base = rows[args.workers[0]]
    for n, rate in rows.items():
        print(f"speed-up with {n} worker(s): {rate / base:.2f}")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "server": args.url.split("@")[-1],
        "durability": "PostgreSQL defaults (fsync on, synchronous_commit on)",
        "sagas": args.sagas,
        "floor_insert_commit_per_s_1_conn": round(floor_1),
        "floor_insert_commit_per_s_16_conn": round(floor_16),
        "sagas_per_s_by_workers": {str(k): round(v, 1) for k, v in rows.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
