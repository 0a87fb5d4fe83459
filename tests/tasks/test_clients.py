"""The worker clients against a real ``sagaline serve``: the typed Python client, the
bash + curl script and the Node.js worker each carry a saga's charge step."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sagaline.engine.tasks import MAX_WAIT_SECONDS
from sagaline.tasks import Client, LeaseLostError, TaskClientError
from tests.conftest import missing_service
from tests.tasks.conftest import DEADLINE, TaskServer

ROOT = Path(__file__).parents[2]
WORKERS = ROOT / "examples" / "workers"
ORDER = {"id": "o", "amount": 12}


def env(server: TaskServer) -> dict[str, str]:
    return {**os.environ, "SAGALINE_URL": server.url, "SAGALINE_TOKEN": server.worker}


async def test_the_python_client_runs_a_handler_until_the_saga_completes(
    task_server: TaskServer,
) -> None:
    task_server.start("tasks-checkout", {**ORDER, "id": "py1"}, "py1")
    seen: list[dict[str, Any]] = []

    async def charge(order: dict[str, Any], note: str) -> dict[str, Any]:
        seen.append(order)
        return {"id": f"py-{order['id']}", "amount": order["amount"]}

    stop = asyncio.Event()
    async with Client(task_server.url, task_server.worker, worker="py") as client:
        loop = asyncio.create_task(client.run({"tasks.charge": charge}, "payments", stop=stop))
        run = await asyncio.to_thread(task_server.wait_status, "py1", "COMPLETED")
        stop.set()
        await asyncio.wait_for(loop, DEADLINE)
    assert run["output"] == "res-py1/py-py1/12"
    assert seen == [{"id": "py1", "amount": 12}]


async def test_the_python_client_fails_a_non_retryable_error_and_sees_409(
    task_server: TaskServer,
) -> None:
    task_server.start("tasks-checkout", {**ORDER, "id": "py2"}, "py2")
    async with Client(task_server.url, task_server.worker, worker="py") as client:
        [task] = await client.claim("payments", wait_seconds=MAX_WAIT_SECONDS)
        assert task.input["order"] == {"id": "py2", "amount": 12}
        assert not await client.heartbeat(task)
        with pytest.raises(TaskClientError) as bad:
            await client.complete(task, {"id": 1})
        assert bad.value.status == 422 and bad.value.code == "invalid_task_result"
        assert await client.fail(task, "Declined", "no", non_retryable=True) == "failed"
        with pytest.raises(LeaseLostError):
            await client.complete(task, {"id": "late", "amount": 12})
    await asyncio.to_thread(task_server.wait_status, "py2", "COMPENSATED")


def test_the_curl_script_processes_one_task(task_server: TaskServer) -> None:
    if shutil.which("curl") is None:
        missing_service("curl is not installed")
    task_server.start("tasks-checkout", {**ORDER, "id": "sh1"}, "sh1")
    done = subprocess.run(
        ["bash", str(WORKERS / "curl.sh"), "payments"],
        env=env(task_server),
        capture_output=True,
        text=True,
        timeout=DEADLINE + 30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answered task" in done.stdout
    run = task_server.wait_status("sh1", "COMPLETED")
    assert run["output"] == "res-sh1/curl-sh1/12"


def test_the_node_worker_completes_a_task(task_server: TaskServer) -> None:
    node = shutil.which("node")
    if node is None:
        missing_service("Node.js is not installed (`.ci/run` installs it)")
    task_server.start("tasks-checkout", {**ORDER, "id": "js1"}, "js1")
    done = subprocess.run(
        [node, str(WORKERS / "node" / "worker.mjs"), "payments", "1"],
        env=env(task_server),
        capture_output=True,
        text=True,
        timeout=DEADLINE + 30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = task_server.wait_status("js1", "COMPLETED")
    assert run["output"] == "res-js1/node-js1/12"


def test_node_workers_charge_then_refund_a_saga_that_fails_later(
    task_server: TaskServer,
) -> None:
    """The charge and its compensation are both tasks, on two queues, run by Node."""
    node = shutil.which("node")
    if node is None:
        missing_service("Node.js is not installed (`.ci/run` installs it)")
    task_server.start("tasks-refundable", {"id": "js2", "amount": 500}, "js2")
    for queue in ("payments", "refunds"):
        done = subprocess.run(
            [node, str(WORKERS / "node" / "worker.mjs"), queue, "1"],
            env=env(task_server),
            capture_output=True,
            text=True,
            timeout=DEADLINE + 30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "completed task" in done.stdout
    run = task_server.wait_status("js2", "COMPENSATED")
    kinds = [e["type"] for e in run["timeline"]]
    assert kinds.count("CompensationSucceeded") == 2  # the refund (Node), then the release


def test_a_node_worker_killed_mid_task_loses_nothing_and_the_result_is_recorded_once(
    task_server: TaskServer,
) -> None:
    """kill -9 a Node worker while it holds the charge: no heartbeat comes, so after the
    step's heartbeat_timeout (1 s) another Node worker gets the task, and the saga
    completes with that one result."""
    node = shutil.which("node")
    if node is None:
        missing_service("Node.js is not installed (`.ci/run` installs it)")
    task_server.start("tasks-slow-checkout", {**ORDER, "id": "js3"}, "js3")
    slow = subprocess.Popen(
        [node, str(WORKERS / "node" / "worker.mjs"), "slow", "1"],
        env={**env(task_server), "WORK_MS": "600000"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert slow.stdout is not None
        line = slow.stdout.readline()  # blocks until it has the task (or exits)
        assert line.startswith("claimed task"), line
    finally:
        slow.kill()  # SIGKILL, mid-task
        slow.wait(DEADLINE)
    done = subprocess.run(
        [node, str(WORKERS / "node" / "worker.mjs"), "slow", "1"],
        env=env(task_server),
        capture_output=True,
        text=True,
        timeout=DEADLINE + 30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "attempt 2" in done.stdout  # the dead worker's claim was the first attempt
    run = task_server.wait_status("js3", "COMPLETED")
    assert run["output"] == "res-js3/node-js3"
    kinds = [e["type"] for e in run["timeline"]]
    assert kinds.count("StepSucceeded") == 2  # reserve, and the charge: once
