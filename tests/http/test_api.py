"""The JSON API over a real server: start, list, filter, paginate, show, operate; errors
as problem details."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

from tests.http.conftest import Server, start_server, stop
from tests.http.test_security import assert_problem, wait_status


def test_start_is_idempotent_by_run_id_and_conflicts_are_409(server: Server) -> None:
    with server.client(server.operator) as client:
        body = {"workflow": "http-pair", "input": {"a": 1, "b": 5}, "run_id": "sum-1"}
        first = client.post("/api/v1/runs", json=body)
        assert first.status_code == 201 and first.json()["run_id"] == "sum-1"
        again = client.post("/api/v1/runs", json=body)
        assert again.status_code == 200 and again.json()["run_id"] == "sum-1"
        other = client.post("/api/v1/runs", json={**body, "input": {"a": 2}})
        assert_problem(other, 409, "run_conflict")
        assert wait_status(client, "sum-1", "COMPLETED")["output"] == 6


def test_bad_starts_are_422_with_a_stable_code(server: Server) -> None:
    with server.client(server.operator) as client:
        cases = [
            ({"workflow": "nope"}, "unknown_workflow"),
            ({"workflow": "http-pair", "input": {"a": "x"}}, "invalid_input"),
            ({"workflow": "http-pair", "input": {"c": 1}}, "invalid_request"),
            ({"workflow": "http-order", "input": "x", "run_id": "bad\nid"}, "invalid_name"),
            ({"workflow": "http-order", "extra": 1}, "invalid_request"),
            ({"input": 1}, "invalid_request"),
        ]
        for body, code in cases:
            assert_problem(client.post("/api/v1/runs", json=body), 422, code)
        assert_problem(client.post("/api/v1/runs", content=b"{not json"), 422, "invalid_request")
        assert client.get("/api/v1/runs").json()["runs"] == []


def test_bodies_over_the_limit_are_413(server: Server) -> None:
    big = {"workflow": "http-order", "input": "x" * (1024 * 1024)}
    with server.client(server.operator) as client:
        assert_problem(client.post("/api/v1/runs", json=big), 413, "body_too_large")

        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b"x" * 65536

        streamed = client.post("/api/v1/runs", content=chunks())  # no Content-Length
        assert_problem(streamed, 413, "body_too_large")


def test_the_body_limit_is_configurable(server: Server) -> None:
    process, url = start_server(server.db, server.log, "--max-body-bytes", "100")
    try:
        import httpx

        headers = {"authorization": f"Bearer {server.operator}"}
        body = {"workflow": "http-order", "input": "y" * 200}
        response = httpx.post(f"{url}/api/v1/runs", json=body, headers=headers)
        assert_problem(response, 413, "body_too_large")
        assert response.json()["limit"] == 100
    finally:
        stop(process)


def test_list_filters_counts_and_pages_newest_first(server: Server) -> None:
    with server.client(server.operator) as client:
        for i in range(7):
            client.post(
                "/api/v1/runs",
                json={"workflow": "http-order", "input": f"i{i}", "run_id": f"order-{i}"},
            )
        client.post(
            "/api/v1/runs", json={"workflow": "http-order", "input": "decline", "run_id": "bad-1"}
        )
        client.post(
            "/api/v1/runs", json={"workflow": "http-pair", "input": {"a": 1}, "run_id": "pair-1"}
        )
        for run_id in [f"order-{i}" for i in range(7)] + ["pair-1"]:
            wait_status(client, run_id, "COMPLETED")
        wait_status(client, "bad-1", "COMPENSATED")

        everything = client.get("/api/v1/runs").json()
        ids = [r["run_id"] for r in everything["runs"]]
        assert len(ids) == 9 and everything["next_cursor"] is None
        created = [r["created_at"] for r in everything["runs"]]
        assert created == sorted(created, reverse=True)
        assert everything["counts"]["COMPLETED"] == 8
        assert everything["counts"]["COMPENSATED"] == 1

        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 3, "workflow": "http-order"}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/runs", params=params).json()
            pages.append([r["run_id"] for r in page["runs"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        flat = [run_id for page in pages for run_id in page]
        assert [len(p) for p in pages] == [3, 3, 2]
        assert sorted(flat) == sorted([f"order-{i}" for i in range(7)] + ["bad-1"])
        assert flat == [i for i in ids if i != "pair-1"]

        by_status = client.get("/api/v1/runs", params={"status": "COMPENSATED"}).json()
        assert [r["run_id"] for r in by_status["runs"]] == ["bad-1"]
        two = client.get(
            "/api/v1/runs",
            params=[("status", "COMPENSATED"), ("status", "COMPLETED"), ("limit", "20")],
        ).json()
        assert [r["run_id"] for r in two["runs"]] == ids
        prefixed = client.get("/api/v1/runs", params={"prefix": "order-"}).json()
        assert sorted(r["run_id"] for r in prefixed["runs"]) == [f"order-{i}" for i in range(7)]
        assert prefixed["counts"]["COMPLETED"] == 7

        # Times are shown to the microsecond: filter at an instant between two runs.
        t3, t4 = (datetime.fromisoformat(r["created_at"]) for r in everything["runs"][3:5])
        middle = (t4 + (t3 - t4) / 2).isoformat()
        older = client.get("/api/v1/runs", params={"created_before": middle}).json()
        newer = client.get("/api/v1/runs", params={"created_after": middle}).json()
        assert [r["run_id"] for r in older["runs"]] == ids[4:]
        assert [r["run_id"] for r in newer["runs"]] == ids[:4]

        bad: list[tuple[dict[str, str | int], str]] = [
            ({"status": "DONE"}, "invalid_request"),
            ({"limit": 0}, "invalid_request"),
            ({"limit": "ten"}, "invalid_request"),
            ({"cursor": "garbage!"}, "invalid_cursor"),
            ({"created_after": "yesterday"}, "invalid_request"),
        ]
        for query, code in bad:
            assert_problem(client.get("/api/v1/runs", params=query), 422, code)


def test_a_run_shows_steps_stack_timeline_and_an_unknown_run_is_404(server: Server) -> None:
    with server.client(server.operator) as client:
        client.post(
            "/api/v1/runs", json={"workflow": "http-order", "input": "stuck decline", "run_id": "s"}
        )
        run = wait_status(client, "s", "COMPENSATION_FAILED")
        steps = {(s["kind"], s["name"]): s for s in run["steps"]}
        assert steps[("step", "http.reserve")]["status"] == "SUCCEEDED"
        assert (
            steps[("step", "http.charge")]["error"]["message"] == "card declined for stuck decline"
        )
        assert run["compensation_stack"]["failed"]["error"]["message"].startswith("cannot release")
        assert [p["name"] for p in run["compensation_stack"]["pending"]] == ["http.reserve"]
        assert run["input"] == ["stuck decline"]
        types = [e["type"] for e in run["timeline"]]
        assert types[0] == "RunStarted" and "CompensationFailed" in types
        assert_problem(client.get("/api/v1/runs/missing"), 404, "run_not_found")
        for action in ("cancel", "retry", "skip"):
            response = client.post(f"/api/v1/runs/missing/{action}", json={"reason": "r"})
            assert_problem(response, 404, "run_not_found")


def test_skip_needs_a_reason_and_is_audited_with_the_tokens_name(server: Server) -> None:
    with server.client(server.operator) as client:
        client.post(
            "/api/v1/runs", json={"workflow": "http-order", "input": "stuck decline", "run_id": "k"}
        )
        wait_status(client, "k", "COMPENSATION_FAILED")
        for body in ({}, {"reason": "  "}):
            assert_problem(client.post("/api/v1/runs/k/skip", json=body), 422, "invalid_request")
        retried = client.post("/api/v1/runs/k/retry", json={"reason": "try once more"})
        assert retried.status_code == 200, retried.text
        wait_status(client, "k", "COMPENSATION_FAILED")
        skipped = client.post("/api/v1/runs/k/skip", json={"reason": "released by hand"})
        assert skipped.status_code == 200 and skipped.json()["status"] == "COMPENSATING"
        run = wait_status(client, "k", "COMPENSATED")
        assert_problem(
            client.post("/api/v1/runs/k/skip", json={"reason": "x"}), 409, "invalid_operation"
        )
    audit = {e["type"]: e for e in run["timeline"]}
    assert audit["CompensationSkipped"]["data"]["by"] == "ops"
    assert audit["CompensationSkipped"]["data"]["reason"] == "released by hand"
    assert audit["RunRetried"]["data"] == {
        "status": "COMPENSATION_FAILED",
        "reason": "try once more",
        "by": "ops",
    }


def test_signal_and_cancel_a_waiting_run(server: Server) -> None:
    with server.client(server.operator) as client:
        for run_id in ("w1", "w2"):
            client.post(
                "/api/v1/runs",
                json={"workflow": "http-approval", "input": run_id, "run_id": run_id},
            )
            wait_status(client, run_id, "SUSPENDED")
        sent = client.post("/api/v1/runs/w1/signal", json={"name": "approved", "payload": "yes"})
        assert sent.status_code == 200, sent.text
        assert wait_status(client, "w1", "COMPLETED")["output"] == "yes"
        assert_problem(
            client.post("/api/v1/runs/w1/signal", json={"name": "approved"}),
            409,
            "invalid_operation",
        )
        cancelled = client.post("/api/v1/runs/w2/cancel", json={"reason": "customer asked"})
        assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"]
        run = wait_status(client, "w2", "CANCELLED")
        assert_problem(
            client.post("/api/v1/runs/w2/cancel", json={"reason": "again"}),
            409,
            "invalid_operation",
        )
        assert_problem(client.post("/api/v1/runs/w2/cancel", json={}), 422, "invalid_request")
    requested = next(e for e in run["timeline"] if e["type"] == "CancelRequested")
    assert requested["data"]["by"] == "ops" and requested["data"]["reason"] == "customer asked"


def test_workflows_and_queues(server: Server) -> None:
    with server.client(server.viewer) as client:
        listed = client.get("/api/v1/workflows").json()
        queues = client.get("/api/v1/queues").json()
        assert_problem(client.get("/api/v1/nowhere"), 404, "not_found")
        assert_problem(client.delete("/api/v1/runs"), 405, "method_not_allowed")
    names = {w["name"]: w for w in listed["workflows"]}
    assert names["http-pair"]["parameters"] == ["a", "b"]
    steps = {s["name"]: s for s in listed["steps"]}
    assert steps["http.reserve"]["compensation"] == "tests.http.sagas.release"
    assert steps["http.ship"]["pivot"] is True
    assert queues["queues"][0]["name"] == "default" and queues["queues"][0]["limit"] is None
    assert quote("a/b", safe="") == "a%2Fb"
