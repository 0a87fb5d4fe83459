"""A run's trace survives its worker: a worker process SIGKILLed mid-run (after a step's
commit), another resuming it; the resumed execution's spans are in the first one's trace,
under the span the run was started in (its stored ``traceparent``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sagaline import Engine, RunStatus

pytestmark = pytest.mark.crash

ROOT = Path(__file__).parents[2]
DEADLINE = 60.0


def spawn(db: str, spans: Path, *extra: str) -> subprocess.Popen[bytes]:
    child = [sys.executable, "-m", "tests.observe.child", db, str(spans), *extra]
    return subprocess.Popen(child, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


async def test_the_resumed_run_continues_the_killed_workers_trace(
    store_url: str, tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    # Commit 1 records obs.create, commit 2 obs.reserve: killed just after the second.
    first = spawn(store_url, spans_file, "--start", "o-kill", "ok-kill", "--kill-commit", "2")
    assert first.wait(timeout=DEADLINE) == -signal.SIGKILL
    assert spawn(store_url, spans_file).wait(timeout=DEADLINE) == 0
    async with Engine(store_url, worker=False, metrics=False, tracing=False) as engine:
        assert (await engine.get_run("o-kill")).status is RunStatus.COMPLETED

    spans: list[dict[str, Any]] = [json.loads(line) for line in spans_file.read_text().splitlines()]
    pids = sorted({s["pid"] for s in spans}, key=[s["pid"] for s in spans].index)
    assert len(pids) == 2
    (caller,) = [s for s in spans if s["name"] == "start order"]
    assert {s["trace_id"] for s in spans} == {caller["trace_id"]}  # one trace, two processes

    def names(pid: int) -> list[str]:
        return [s["name"] for s in spans if s["pid"] == pid]

    # The killed worker's run span never ended (never exported); its steps did.
    assert names(pids[0]) == ["start order", "step obs.create", "step obs.reserve"]
    assert names(pids[1]) == ["step obs.charge", "run obs.order"]
    (resumed,) = [s for s in spans if s["name"] == "run obs.order"]
    assert resumed["parent_id"] == caller["span_id"]  # read back from the run's row
    assert resumed["attributes"]["sagaline.attempt"] == 2
    assert resumed["attributes"]["sagaline.outcome"] == "COMPLETED"
    (charge,) = [s for s in spans if s["name"] == "step obs.charge"]
    assert charge["parent_id"] == resumed["span_id"]
    first_steps = [s for s in spans if s["pid"] == pids[0] and s["name"].startswith("step")]
    assert len({s["parent_id"] for s in first_steps}) == 1  # the killed execution's span
    assert first_steps[0]["parent_id"] != caller["span_id"]
