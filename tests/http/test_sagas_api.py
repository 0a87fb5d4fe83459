"""``/api/v1/sagas`` and the saga gauges against a real server, over both stores.

The server's database is seeded by a real tracker (its store, then :meth:`Tracker.record`)
after the server started and before anything asked it about sagas: the server reads it
through the same reading tracker as the UI's saga pages.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sagaline.engine.tracker import Choreography, Tracker
from sagaline.model.choreography import Envelope
from sagaline.store.tracker import open_tracker_store
from tests.http.conftest import Server
from tests.http.test_security import assert_problem

API_ORDER = Choreography(
    "api_order",
    start="ApiOrderPlaced",
    completed="ApiOrderShipped",
    compensated="ApiOrderRefunded",
    failed="ApiOrderFailed",
    deadline=timedelta(minutes=5),
)
ODD = "order/7 <b>&"
"""A correlation id with a slash and markup: it comes back as data, found by its path."""
COUNTS = {"IN_PROGRESS": 2, "COMPLETED": 1, "COMPENSATED": 1, "FAILED": 1, "STALLED": 2}
NEWEST_FIRST = ["a-new", "stranger", ODD, "a-refunded", "a-done", "a-late-2", "a-late-1"]


def events(now: datetime) -> list[Envelope]:
    def e(n: int, kind: str, saga: str, ago: float, source: str | None, cause: int = 0) -> Envelope:
        caused_by = f"e{cause}" if cause else None
        return Envelope(f"e{n}", kind, saga, source, caused_by, now - timedelta(minutes=ago))

    return [
        e(1, "ApiOrderPlaced", "a-done", 10, "orders"),
        e(2, "ApiOrderShipped", "a-done", 9, "shipping", cause=1),
        e(3, "ApiOrderPlaced", "a-refunded", 8, "orders"),
        e(4, "ApiOrderRefunded", "a-refunded", 7, "payments", cause=3),
        e(5, "ApiOrderPlaced", ODD, 6, "orders"),
        e(6, "ApiOrderFailed", ODD, 5.5, "payments", cause=5),
        e(7, "ApiOrderPlaced", "a-late-1", 120, "orders"),
        e(8, "ApiOrderPlaced", "a-late-2", 60, "orders"),
        e(9, "ApiOrderPlaced", "a-new", 1, "orders"),
        e(10, "SomethingElse", "stranger", 2, None),
    ]


async def seed(db: str) -> None:
    store = open_tracker_store(db)
    await store.open(create=True)
    await store.save_knowledge([API_ORDER], [])  # what a tracker process knows, stored
    await store.aclose()
    async with Tracker(db=db) as tracker:
        for event in events(datetime.now(UTC)):
            await tracker.record(event)


@pytest.fixture
def tracked(server: Server) -> Server:
    """The server, with sagas recorded into its database."""
    asyncio.run(seed(server.db))
    return server


def schema_of(client: httpx.Client, name: str) -> Any:
    from jsonschema_rs import validator_for

    doc = client.get("/api/v1/openapi.json").json()
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return validator_for(schema)


def saga_path(correlation_id: str) -> str:
    return f"/api/v1/sagas/{quote(correlation_id, safe='')}"


def test_the_list_shows_every_saga_newest_first_with_counts_by_status(tracked: Server) -> None:
    with tracked.client(tracked.viewer) as client:  # reading needs no operator
        response = client.get("/api/v1/sagas")
        assert response.status_code == 200 and response.headers["content-type"] == (
            "application/json"
        )
        body = response.json()
        schema_of(client, "SagaList").validate(body)
    assert body["recorded"] is True
    assert [s["correlation_id"] for s in body["sagas"]] == NEWEST_FIRST
    assert body["counts"] == COUNTS
    by_id = {s["correlation_id"]: s for s in body["sagas"]}
    assert by_id["a-done"]["status"] == "COMPLETED" and by_id["a-done"]["name"] == "api_order"
    assert by_id["a-done"]["events"] == 2 and by_id["a-done"]["waiting_for"] == []
    assert by_id[ODD]["status"] == "FAILED"
    assert by_id["a-refunded"]["status"] == "COMPENSATED"
    assert by_id["stranger"]["status"] == "IN_PROGRESS" and by_id["stranger"]["name"] is None
    late = by_id["a-late-1"]
    assert late["status"] == "STALLED"
    # Who sends the awaited event is learnt from traffic: shipping answered a placed order.
    assert late["waiting_for"] == [{"events": ["ApiOrderShipped"], "service": "shipping"}]
    started = datetime.fromisoformat(late["started_at"])
    assert timedelta(minutes=119) < datetime.now(UTC) - started < timedelta(minutes=121)


def test_the_list_filters_by_status_and_keeps_to_the_limit(tracked: Server) -> None:
    def ids(**params: str) -> list[str]:
        response = client.get("/api/v1/sagas", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["counts"] == COUNTS  # of every saga, whatever the filter
        return [s["correlation_id"] for s in response.json()["sagas"]]

    with tracked.client(tracked.viewer) as client:
        assert ids(status="STALLED") == ["a-late-2", "a-late-1"]
        assert ids(status="completed") == ["a-done"]  # any case, as `sagaline sagas list`
        assert ids(status="IN_PROGRESS") == ["a-new", "stranger"]
        assert ids(status="FAILED") == [ODD]
        assert ids(limit="3") == NEWEST_FIRST[:3]
        assert ids(status="STALLED", limit="1") == ["a-late-2"]
        for params in ({"status": "LOST"}, {"limit": "0"}, {"limit": "501"}, {"limit": "x"}):
            assert_problem(client.get("/api/v1/sagas", params=params), 422, "invalid_request")


def pages(client: httpx.Client, **params: str) -> list[list[str]]:
    """Every page of the list, following next_cursor to the last (it has none)."""
    found: list[list[str]] = []
    cursor = None
    while len(found) < 20:
        response = client.get(
            "/api/v1/sagas", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["counts"] == COUNTS
        found.append([s["correlation_id"] for s in body["sagas"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError(f"more than 20 pages: {found}")


def test_the_list_pages_with_an_opaque_cursor_never_repeating_or_skipping(
    tracked: Server,
) -> None:
    with tracked.client(tracked.viewer) as client:
        assert pages(client, limit="3") == [NEWEST_FIRST[:3], NEWEST_FIRST[3:6], NEWEST_FIRST[6:]]
        assert pages(client, limit="7") == [NEWEST_FIRST]  # a full last page says so
        assert pages(client, status="STALLED", limit="1") == [["a-late-2"], ["a-late-1"]]
        assert pages(client, status="in_progress", limit="1") == [["a-new"], ["stranger"]]
        assert pages(client, status="FAILED", limit="1") == [[ODD]]
        first = client.get("/api/v1/sagas", params={"limit": "2"}).json()
        schema_of(client, "SagaList").validate(first)
        cursor = first["next_cursor"]
        assert isinstance(cursor, str) and "a-" not in cursor  # opaque, URL-safe
        assert quote(cursor, safe="") == cursor
        # A cursor pages any status from where it points: after the second newest saga.
        after = client.get("/api/v1/sagas", params={"cursor": cursor, "status": "COMPLETED"})
        assert [s["correlation_id"] for s in after.json()["sagas"]] == ["a-done"]


def test_a_cursor_this_api_did_not_return_is_refused(tracked: Server) -> None:
    import base64

    def forged(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode()

    bad = ["", "not a cursor", "é", forged("[1.5]"), forged('{"a": 1}'), forged('["x", "y"]')]
    bad += [forged('[1e999, "a"]'), forged('[1.0, "a\\u0000b"]'), forged('[1.0, "\\ud800"]')]
    with tracked.client(tracked.viewer) as client:
        for cursor in bad:
            response = client.get("/api/v1/sagas", params={"cursor": cursor})
            assert_problem(response, 422, "invalid_cursor")
            assert "cursor" in response.json()["detail"]
    assert "Traceback" not in tracked.logs()


def test_one_saga_shows_its_participants_and_timeline_in_causal_order(tracked: Server) -> None:
    with tracked.client(tracked.viewer) as client:
        detail = schema_of(client, "SagaDetail")
        done = client.get("/api/v1/sagas/a-done").json()
        late = client.get("/api/v1/sagas/a-late-1").json()
        odd = client.get(saga_path(ODD))
        missing = client.get("/api/v1/sagas/nobody")
    for body in (done, late, odd.json()):
        detail.validate(body)
    assert done["status"] == "COMPLETED" and done["participants"] == ["orders", "shipping"]
    assert [(e["id"], e["type"], e["source"], e["causation_id"]) for e in done["timeline"]] == [
        ("e1", "ApiOrderPlaced", "orders", None),
        ("e2", "ApiOrderShipped", "shipping", "e1"),
    ]
    assert done["waiting_for"] == []
    assert late["status"] == "STALLED" and [e["id"] for e in late["timeline"]] == ["e7"]
    assert late["waiting_for"] == [{"events": ["ApiOrderShipped"], "service": "shipping"}]
    assert odd.status_code == 200 and odd.headers["content-type"] == "application/json"
    assert odd.json()["correlation_id"] == ODD and odd.json()["status"] == "FAILED"
    assert_problem(missing, 404, "saga_not_found")
    assert "sagaline sagas list" in missing.json()["detail"]


def test_saga_routes_refuse_anonymous_and_forged_callers(tracked: Server) -> None:
    for token in (None, "sgl_forged"):
        with tracked.client(token) as client:
            for path in ("/api/v1/sagas", "/api/v1/sagas/a-done", "/api/v1/sagas?status=FAILED"):
                assert_problem(client.get(path), 401, "unauthenticated")


def test_a_token_without_payload_access_sees_the_same_sagas(tracked: Server) -> None:
    # The tracker keeps envelopes, never data: there is no payload whose shape to show.
    paths = ["/api/v1/sagas", "/api/v1/sagas/a-done", saga_path(ODD)]
    with tracked.client(tracked.operator) as client:
        full = [client.get(path).json() for path in paths]
    with tracked.client(tracked.shapes) as client:
        shaped = [client.get(path).json() for path in paths]
    assert shaped == full
    for body in full[1:]:
        assert all(
            set(e) == {"id", "type", "source", "causation_id", "time"} for e in body["timeline"]
        )


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_saga_gauges_count_the_recorded_sagas_by_status(tracked: Server) -> None:
    deadline = time.monotonic() + 20
    with tracked.client(tracked.viewer) as client:
        while True:  # the first scrape only asks for a count
            samples = scrape(client)
            if ("sagaline_sagas_stalled", ()) in samples or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    for status, n in COUNTS.items():
        assert samples[("sagaline_sagas", (("status", status),))] == n
    assert samples[("sagaline_sagas_stalled", ())] == 2


def test_a_database_no_tracker_wrote_into_has_no_sagas(server: Server) -> None:
    with server.client(server.viewer) as client:
        listing = client.get("/api/v1/sagas")
        assert listing.status_code == 200
        assert listing.json() == {
            "recorded": False,
            "sagas": [],
            "counts": dict.fromkeys(COUNTS, 0),
            "next_cursor": None,
        }
        assert_problem(client.get("/api/v1/sagas/a-done"), 404, "saga_not_found")
        samples = scrape(client)
        time.sleep(0.3)  # a count was asked for; it finds no tracker
        samples = scrape(client)
    assert not any(name.startswith("sagaline_sagas") for name, _ in samples)
    assert "Traceback" not in server.logs()
