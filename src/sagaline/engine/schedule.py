"""Cron schedules: one run per period, across all workers, by idempotent start.

Every worker computes the latest period that is due and starts a run whose id names the
workflow and the period (``name@2026-11-21T22:35Z``); the store's idempotent start lets
exactly one of them create it. Missed periods (no worker was running) are not replayed one
by one: the most recent one is started once, then the schedule goes on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sagaline.engine.registry import WorkflowDef, scheduled_workflows
from sagaline.engine.runtime import Runtime
from sagaline.model.records import NewRun

log = logging.getLogger("sagaline.schedule")


def period_run_id(wf: WorkflowDef[Any, Any], period: datetime) -> str:
    return f"{wf.name}@{period.strftime('%Y-%m-%dT%H:%MZ')}"


class Scheduler:
    def __init__(self, rt: Runtime, queues: list[str]) -> None:
        self.rt = rt
        self.queues = queues
        self._started: dict[str, datetime] = {}

    def _mine(self) -> list[WorkflowDef[Any, Any]]:
        return [w for w in scheduled_workflows() if w.queue in self.queues]

    async def start_due(self) -> None:
        now = datetime.fromtimestamp(self.rt.clock(), UTC)
        for wf in self._mine():
            assert wf.schedule is not None
            period = wf.schedule.previous(now)
            if period is None or self._started.get(wf.name) == period:
                continue
            data = wf.signature.encode_args(self.rt.codec, wf.signature.bind((), {}))
            run = NewRun(period_run_id(wf, period), wf.name, data, wf.queue, self.rt.clock())
            [(_, created)] = await self.rt.store.create_runs([(run, None)], self.rt.lease_seconds)
            if created:
                log.info("started %s for the period %s", run.run_id, period.isoformat())
            self._started[wf.name] = period

    def next_due(self) -> float | None:
        now = datetime.fromtimestamp(self.rt.clock(), UTC)
        times = [w.schedule.next(now) for w in self._mine() if w.schedule is not None]
        found = [t.timestamp() for t in times if t is not None]
        return min(found) if found else None
