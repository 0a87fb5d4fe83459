"""A real ``sagaline serve`` process importing ``tests.tasks.sagas``, over each store, with
an operator, a viewer and a worker token."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.http.conftest import make_tokens, start_server, stop

DEADLINE = 30.0


@dataclass
class TaskServer:
    url: str
    db: str
    log: Path
    operator: str
    viewer: str
    worker: str

    def client(self, token: str | None) -> httpx.Client:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=DEADLINE + 30)

    def start(self, workflow: str, order: dict[str, Any], run_id: str) -> None:
        with self.client(self.operator) as client:
            body = {"workflow": workflow, "input": order, "run_id": run_id}
            response = client.post("/api/v1/runs", json=body)
            assert response.status_code in (200, 201), response.text

    def run(self, run_id: str) -> dict[str, Any]:
        with self.client(self.operator) as client:
            response = client.get(f"/api/v1/runs/{quote(run_id, safe='')}")
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            return found

    def wait_status(self, run_id: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] == status:
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} is {self.run(run_id)['status']}, not {status}")

    def logs(self) -> str:
        return self.log.read_text("utf-8", "replace")


@pytest.fixture
def task_server(store_url: str, tmp_path: Path) -> Iterator[TaskServer]:
    operator, viewer, worker = make_tokens(
        store_url, ("ops", "operator", True), ("v", "viewer", True), ("w", "worker", True)
    )
    log = tmp_path / "server.log"
    process, url = start_server(store_url, log, "--import", "tests.tasks.sagas")
    yield TaskServer(url, store_url, log, operator, viewer, worker)
    assert stop(process) in (0, -signal.SIGTERM), log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
