"""The chaos experiments, fast profile: SIGKILLed workers, PostgreSQL restarted under its
workers, a worker paused past its lease. Each is judged by the ledger oracle
(``tests/chaos/oracle.py``): no run lost or stuck, every final status and compensation
right, every step recorded once, every duplicate execution explained by a fault.

The server restarts happen on a private cluster of the suite's own
(``tests/pgcluster.py``), never on the machine's server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import experiments
from tests.chaos.experiments import FAST, Result
from tests.pgcluster import Cluster

pytestmark = [pytest.mark.chaos, pytest.mark.crash]


def judged(result: Result, seed: int) -> str:
    return f"seed {seed}: {result.verdict.explain()} ({result.figures})"


async def test_workers_sigkilled_at_random_moments_lose_no_saga(
    store_url: str, tmp_path: Path, seed: int
) -> None:
    result = await experiments.kills(store_url, tmp_path, FAST, seed)
    assert result.verdict.ok, judged(result, seed)
    assert result.figures["kills"] >= 20 and result.verdict.runs >= 300
    assert result.figures["planned_failures"] >= 30
    assert result.verdict.in_flight > 0, "no kill found a step in flight: the test proved nothing"
    assert result.figures["workers_exited_unasked"] == [], judged(result, seed)


async def test_postgres_restarted_immediately_under_three_workers_loses_no_saga(
    private_postgres: Cluster, tmp_path: Path, seed: int
) -> None:
    result = await experiments.restarts(private_postgres, tmp_path, FAST, seed)
    assert result.verdict.ok, judged(result, seed)
    assert result.verdict.faults == FAST.restarts
    assert result.verdict.in_flight > 0, "no restart found a step in flight"
    assert result.figures["workers_exited_unasked"] == [], judged(result, seed)


async def test_a_worker_paused_past_its_lease_gets_no_late_write_through(
    store_url: str, tmp_path: Path, seed: int
) -> None:
    result = await experiments.pause(store_url, tmp_path, FAST, seed)
    assert result.figures["late_writes_that_got_through"] == 0, judged(result, seed)
    broken = {k: n for k, n in result.verdict.counts().items() if n and k != "late_starts"}
    assert not broken, judged(result, seed)  # late starts: the test below
    assert result.figures["steps_ended_after_waking"] >= 1  # it woke up mid-step, and wrote
    assert result.figures["paused_worker_alive_after"], "it crashed instead of letting go"


async def test_a_worker_woken_past_its_lease_starts_no_step_of_a_run_it_lost(
    store_url: str, tmp_path: Path, seed: int
) -> None:
    result = await experiments.pause(store_url, tmp_path, FAST, seed)
    assert result.figures["runs_between_steps_when_paused"] >= 1
    assert result.figures["steps_begun_after_losing_the_run"] == 0, judged(result, seed)
