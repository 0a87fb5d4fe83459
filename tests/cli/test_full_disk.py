"""Reading commands on a full disk: they work, and write not a byte.

The disk is a private tmpfs (root only; skipped with the reason elsewhere, failed under
CI), filled to the brim after the databases were made and closed, so no process holds
them open: the case where SQLite has no shared-memory index to read through and no room
to make one. ``tests/chaos/test_disk_full.py`` covers ``runs list`` under a live worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagaline import Engine, RunFailedError
from sagaline.store.sqlite.tracker import SqliteTrackerStore
from tests.chaos.disk import fill, tmpfs
from tests.cli.test_cli import sagaline
from tests.engine import sagas
from tests.engine.sagas import Plan


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A full tmpfs holding a store (a completed and a parked run) and a tracker's file."""
    with tmpfs(tmp_path / "disk", size="4m") as disk:
        asyncio.run(_make(disk))
        fill(disk / "filler")
        yield disk


async def _make(disk: Path) -> None:
    async with Engine(f"sqlite:///{disk / 'store.db'}") as engine:
        await (await engine.start(sagas.order, Plan("ok"), run_id="ok")).result()
        bad = Plan("bad", fail_charge=True, fail_release=99)
        with contextlib.suppress(RunFailedError):
            await (await engine.start(sagas.order, bad, run_id="bad")).result()
    tracker = SqliteTrackerStore(f"sqlite:///{disk / 'tracker.db'}")
    await tracker.open(create=True)
    await tracker.aclose()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "filler"}


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in out, out
    return out


def test_reading_commands_work_on_a_full_disk_and_write_nothing(full_disk: Path) -> None:
    store = f"sqlite:///{full_disk / 'store.db'}"
    tracker = f"sqlite:///{full_disk / 'tracker.db'}"
    before = _files(full_disk)
    assert "2 run(s)" in _ok(sagaline("runs", "list", "--db", store, check=False))
    assert "COMPENSATION_FAILED" in _ok(sagaline("runs", "show", "bad", "--db", store, check=False))
    assert "0 saga(s)" in _ok(sagaline("sagas", "list", "--db", tracker, check=False))
    assert ": ok" in _ok(sagaline("db", "check", "--db", store, check=False))
    assert _files(full_disk) == before


def test_a_write_on_a_full_disk_is_a_one_line_error_naming_the_file(full_disk: Path) -> None:
    store = full_disk / "store.db"
    done = sagaline("runs", "retry", "bad", "--db", f"sqlite:///{store}", check=False)
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1 and "Traceback" not in out, out
    assert str(store) in out and "the disk is full" in out and "free space" in out
