"""asyncpg against psycopg 3 (async) on the operations a store does most.

    python -m bench.pg_drivers [--url postgresql://postgres@127.0.0.1:5432/test] [-n 3000]

Single-row INSERT in its own transaction, and point reads by primary key, one connection,
sequential: the per-call cost of each driver on the same server in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
import psycopg

DDL = "CREATE TABLE bench_drv (id bigserial PRIMARY KEY, run_id text, data bytea)"


async def with_asyncpg(url: str, n: int) -> tuple[float, float]:
    conn = await asyncpg.connect(url)
    await conn.execute("DROP TABLE IF EXISTS bench_drv")
    await conn.execute(DDL)
    started = time.perf_counter()
    for i in range(n):
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO bench_drv (run_id, data) VALUES ($1, $2)", f"r{i}", b"x"
            )
    writes = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n):
        await conn.fetchrow("SELECT * FROM bench_drv WHERE id = $1", i + 1)
    reads = time.perf_counter() - started
    await conn.execute("DROP TABLE bench_drv")
    await conn.close()
    return writes, reads


async def with_psycopg(url: str, n: int) -> tuple[float, float]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute("DROP TABLE IF EXISTS bench_drv")
    await conn.execute(DDL)
    started = time.perf_counter()
    for i in range(n):
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO bench_drv (run_id, data) VALUES (%s, %s)", (f"r{i}", b"x")
            )
    writes = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n):
        cur = await conn.execute("SELECT * FROM bench_drv WHERE id = %s", (i + 1,))
        await cur.fetchone()
    reads = time.perf_counter() - started
    await conn.execute("DROP TABLE bench_drv")
    await conn.close()
    return writes, reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args()
    for _ in range(2):
        for name, fn in (("asyncpg", with_asyncpg), ("psycopg", with_psycopg)):
            writes, reads = asyncio.run(fn(args.url, args.n))
            print(
                f"{name:8} insert+commit {args.n / writes:7.0f}/s ({writes / args.n * 1e3:.3f} ms)"
                f"   point read {args.n / reads:7.0f}/s ({reads / args.n * 1e3:.3f} ms)"
            )


if __name__ == "__main__":
    main()
