"""Deny by default: tokens, roles, revocation, secrets kept out of logs and the database,
security headers, and user text that comes back inert."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from sagaline.store import open_store
from tests.http.conftest import Server, cli, free_port

READS = ["/api/v1/runs", "/api/v1/runs/some-run", "/api/v1/workflows", "/api/v1/queues"]
READS += ["/api/v1/openapi.json", "/api/v1/locks", "/api/v1/locks/order:1"]
READS += ["/api/v1/sagas", "/api/v1/sagas/some-saga"]
ACTIONS = {
    "/api/v1/runs": {"workflow": "http-order", "input": "x"},
    "/api/v1/runs/some-run/cancel": {"reason": "r"},
    "/api/v1/runs/some-run/retry": {"reason": "r"},
    "/api/v1/runs/some-run/skip": {"reason": "r"},
    "/api/v1/runs/some-run/signal": {"name": "approved"},
}


def wait_status(client: httpx.Client, run_id: str, status: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        body: Any = client.get(f"/api/v1/runs/{quote(run_id, safe='')}").json()
        if body.get("status") == status or time.monotonic() > deadline:
            assert body.get("status") == status, body
            return body
        time.sleep(0.05)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert {"type", "title", "detail"} <= set(body)


def test_every_route_refuses_anonymous_and_forged_callers(server: Server) -> None:
    for token in (None, "sgl_forged", "not-even-a-token"):
        with server.client(token) as client:
            for path in [*READS, "/api/v1/no-such-route", "/metrics"]:
                response = client.get(path)
                assert_problem(response, 401, "unauthenticated")
                assert response.headers["www-authenticate"] == "Bearer"
            for path, body in ACTIONS.items():
                assert_problem(client.post(path, json=body), 401, "unauthenticated")
    with server.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        page = client.get("/", follow_redirects=False)  # a browser is sent to sign in
        assert page.status_code == 303 and page.headers["location"] == "/signin?next=%2F"


def test_a_viewer_reads_but_every_action_is_forbidden(server: Server) -> None:
    with server.client(server.viewer) as client:
        assert client.get("/api/v1/runs").status_code == 200
        assert client.get("/api/v1/workflows").status_code == 200
        for path, body in ACTIONS.items():
            assert_problem(client.post(path, json=body), 403, "forbidden")
        assert client.get("/api/v1/runs").json()["runs"] == []  # nothing was started


def test_a_revoked_token_stops_working_at_once(server: Server) -> None:
    token = cli("tokens", "create", "temp", "--role", "viewer", "--db", server.db, "--quiet")
    with server.client(token.strip()) as client:
        assert client.get("/api/v1/runs").status_code == 200
        cli("tokens", "revoke", "temp", "--db", server.db)
        assert_problem(client.get("/api/v1/runs"), 401, "unauthenticated")
    listed = [line.split() for line in cli("tokens", "list", "--db", server.db).splitlines()]
    assert ["temp", "viewer", "payloads", "revoked"] in listed


def test_tokens_are_never_in_the_logs_nor_in_clear_in_the_database(server: Server) -> None:
    with server.client(server.operator) as client:
        client.post("/api/v1/runs", json={"workflow": "http-approval", "input": "a", "run_id": "a"})
        client.get("/api/v1/runs/a")
        client.post("/api/v1/runs/a/cancel", json={"reason": "test"})
    with server.client(server.operator[:-1] + "x") as client:  # a near miss
        client.get("/api/v1/runs")
    logs = server.logs()
    assert "GET /api/v1/runs/a" in logs  # the access log is on
    assert "ops cancelled run 'a'" in logs  # the audit log names the token, not its secret
    for token in (server.operator, server.viewer, server.shapes, server.operator[:-1] + "x"):
        assert token not in logs
        assert token[4:20] not in logs

    async def stored() -> list[str]:
        store = open_store(server.db)
        await store.open()
        try:
            return [repr(t) for t in await store.list_tokens()]
        finally:
            await store.aclose()

    rows = asyncio.run(stored())
    assert len(rows) == 3
    for token in (server.operator, server.viewer, server.shapes):
        assert not any(token in row or token[4:] in row for row in rows)


def test_every_response_carries_strict_security_headers(server: Server) -> None:
    with server.client(server.operator) as client:
        responses = [
            client.get("/api/v1/runs"),
            client.get("/api/v1/runs/missing"),
            client.post("/api/v1/runs", content=b"{"),
        ]
    with server.client(None) as client:
        responses += [client.get("/healthz"), client.get("/api/v1/runs")]
    for response in responses:
        headers = response.headers
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert "server" not in headers


def test_html_in_run_ids_and_errors_comes_back_as_inert_json(server: Server) -> None:
    run_id = '<img src=x onerror="alert(1)">'
    item = "<script>alert('x')</script> decline"
    with server.client(server.operator) as client:
        started = client.post(
            "/api/v1/runs", json={"workflow": "http-order", "input": item, "run_id": run_id}
        )
        assert started.status_code == 201, started.text
        assert started.headers["location"] == f"/api/v1/runs/{quote(run_id, safe='')}"
        body = wait_status(client, run_id, "COMPENSATED")
        response = client.get(f"/api/v1/runs/{quote(run_id, safe='')}")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert body["run_id"] == run_id
    assert body["error"]["message"] == f"card declined for {item}"  # data, as given
    assert any(item in entry["detail"] for entry in body["timeline"])


def test_a_token_without_payload_access_sees_shapes_not_values(server: Server) -> None:
    with server.client(server.operator) as client:
        client.post(
            "/api/v1/runs", json={"workflow": "http-pair", "input": {"a": 40}, "run_id": "p"}
        )
        full = wait_status(client, "p", "COMPLETED")
    with server.client(server.shapes) as client:
        shaped = wait_status(client, "p", "COMPLETED")
    assert full["input"] == [40, 2] and full["output"] == 42
    assert shaped["input"] == ["number", "number"] and shaped["output"] == "number"


def test_a_taken_port_is_one_clear_error(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    done = cli_fails("serve", "--db", server.db, "--port", port)
    assert f"port {port} on 127.0.0.1 is already in use" in done
    assert "Traceback" not in done
    assert free_port() != int(port)


def cli_fails(*args: str) -> str:
    import subprocess

    from tests.http.conftest import PYTHON, ROOT

    done = subprocess.run(
        [PYTHON, "-m", "sagaline.serve_cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    return " ".join((done.stdout + done.stderr).split())


@pytest.mark.parametrize("role", ["admin", ""])
def test_a_token_needs_a_known_role(role: str, tmp_path: object) -> None:
    import subprocess

    from tests.http.conftest import PYTHON, ROOT

    done = subprocess.run(
        [PYTHON, "-m", "sagaline.serve_cli", "tokens", "create", "x", "--role", role],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
