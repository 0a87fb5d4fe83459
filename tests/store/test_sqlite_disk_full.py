"""SQLite on a full disk: a write says so, naming the file; reading writes nothing.

The full-disk tests mount a private tmpfs (root only; skipped with the reason elsewhere,
failed under CI) and fill it to the brim; ``tests/chaos/test_disk_full.py`` does the same
under a running worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagaline import Engine, workflow
from sagaline.model.errors import DatabaseUnavailableError, DiskFullError
from tests.chaos.disk import fill, tmpfs


@workflow(name="disk_full.noop")
async def noop(key: str) -> str:
    return key


async def _make(url: str, runs: int) -> None:
    async with Engine(url) as engine:
        for i in range(runs):
            assert await (await engine.start(noop, f"k{i}", run_id=f"r{i}")).result() == f"k{i}"


async def _read(url: str) -> int:
    async with Engine(url, worker=False, create=False) as engine:
        runs = await engine.list_runs(None, 100)
        for run in runs:
            await engine.get_run(run.run_id)
            await engine.history(run.run_id)
            await engine.steps(run.run_id)
        return len(runs)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


async def test_a_reading_open_leaves_the_file_byte_identical(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    await _make(url, 3)
    before = _files(tmp_path)
    assert await _read(url) == 3
    assert _files(tmp_path) == before  # not a byte of the file, and no file left behind


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A private 4 MB tmpfs, unmounted after."""
    with tmpfs(tmp_path / "disk", size="4m") as disk:
        yield disk


async def test_a_start_on_a_full_disk_names_the_file_and_the_cause(full_disk: Path) -> None:
    path = full_disk / "full.db"
    url = f"sqlite:///{path}"
    async with Engine(url, worker=False) as engine:
        await engine.start(noop, "before", run_id="before")
        fill(full_disk / "filler")
        with pytest.raises(DiskFullError) as caught:
            await engine.start(noop, "while full", run_id="while-full")
        assert isinstance(caught.value, DatabaseUnavailableError)  # worth retrying later
        assert caught.value.code == "disk_full"
        assert str(path) in str(caught.value) and "the disk is full" in str(caught.value)
        assert "free space" in str(caught.value)
        os.unlink(full_disk / "filler")
        assert await engine.store.load_run("while-full") is None  # nothing half-written
        await engine.start(noop, "after", run_id="after")  # space is back: so is writing
        assert await engine.store.load_run("after") is not None


async def test_reading_works_on_a_full_disk_with_no_process_holding_the_file(
    full_disk: Path,
) -> None:
    url = f"sqlite:///{full_disk / 'alone.db'}"
    await _make(url, 3)  # closed cleanly: no shared-memory file left to read through
    fill(full_disk / "filler")
    before = _files(full_disk)
    assert await _read(url) == 3
    assert _files(full_disk) == before
