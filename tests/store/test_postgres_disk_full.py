"""PostgreSQL on a full disk: a start says so, naming the database, and work resumes once
space is freed.

No real disk is filled: the test's database keeps its tables in a tablespace on a small
private tmpfs (root only; skipped with the reason elsewhere, failed under CI), on the
test's private cluster (``tests/pgcluster.py``). The WAL stays on the cluster's own disk,
so the server keeps running, as it does when a tablespace (not ``pg_wal``) runs out.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from sagaline import Engine, workflow
from sagaline.model.errors import DatabaseUnavailableError, DiskFullError
from tests.chaos.disk import fill, tmpfs
from tests.pgcluster import Cluster

PADDING = "x" * 1500
"""Per run, so that a few runs fill a page and the next start must extend a file."""


@workflow(name="pg_disk_full.noop")
async def noop(key: str) -> str:
    return key[:8]


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A private 2 MB tmpfs the ``postgres`` user owns (a tablespace's folder must be its),
    under a folder it can reach (pytest's own temporary folders are root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="sagaline-ts-"))
    root.chmod(0o755)
    try:
        with tmpfs(root / "disk", size="2m") as disk:
            pw = pwd.getpwnam("postgres")
            os.chown(disk, pw.pw_uid, pw.pw_gid)
            yield disk
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _database_on(cluster: Cluster, disk: Path) -> tuple[str, str]:
    """A fresh database whose new tables go to a tablespace on ``disk``: (URL, name)."""
    url = await cluster.new_database()
    name = url.rsplit("/", 1)[1]
    space = f"ts_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(cluster.url)
    try:
        await conn.execute(f"CREATE TABLESPACE {space} LOCATION '{disk}'")
        # Only the tables: the catalogs stay on the cluster's disk, so connecting still works.
        await conn.execute(f'ALTER DATABASE "{name}" SET default_tablespace = {space}')
    finally:
        await conn.close()
    return url, name


async def _drop(cluster: Cluster, name: str, disk: Path) -> None:
    conn = await asyncpg.connect(cluster.url)
    try:
        space = await conn.fetchval(
            "SELECT spcname FROM pg_tablespace WHERE pg_tablespace_location(oid) = $1", str(disk)
        )
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.execute(f"DROP TABLESPACE {space}")
    finally:
        await conn.close()


async def test_a_start_on_a_full_postgres_disk_names_the_database_and_work_resumes(
    private_postgres: Cluster, small_disk: Path
) -> None:
    url, name = await _database_on(private_postgres, small_disk)
    try:
        async with Engine(url, poll_interval=0.05) as engine:
            assert await (await engine.start(noop, "before", run_id="before")).result() == "before"
            fill(small_disk / "filler")
            refused = None
            for i in range(2000):  # until a start needs a page the tablespace has no room for
                try:
                    await engine.start(noop, PADDING, run_id=f"full-{i}")
                except DiskFullError as exc:
                    refused = (f"full-{i}", exc)
                    break
            assert refused is not None, "2000 starts fitted in a full tablespace"
            run_id, error = refused
            assert isinstance(error, DatabaseUnavailableError)  # worth retrying later
            assert error.code == "disk_full"
            assert name in error.where and name in str(error)
            assert "the disk is full" in str(error) and "free space" in str(error)
            os.unlink(small_disk / "filler")
            assert await engine.store.load_run(run_id) is None  # nothing half-written
            after = await engine.start(noop, "after", run_id="after")  # space is back
            assert await after.result() == "after"
    finally:
        await _drop(private_postgres, name, small_disk)
