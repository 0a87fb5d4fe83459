"""The running counts by status (``run_counts``, kept by triggers) stay equal to a scan of
the runs through starts, completions, compensations, cancels, waits and retries."""

from __future__ import annotations

import asyncio

from sagaline import Engine, RunStatus
from sagaline.store.protocol import RunQuery
from tests.locks import sagas as s

DEADLINE = 30.0


async def settle(engine: Engine, run_ids: list[str], *statuses: RunStatus) -> None:
    async def check() -> None:
        while True:
            runs = [await engine.get_run(r) for r in run_ids]
            if all(run.status in statuses for run in runs):
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(check(), DEADLINE)


async def agree(engine: Engine) -> dict[RunStatus, int]:
    fast = await engine.store.count_runs(RunQuery())
    scanned = await engine.store.count_runs(RunQuery(created_after=0.0))  # the scan path
    assert fast == scanned
    for workflow in ("l.quick", "l.hold", "l.hold_then_fail", "nothing"):
        assert await engine.store.count_runs(RunQuery(workflow=workflow)) == (
            await engine.store.count_runs(RunQuery(workflow=workflow, created_after=0.0))
        )
    return fast


async def test_counts_follow_every_transition(engine: Engine) -> None:
    assert await agree(engine) == {}
    quick = [f"q{i}" for i in range(5)]
    for run_id in quick:
        await engine.start(s.quick, run_id, f"k:{run_id}", None, run_id=run_id)
    await settle(engine, quick, RunStatus.COMPLETED)
    for run_id in ("h1", "h2"):
        await engine.start(s.hold, run_id, f"k:{run_id}", "exclusive", run_id=run_id)
    await engine.start(s.hold_then_fail, "f1", "k:f1", run_id="f1")
    await settle(engine, ["h1", "h2", "f1"], RunStatus.SUSPENDED)
    assert await agree(engine) == {RunStatus.COMPLETED: 5, RunStatus.SUSPENDED: 3}
    await engine.cancel("h1")
    await engine.signal("f1", "go")
    await settle(engine, ["h1"], RunStatus.CANCELLED)
    await settle(engine, ["f1"], RunStatus.COMPENSATED)
    assert await agree(engine) == {
        RunStatus.COMPLETED: 5,
        RunStatus.SUSPENDED: 1,
        RunStatus.CANCELLED: 1,
        RunStatus.COMPENSATED: 1,
    }
    await engine.start(s.quick, "q0", "k:q0", None, run_id="q0")  # idempotent: not counted
    assert (await agree(engine))[RunStatus.COMPLETED] == 5
