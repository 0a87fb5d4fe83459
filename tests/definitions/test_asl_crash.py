"""An ASL machine survives a real SIGKILL of its worker: the run resumes at the last state.

The worker (``examples/asl/order.py``) kills itself inside a step the first time it runs;
a second worker recovers the run from the database, with the definition stored in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "asl" / "order.py"
ORDER = {"order_id": "o-9", "sku": "book", "amount": 30, "card": "ok"}

pytestmark = pytest.mark.crash


def _worker(db: str, env: dict[str, str], *start: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), db, *start],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("kill_in", ["charge_payment", "ship_order"])
def test_a_killed_worker_is_resumed_from_the_last_recorded_state(
    tmp_path: Path, kill_in: str
) -> None:
    db = f"sqlite:///{tmp_path / 'asl.db'}"
    ledger = tmp_path / "ledger.jsonl"
    env = {**os.environ, "ASL_LEDGER": str(ledger), "ASL_KILL_IN": kill_in}
    first = _worker(db, env, "--start", "o-9", "--input", json.dumps(ORDER))
    assert first.returncode == -9, first.stderr
    second = _worker(db, env)
    assert second.returncode == 0, second.stderr
    assert "o-9 COMPLETED" in second.stdout
    actions = [json.loads(line)["action"] for line in ledger.read_text().splitlines()]
    # Steps recorded before the kill never run again; the one killed mid-way runs twice.
    expected = ["create_order", "reserve_inventory", "charge_payment", "ship_order"]
    assert [a for a in actions if a != kill_in] == [a for a in expected if a != kill_in]
    assert actions.count(kill_in) == 2
