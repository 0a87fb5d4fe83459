"""A damaged SQLite file: garbage written over a real page of a real database.

Each test makes a database the ordinary way, closes it, and overwrites one b-tree page of
a table (found with ``dbstat``) as a failing disk or a stray write would. Then: reading it
raises :class:`DatabaseCorruptError` naming the file; a worker parks the run whose
checkpoints land on that page instead of running its step again every lease; and
``sagaline db check`` reports it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sagaline import Engine, RunFailedError, RunStatus, step, workflow
from sagaline.model.errors import DatabaseCorruptError
from tests.cli.test_cli import sagaline

SETTLE = 60.0
EXECUTED: list[str] = []


@step(name="damage.book")
async def book(key: str) -> str:
    EXECUTED.append(key)
    return f"booked {key} " + "x" * 200  # rows big enough to span many pages


@workflow(name="damage.booking")
async def booking(key: str) -> str:
    return await book(key)


async def _make(path: Path, runs: int = 120) -> None:
    async with Engine(f"sqlite:///{path}") as engine:
        handles = [await engine.start(booking, f"a{i:03}", run_id=f"a{i:03}") for i in range(runs)]
        await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), SETTLE)


def _damage(path: Path, table: str, which: str = "last") -> int:
    """Write garbage over a leaf page of ``table``'s b-tree (the last, or the first, in key
    order); the page's number."""
    conn = sqlite3.connect(path)
    try:
        leaves = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
            (table,),
        ).fetchall()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    assert len(leaves) > 2, f"{table} should span several pages"
    page = leaves[-1 if which == "last" else 0][0]
    with path.open("r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(bytes((i * 37 + 11) % 251 for i in range(page_size)))
    return int(page)


async def test_reading_a_damaged_page_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    await _make(path)
    _damage(path, "steps", "first")
    async with Engine(f"sqlite:///{path}", worker=False, create=False) as engine:
        with pytest.raises(DatabaseCorruptError) as caught:
            await engine.steps("a000")
    message = str(caught.value)
    assert caught.value.code == "database_corrupt"
    assert str(path) in message and "damaged" in message and "malformed" in message
    assert "sagaline db check" in message and "backup" in message


async def test_a_run_whose_steps_land_on_a_damaged_page_is_parked_not_run_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    await _make(path)
    _damage(path, "steps", "last")  # where the steps of "z…", last in key order, go
    EXECUTED.clear()
    async with Engine(f"sqlite:///{path}", lease_seconds=1.0, poll_interval=0.05) as engine:
        handle = await engine.start(booking, "zz", run_id="zz")
        with pytest.raises(RunFailedError) as caught:
            await asyncio.wait_for(handle.result(), SETTLE)
        assert caught.value.status is RunStatus.BLOCKED
        message = caught.value.cause.get("message", "")
        assert "malformed" in message and str(path) in message, message
        await asyncio.sleep(3.0)  # three leases: a run left to its lease would run again
    assert EXECUTED == ["zz"]  # the step ran once: its checkpoint was tried, not the step


def test_db_check_says_ok_then_lists_the_damage(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    asyncio.run(_make(path, runs=60))
    url = f"sqlite:///{path}"
    sound = sagaline("db", "check", "--db", url)
    assert sound.returncode == 0 and f"{url}: ok" in sound.stdout
    before = path.read_bytes()
    _damage(path, "events", "first")
    damaged = path.read_bytes()
    found = sagaline("db", "check", "--db", url, check=False)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "problem(s)" in found.stdout and "Traceback" not in found.stdout + found.stderr
    assert "events" in found.stdout  # the damaged table is named
    assert "restore the database from a backup" in found.stdout
    assert path.read_bytes() == damaged != before  # the check wrote nothing


def test_db_check_refuses_what_is_not_a_database(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("my notes\n" * 100)
    done = sagaline("db", "check", "--db", f"sqlite:///{notes}", check=False)
    assert done.returncode == 1 and "is not a SQLite database" in done.stdout
    missing = sagaline("db", "check", "--db", f"sqlite:///{tmp_path / 'none.db'}", check=False)
    assert missing.returncode == 1 and "there is no sagaline database" in missing.stdout
    assert not (tmp_path / "none.db").exists()


def test_db_check_on_postgres(postgres_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "sagaline.cli", "db", "migrate", "--db", postgres_url],
        check=True,
        capture_output=True,
    )
    done = sagaline("db", "check", "--db", postgres_url, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith(": ok")
