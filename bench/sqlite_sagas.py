"""1,000 sequential 4-step order sagas on SQLite against 5,000 bare commits on the same file.

    python -m bench.sqlite_sagas [--sagas 1000] [--commits 5000] [--dir DIR]

Both use the engine's durable default (WAL, synchronous=FULL) on the same file system, in
the same run. A saga needs 6 commits (start, 4 steps, completion); the ratio says how much
the engine costs on top of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.workload import order_saga
from sagaline import Engine


def floor_commits(path: Path, commits: int) -> float:
    """Seconds for ``commits`` single-row INSERT+COMMITs, durable as the engine is."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, data BLOB)")
    started = time.perf_counter()
    for i in range(commits):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO floor (data) VALUES (?)", (f"row-{i}".encode(),))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def sequential_sagas(url: str, sagas: int) -> tuple[float, list[float]]:
    latencies = []
    async with Engine(url) as engine:
        started = time.perf_counter()
        for i in range(sagas):
            t0 = time.perf_counter()
            handle = await engine.start(order_saga, f"o{i}", run_id=f"o{i}")
            await handle.result()
            latencies.append(time.perf_counter() - t0)
        return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        floor_s = floor_commits(Path(tmp) / "floor.db", args.commits)
        saga_s, latencies = asyncio.run(sequential_sagas(f"sqlite:///{tmp}/bench.db", args.sagas))
    latencies.sort()
    commit_ms = floor_s / args.commits * 1000
    saga_ms = saga_s / args.sagas * 1000
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "durability": "WAL, synchronous=FULL",
        "floor_commits": args.commits,
        "floor_seconds": round(floor_s, 3),
        "floor_commits_per_s": round(args.commits / floor_s),
        "sagas": args.sagas,
        "sagas_seconds": round(saga_s, 3),
        "sagas_per_s": round(args.sagas / saga_s, 1),
        "saga_p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "saga_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        "ratio_sagas_time_to_floor_time": round(saga_s / floor_s, 3),
        "saga_in_floor_commits": round(saga_ms / commit_ms, 2),
    }
    print(f"floor   {args.commits} commits    {floor_s:8.3f} s  ({commit_ms:.3f} ms/commit)")
    print(f"engine  {args.sagas} sagas      {saga_s:8.3f} s  ({saga_ms:.3f} ms/saga)")
    print(f"ratio   sagas time / floor time = {saga_s / floor_s:.3f}")
    print(f"        one saga costs {saga_ms / commit_ms:.2f} floor commits (6 are written)")
    print(f"        saga latency p50 {result['saga_p50_ms']} ms, p99 {result['saga_p99_ms']} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
