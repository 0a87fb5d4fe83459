"""The OpenAPI document is valid and is what the server does (schemathesis, live)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import missing_service
from tests.http.conftest import Server
from tests.http.test_sagas_api import seed

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]


def test_the_document_is_served_and_valid_openapi_3_1(server: Server) -> None:
    from jsonschema_rs import validator_for

    with server.client(server.viewer) as client:
        doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    for name, schema in doc["components"]["schemas"].items():
        validator_for({**schema, "components": doc["components"]})  # each schema compiles
        assert name
    assert set(doc["paths"]) == {
        "/runs",
        "/runs/{run_id}",
        "/runs/{run_id}/cancel",
        "/runs/{run_id}/retry",
        "/runs/{run_id}/skip",
        "/runs/{run_id}/signal",
        "/workflows",
        "/queues",
        "/openapi.json",
        "/tasks/claim",
        "/tasks/{task_id}/heartbeat",
        "/tasks/{task_id}/complete",
        "/tasks/{task_id}/fail",
        "/locks",
        "/locks/{key}",
        "/sagas",
        "/sagas/{correlation_id}",
    }


def test_schemathesis_finds_no_5xx_and_no_response_off_the_schema(
    server: Server, tmp_path: Path
) -> None:
    tool = Path(sys.executable).parent / "schemathesis"
    if not tool.exists() and shutil.which("schemathesis") is None:
        missing_service("schemathesis is not installed: pip install -e '.[dev]'")
    asyncio.run(seed(server.db))  # so that the sagas list has sagas to answer with
    with server.client(server.operator) as client:
        for i in range(3):
            client.post("/api/v1/runs", json={"workflow": "http-order", "input": f"s{i}"})
        schema = tmp_path / "openapi.json"
        schema.write_bytes(client.get("/api/v1/openapi.json").content)
    done = subprocess.run(
        [
            *(str(tool), "run", str(schema), "--url", f"{server.url}/api/v1"),
            *("-H", f"Authorization: Bearer {server.operator}"),
            *("--exclude-path-regex", "^/tasks"),  # a worker's: tests/tasks/test_openapi_tasks
            *("--checks", ",".join(CHECKS), "--max-examples", "30", "--seed", "1"),
            *("--phases", "examples,coverage,fuzzing", "--request-timeout", "20"),
        ],
        cwd=tmp_path,  # schemathesis keeps its state in .schemathesis/ there
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert " generated, " in done.stdout and " failed" not in done.stdout
    assert "Traceback" not in server.logs()
