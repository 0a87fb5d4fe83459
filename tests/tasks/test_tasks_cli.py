"""``sagaline tasks list``: waiting and claimed tasks with their age, on both stores."""

from __future__ import annotations

import subprocess
import sys
import time

from sagaline import RunStatus
from sagaline.engine.tasks import TaskService
from tests.conftest import MakeEngine
from tests.tasks import sagas
from tests.tasks.test_engine_tasks import eventually


def tasks_list(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagaline.cli", "tasks", "list", "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )


async def test_tasks_list_shows_waiting_then_claimed_tasks(
    make_engine: MakeEngine, store_url: str
) -> None:
    async with make_engine() as engine:
        empty = tasks_list(store_url)
        assert empty.returncode == 0, empty.stderr
        assert "no tasks are waiting or claimed" in empty.stdout
        for order_id in ("t1", "t2"):
            await engine.start(sagas.checkout, sagas.Order(order_id, 5), run_id=order_id)

        async def both_suspended() -> bool:
            runs = [await engine.get_run(r) for r in ("t1", "t2")]
            return all(r.status is RunStatus.SUSPENDED for r in runs)

        await eventually(both_suspended)
        listed = tasks_list(store_url)
        assert listed.returncode == 0, listed.stderr
        assert "2 task(s)" in listed.stdout and listed.stdout.count("waiting") == 2
        tasks = TaskService(lambda: engine.store, engine.codec, time.time)
        claimed = await tasks.claim("payments", "node-7", 1, 5.0)
        assert len(claimed) == 1
        listed = tasks_list(store_url, "--queue", "payments")
        assert "claimed" in listed.stdout and "node-7" in listed.stdout and "left" in listed.stdout
        other = tasks_list(store_url, "--queue", "nobody")
        assert "no tasks are waiting or claimed on queue 'nobody'" in other.stdout


def test_tasks_list_on_a_missing_database_is_a_clear_error(tmp_path: object) -> None:
    done = tasks_list(f"sqlite:///{tmp_path}/missing.db")
    assert done.returncode == 1
    assert "there is no sagaline database" in done.stdout and "Traceback" not in done.stderr
