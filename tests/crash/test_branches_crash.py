"""Parallel branches of several steps, sleeps and a child, killed with SIGKILL at a commit
boundary and resumed by another process: the run completes with the first run's results,
every step recorded once, none run more than once more than the crash could cause."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sagaline import Engine, RunStatus

pytestmark = pytest.mark.crash

CHILD = Path(__file__).with_name("branches.py")
DEADLINE = 60.0
EXPECTED = ["done-a1", "done-a2", "done-b1", "done-b-kid", "done-b2", "done-end"]


def _spawn(db: str, ledger: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRASH_LEDGER": str(ledger)}
    return subprocess.Popen([sys.executable, str(CHILD), db, *extra], env=env)


@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
@pytest.mark.parametrize("commit", [2, 3, 5, 7])
async def test_branches_resume_after_a_kill_at_any_commit(
    commit: int, before: bool, store_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    kill = ["--kill-commit", str(commit), *(["--before"] if before else [])]
    first = _spawn(store_url, ledger, "--start", "b1", *kill).wait(timeout=DEADLINE)
    assert first == -signal.SIGKILL
    assert _spawn(store_url, ledger).wait(timeout=DEADLINE) == 0
    async with Engine(store_url, worker=False) as engine:
        run = await engine.get_run("b1")
        assert run.status is RunStatus.COMPLETED, run.error
        assert await engine.handle("b1").result() == EXPECTED
        steps = await engine.steps("b1")
    assert len({(s.branch, s.seq) for s in steps}) == len(steps)
    runs = Counter(json.loads(line)["action"] for line in ledger.read_text().splitlines())
    assert set(runs) == {"a1", "a2", "b1", "b-kid", "b2", "end"}
    assert all(n <= 2 for n in runs.values()), runs  # at most the one in flight re-ran
    assert sum(runs.values()) <= 6 + 2  # one crash: at most the steps in flight then
