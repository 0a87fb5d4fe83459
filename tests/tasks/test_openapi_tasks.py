"""The task routes hold to the OpenAPI document (schemathesis, live, with a worker token;
the API's own schemathesis test runs with an operator's, which these routes refuse)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import missing_service
from tests.http.test_openapi import CHECKS
from tests.tasks.conftest import TaskServer


def test_schemathesis_finds_the_task_routes_as_documented(
    task_server: TaskServer, tmp_path: Path
) -> None:
    tool = Path(sys.executable).parent / "schemathesis"
    if not tool.exists() and shutil.which("schemathesis") is None:
        missing_service("schemathesis is not installed: pip install -e '.[dev]'")
    task_server.start("tasks-checkout", {"id": "fuzz", "amount": 1}, "fuzz")
    schema = tmp_path / "openapi.json"
    with task_server.client(task_server.operator) as client:
        schema.write_bytes(client.get("/api/v1/openapi.json").content)
    done = subprocess.run(
        [
            *(str(tool), "run", str(schema), "--url", f"{task_server.url}/api/v1"),
            *("-H", f"Authorization: Bearer {task_server.worker}"),
            *("--include-path-regex", "^/tasks"),
            *("--checks", ",".join(CHECKS), "--max-examples", "10", "--seed", "1"),
            *("--phases", "examples,coverage,fuzzing", "--request-timeout", "90"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert " generated, " in done.stdout and " failed" not in done.stdout, done.stdout[-4000:]
