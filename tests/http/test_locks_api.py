"""``/api/v1/locks`` against a real server: who holds a key and who waits, in order."""

from __future__ import annotations

from tests.http.conftest import Server
from tests.http.test_security import assert_problem, wait_status


def test_a_service_sees_who_holds_an_order_and_who_waits(server: Server) -> None:
    with server.client(server.operator) as client:
        for run_id in ("42-a", "42-b"):
            body = {"workflow": "http-locked", "input": run_id, "run_id": run_id}
            assert client.post("/api/v1/runs", json=body).status_code in (200, 201)
            wait_status(client, run_id, "SUSPENDED")
    with server.client(server.viewer) as client:  # reading needs no operator
        info = client.get("/api/v1/locks/order:42").json()
        assert info["key"] == "order:42" and info["free"] is False
        assert [(h["run_id"], h["state"], h["run_status"]) for h in info["holders"]] == [
            ("42-a", "held", "SUSPENDED")
        ]
        assert [w["run_id"] for w in info["waiters"]] == ["42-b"]
        listed = client.get("/api/v1/locks", params={"prefix": "order:"}).json()["locks"]
        assert [(r["run_id"], r["state"]) for r in listed] == [
            ("42-a", "held"),
            ("42-b", "waiting"),
        ]
        free = client.get("/api/v1/locks/order:7").json()
        assert free == {"key": "order:7", "free": True, "holders": [], "waiters": []}
        assert_problem(client.get("/api/v1/locks/" + "k" * 300), 422, "invalid_name")
        assert_problem(client.get("/api/v1/locks", params={"limit": "0"}), 422, "invalid_request")
    with server.client(None) as anonymous:
        assert_problem(anonymous.get("/api/v1/locks/order:42"), 401, "unauthenticated")
    with server.client(server.operator) as client:
        client.post("/api/v1/runs/42-a/signal", json={"name": "approved", "payload": "a"})
        wait_status(client, "42-a", "COMPLETED")
        wait_status(client, "42-b", "SUSPENDED")
        info = client.get("/api/v1/locks/order:42").json()
        assert [h["run_id"] for h in info["holders"]] == ["42-b"] and info["waiters"] == []
