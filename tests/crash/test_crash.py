"""Crash tests: a real worker process is killed with SIGKILL at each checkpoint boundary,
restarted, and the run must end right with every step recorded exactly once, and every
needed compensation run at least once, in reverse order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sagaline import Engine, RunStatus

pytestmark = pytest.mark.crash

CHILD = Path(__file__).with_name("child.py")
DEADLINE = 60.0


@dataclass
class Scenario:
    name: str
    plan: dict[str, object]
    final: RunStatus
    counts: dict[str, int]
    """How often each action really ran; a completed step must never run again."""
    kill_commit: int | None = None
    before: bool = False
    kills: int = 1
    compensations: list[str] = field(default_factory=list)


HAPPY = ["create_order", "reserve", "charge", "ship"]
SCENARIOS = [
    Scenario(
        "inside a step, before its commit",
        {"kill_in": ["charge"]},
        RunStatus.COMPLETED,
        {"create_order": 1, "reserve": 1, "charge": 2, "ship": 1},
    ),
    Scenario(
        "just before a step's commit lands",
        {},
        RunStatus.COMPLETED,
        {"create_order": 1, "reserve": 1, "charge": 2, "ship": 1},
        kill_commit=3,
        before=True,
    ),
    Scenario(
        "just after a step's commit",
        {},
        RunStatus.COMPLETED,
        {"create_order": 1, "reserve": 1, "charge": 1, "ship": 1},
        kill_commit=2,
    ),
    Scenario(
        "after the last step, before the run's completion",
        {},
        RunStatus.COMPLETED,
        {"create_order": 1, "reserve": 1, "charge": 1, "ship": 1},
        kill_commit=4,
    ),
    Scenario(
        "inside a compensation",
        {"decline": True, "kill_in": ["release"]},
        RunStatus.COMPENSATED,
        {"create_order": 1, "reserve": 1, "charge": 1, "release": 2, "cancel_order": 1},
        compensations=["release", "cancel_order"],
    ),
    Scenario(
        "after a compensation's commit",
        {"decline": True},
        RunStatus.COMPENSATED,
        {"create_order": 1, "reserve": 1, "charge": 1, "release": 1, "cancel_order": 1},
        kill_commit=4,  # 1-3: the steps; 4: release (with the run now COMPENSATING)
        compensations=["release", "cancel_order"],
    ),
    Scenario(
        "twice: again during recovery",
        {"kill_in": ["charge", "ship"]},
        RunStatus.COMPLETED,
        {"create_order": 1, "reserve": 1, "charge": 2, "ship": 2},
        kills=2,
    ),
    Scenario(
        "during recovery of a compensating run",
        {"decline": True, "kill_in": ["charge", "release"]},
        RunStatus.COMPENSATED,
        {"create_order": 1, "reserve": 1, "charge": 2, "release": 2, "cancel_order": 1},
        kills=2,
        compensations=["release", "cancel_order"],
    ),
]


def _spawn(db: str, ledger: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRASH_LEDGER": str(ledger)}
    return subprocess.Popen([sys.executable, str(CHILD), db, *extra], env=env)


def _ledger(ledger: Path) -> list[dict[str, object]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines()]


async def _check_recorded_once(db: str, run_id: str) -> list[str]:
    async with Engine(db, worker=False) as engine:
        run = await engine.get_run(run_id)
        events = await engine.history(run_id)
        steps = await engine.steps(run_id)
    recorded = Counter(e.seq or 0 for e in events if e.type in ("StepSucceeded", "StepFailed"))
    assert all(n == 1 for n in recorded.values()), recorded
    assert sorted(recorded) == [s.seq for s in steps if s.kind == "step"]
    undone = Counter(e.data["step"] for e in events if e.type == "CompensationSucceeded")
    assert all(n == 1 for n in undone.values()), undone
    assert run.owner is None
    return [run.status.value, *[e.type for e in events]]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_worker_killed_mid_saga_resumes_and_finishes(
    scenario: Scenario, store_url: str, tmp_path: Path
) -> None:
    db = store_url
    ledger = tmp_path / "ledger.jsonl"
    plan = json.dumps({"order": "o1", **scenario.plan})
    kill = ["--kill-commit", str(scenario.kill_commit)] if scenario.kill_commit else []
    kill += ["--before"] if scenario.before else []

    codes = [_spawn(db, ledger, "--start", "o1", plan, *kill).wait(timeout=DEADLINE)]
    while codes[-1] == -signal.SIGKILL and len(codes) <= scenario.kills + 1:
        codes.append(_spawn(db, ledger).wait(timeout=DEADLINE))
    assert codes == [-signal.SIGKILL] * scenario.kills + [0]

    status, *_ = await _check_recorded_once(db, "o1")
    assert status == scenario.final.value
    actions = [str(entry["action"]) for entry in _ledger(ledger)]
    assert dict(Counter(actions)) == scenario.counts
    first_seen = list(dict.fromkeys(a for a in actions if a in scenario.compensations))
    assert first_seen == scenario.compensations  # reverse order of the steps they undo
    for entry in _ledger(ledger):
        if entry["action"] == "release":
            assert entry["value"] == {"id": "res-o1", "qty": 3}


async def test_external_sigkill_during_a_slow_step(store_url: str, tmp_path: Path) -> None:
    db = store_url
    ledger = tmp_path / "ledger.jsonl"
    plan = json.dumps({"order": "o2", "slow_ship": 60.0})
    first = _spawn(db, ledger, "--start", "o2", plan)
    deadline = time.monotonic() + DEADLINE
    while "ship" not in [e["action"] for e in _ledger(ledger)]:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=DEADLINE) == -signal.SIGKILL
    assert _spawn(db, ledger).wait(timeout=DEADLINE) == 0
    status, *_ = await _check_recorded_once(db, "o2")
    assert status == "COMPLETED"
    actions = Counter(str(e["action"]) for e in _ledger(ledger))
    assert actions == {"create_order": 1, "reserve": 1, "charge": 1, "ship": 2}
