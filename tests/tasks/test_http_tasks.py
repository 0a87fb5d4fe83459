"""Task steps over HTTP against a real ``sagaline serve``: claim, heartbeat, complete, fail,
the token's fence, result types, and who may call what."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.tasks.conftest import DEADLINE, TaskServer

ORDER = {"id": "o", "amount": 30}


def claim(client: httpx.Client, queue: str = "payments", worker: str = "w1") -> dict[str, Any]:
    """One task, long-polling for it (a poll lasts at most 20 s: poll again until DEADLINE)."""
    body = {"queue": queue, "worker": worker, "max": 1, "wait_seconds": 10}
    end = time.monotonic() + DEADLINE
    while True:
        response = client.post("/api/v1/tasks/claim", json=body)
        assert response.status_code == 200, response.text
        tasks: list[dict[str, Any]] = response.json()["tasks"]
        if tasks or time.monotonic() > end:
            break
    assert len(tasks) == 1, tasks
    return tasks[0]


def answer(client: httpx.Client, task: dict[str, Any], verb: str, **body: Any) -> httpx.Response:
    return client.post(f"/api/v1/tasks/{task['id']}/{verb}", json={"token": task["token"], **body})


def events(server: TaskServer, run_id: str) -> list[str]:
    return [e["type"] for e in server.run(run_id)["timeline"]]


def test_a_worker_claims_the_charge_and_its_result_completes_the_saga(
    task_server: TaskServer,
) -> None:
    task_server.start("tasks-checkout", {**ORDER, "id": "h1"}, "h1")
    with task_server.client(task_server.worker) as worker:
        task = claim(worker)
        assert task["run_id"] == "h1" and task["step"] == "tasks.charge"
        assert task["input"] == {"order": {"id": "h1", "amount": 30}, "note": "first"}
        assert task["attempt"] == 1 and task["deadline"]
        beat = answer(worker, task, "heartbeat", details={"progress": 0.5})
        assert beat.status_code == 200, beat.text
        assert beat.json()["cancel_requested"] is False
        done = answer(worker, task, "complete", result={"id": "pay-h1", "amount": 30})
        assert done.status_code == 200, done.text
        assert done.json() == {"id": task["id"], "outcome": "completed"}
        again = answer(worker, task, "complete", result={"id": "pay-h1", "amount": 30})
        assert again.status_code == 409, again.text
    run = task_server.wait_status("h1", "COMPLETED")
    assert run["output"] == "res-h1/pay-h1/30"


def test_a_dead_workers_task_goes_to_another_and_its_late_completion_is_refused(
    task_server: TaskServer,
) -> None:
    task_server.start("tasks-slow-checkout", {**ORDER, "id": "d1"}, "d1")
    with task_server.client(task_server.worker) as worker:
        dead = claim(worker, "slow", "dies")  # never answers: its 1 s lease runs out
        alive = claim(worker, "slow", "lives")
        assert alive["id"] == dead["id"] and alive["attempt"] == 2
        late = answer(worker, dead, "complete", result={"id": "late", "amount": 30})
        assert late.status_code == 409, late.text
        assert late.json()["code"] == "task_lease_lost"
        assert answer(worker, dead, "heartbeat").status_code == 409
        done = answer(worker, alive, "complete", result={"id": "pay-d1", "amount": 30})
        assert done.status_code == 200, done.text
    run = task_server.wait_status("d1", "COMPLETED")
    assert run["output"] == "res-d1/pay-d1"
    assert events(task_server, "d1").count("StepSucceeded") == 2  # reserve, and charge once


def test_a_result_off_the_steps_type_is_refused_with_the_reason_and_stays_claimable(
    task_server: TaskServer,
) -> None:
    task_server.start("tasks-slow-checkout", {**ORDER, "id": "b1"}, "b1")
    with task_server.client(task_server.worker) as worker:
        task = claim(worker, "slow")
        bad = answer(worker, task, "complete", result={"id": 7})
        assert bad.status_code == 422, bad.text
        assert bad.json()["code"] == "invalid_task_result"
        assert "Payment" in bad.json()["detail"]
        retaken = claim(worker, "slow", "w2")  # the same task, once the first lease ran out
        assert retaken["id"] == task["id"]
        done = answer(worker, retaken, "complete", result={"id": "pay-b1", "amount": 30})
        assert done.status_code == 200, done.text
    task_server.wait_status("b1", "COMPLETED")


def test_a_non_retryable_failure_compensates_the_reservation(task_server: TaskServer) -> None:
    task_server.start("tasks-checkout", {**ORDER, "id": "f1"}, "f1")
    with task_server.client(task_server.worker) as worker:
        task = claim(worker)
        error = {"type": "CardDeclined", "message": "stolen card"}
        failed = answer(worker, task, "fail", error=error, non_retryable=True)
        assert failed.status_code == 200, failed.text
        assert failed.json()["outcome"] == "failed"
    task_server.wait_status("f1", "COMPENSATED")
    trail = events(task_server, "f1")
    assert "StepFailed" in trail and "CompensationSucceeded" in trail


def test_a_retryable_failure_is_claimable_again_after_the_backoff(
    task_server: TaskServer,
) -> None:
    task_server.start("tasks-checkout", {**ORDER, "id": "r1"}, "r1")
    with task_server.client(task_server.worker) as worker:
        first = claim(worker)
        error = {"type": "Timeout", "message": "bank slow"}
        assert answer(worker, first, "fail", error=error).json()["outcome"] == "retrying"
        second = claim(worker)
        assert second["id"] == first["id"] and second["attempt"] == 2
        done = answer(worker, second, "complete", result={"id": "pay-r1", "amount": 30})
        assert done.status_code == 200, done.text
    task_server.wait_status("r1", "COMPLETED")
    assert "StepAttemptFailed" in events(task_server, "r1")


def test_only_worker_tokens_reach_task_routes_and_they_reach_nothing_else(
    task_server: TaskServer,
) -> None:
    body = {"queue": "payments", "worker": "x"}
    for token in (task_server.viewer, task_server.operator):
        with task_server.client(token) as client:
            response = client.post("/api/v1/tasks/claim", json=body)
            assert response.status_code == 403, response.text
            assert response.json()["code"] == "forbidden"
            beat = client.post("/api/v1/tasks/t_x/heartbeat", json={"token": "x"})
            assert beat.status_code == 403
    with task_server.client(None) as anonymous:
        assert anonymous.post("/api/v1/tasks/claim", json=body).status_code == 401
    with task_server.client(task_server.worker) as worker:
        assert worker.get("/api/v1/runs").status_code == 403
        start = {"workflow": "tasks-checkout", "input": ORDER}
        assert worker.post("/api/v1/runs", json=start).status_code == 403
        assert worker.get("/metrics").status_code == 403
        missing = worker.post("/api/v1/tasks/t_nope/complete", json={"token": "x"})
        assert missing.status_code == 404
        empty = worker.post("/api/v1/tasks/claim", json={**body, "wait_seconds": 0})
        assert empty.status_code == 200 and empty.json() == {"tasks": []}


def test_a_heartbeat_tells_the_worker_that_the_run_was_cancelled(
    task_server: TaskServer,
) -> None:
    task_server.start("tasks-checkout", {**ORDER, "id": "c1"}, "c1")
    with task_server.client(task_server.worker) as worker:
        task = claim(worker)
        with task_server.client(task_server.operator) as ops:
            cancel = ops.post("/api/v1/runs/c1/cancel", json={"reason": "customer left"})
            assert cancel.status_code == 200, cancel.text
        beat = answer(worker, task, "heartbeat")
        assert beat.status_code == 200, beat.text
        assert beat.json()["cancel_requested"] is True
        # The run waits for the answer of the task this worker holds (it may have charged)
        stopped = answer(
            worker,
            task,
            "fail",
            error={"type": "Cancelled", "message": "stopped"},
            non_retryable=True,
        )
        assert stopped.status_code == 200, stopped.text
    task_server.wait_status("c1", "CANCELLED")
    assert "CompensationSucceeded" in events(task_server, "c1")


def test_a_claim_from_a_queue_no_task_step_uses_is_refused_with_the_known_ones(
    task_server: TaskServer,
) -> None:
    with task_server.client(task_server.worker) as worker:
        body = {"queue": "paymnets", "worker": "w1", "max": 1, "wait_seconds": 0}
        response = worker.post("/api/v1/tasks/claim", json=body)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "unknown_queue"
        assert "'paymnets'" in problem["detail"] and "'payments'" in problem["detail"]
        assert "'refunds'" in problem["detail"]  # a task compensation's queue counts too
