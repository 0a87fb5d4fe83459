"""The PostgreSQL server itself restarts mid-run: workers reconnect, runs continue.

Restarts the local cluster with ``pg_ctlcluster`` (Debian's tool), as an operator would.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sagaline import Engine, RunStatus
from tests.conftest import missing_service
from tests.scale import fleet
from tests.scale.test_workers import DEADLINE, Fleet, all_settled, assert_recorded_once, until


def restart_command() -> list[str]:
    tool = shutil.which("pg_ctlcluster")
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if tool is None or not versions:
        missing_service("restarting PostgreSQL needs Debian's pg_ctlcluster and a local cluster")
    return [tool, "--skip-systemctl-redirect", versions[-1], "main", "restart"]


async def server_ready() -> None:
    """Wait until the restarted server accepts connections again."""
    import asyncpg

    from tests.conftest import POSTGRES_URL

    for _ in range(600):
        try:
            conn = await asyncpg.connect(POSTGRES_URL, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(0.1)
            continue
        await conn.close()
        return
    raise AssertionError("PostgreSQL did not come back within a minute")


@pytest.mark.crash
async def test_server_restart_mid_run(postgres_url: str, tmp_path: Path) -> None:
    command = restart_command()
    f = Fleet(postgres_url, tmp_path)
    try:
        workers = [f.spawn("--concurrency", "20") for _ in range(2)]
        async with Engine(postgres_url, worker=False) as client:
            ids = [f"r{i:03d}" for i in range(150)]
            for i, run_id in enumerate(ids):
                await client.start(fleet.order, run_id, i % 5 == 0, run_id=run_id)

            async def some_done() -> bool:
                return len([e for e in f.entries() if e["action"] == "ship"]) >= 20

            await until(some_done, "20 sagas shipped")
            shipped = len([e for e in f.entries() if e["action"] == "ship"])
            await asyncio.to_thread(subprocess.run, command, check=True, timeout=120)
            await server_ready()
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
