"""A worker told to stop (SIGTERM) lets a run finish the step it is in, then hands it over:
the step is recorded once and not run again by the worker that resumes the run."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from sagaline import Engine
from tests.scale import fleet
from tests.scale.test_workers import Fleet, until


@pytest.mark.crash
async def test_sigterm_drains_the_current_step_then_another_worker_resumes(
    store_url: str, tmp_path: Path
) -> None:
    f = Fleet(store_url, tmp_path)
    try:
        first = f.spawn("--drain-seconds", "30")
        async with Engine(store_url, worker=False) as client:
            await client.start(fleet.drainable, "d1", run_id="d1")

            async def slow_begun() -> bool:
                return any(e["action"] == "slow-begin" for e in f.entries())

            await until(slow_begun, "the slow step to begin")
            first.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(first.wait, 60) == 0  # it exits cleanly, after the step
            second = f.spawn()
            run = await client.wait("d1", timeout=60)
            assert run.status.value == "COMPLETED"
            # The first worker finished and recorded the slow step; the second ran the next.
            assert await client.handle("d1").result() == [first.pid, second.pid]
            steps = await client.steps("d1")
            assert [s.attempts for s in steps] == [1, 1]
        assert [e["action"] for e in f.entries()] == ["slow-begin", "slow", "after"]
    finally:
        f.stop_all()
