"""The PostgreSQL server itself restarts mid-run: workers reconnect, runs continue.

The server is a private cluster of the test's own (``tests/pgcluster.py``), stopped with
``-m immediate`` (as a crash would) and started again; the machine's own server is never
touched.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sagaline import Engine, RunStatus
from tests.pgcluster import Cluster
from tests.scale import fleet
from tests.scale.test_workers import DEADLINE, Fleet, all_settled, assert_recorded_once, until


async def server_ready(url: str) -> None:
    """Wait until the restarted server accepts connections again."""
    import asyncpg

    for _ in range(600):
        try:
            conn = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(0.1)
            continue
        await conn.close()
        return
    raise AssertionError("PostgreSQL did not come back within a minute")


@pytest.mark.crash
async def test_server_restart_mid_run(private_postgres: Cluster, tmp_path: Path) -> None:
    url = await private_postgres.new_database()
    f = Fleet(url, tmp_path)
    try:
        workers = [f.spawn("--concurrency", "20") for _ in range(2)]
        async with Engine(url, worker=False) as client:
            ids = [f"r{i:03d}" for i in range(150)]
            for i, run_id in enumerate(ids):
                await client.start(fleet.order, run_id, i % 5 == 0, run_id=run_id)

            async def some_done() -> bool:
                return len([e for e in f.entries() if e["action"] == "ship"]) >= 20

            await until(some_done, "20 sagas shipped")
            shipped = len([e for e in f.entries() if e["action"] == "ship"])
            await asyncio.to_thread(private_postgres.restart_immediately)
            await server_ready(private_postgres.url)
            assert shipped < len(ids)  # the restart did land mid-run
            await until(lambda: all_settled(client, 150), "all sagas settled", DEADLINE)
            for i, run_id in enumerate(ids):
                run = await client.get_run(run_id)
                want = RunStatus.COMPENSATED if i % 5 == 0 else RunStatus.COMPLETED
                assert run.status is want, (run_id, run.status, run.error)
            await assert_recorded_once(client, ids)
        assert all(w.poll() is None for w in workers)  # no worker exited
    finally:
        f.stop_all()
        await asyncio.sleep(0)
