"""The choreographed sagas in the UI: the list by status, one saga's timeline and what it
waits for, the stalled ones on the landing page, and a database no tracker wrote into.

The server's database is seeded by a real tracker (its store, then :meth:`Tracker.record`)
before the server starts; the server reads it through its own tracker.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from sagaline.engine.tracker import Choreography, Tracker
from sagaline.model.choreography import Envelope
from sagaline.store.tracker import open_tracker_store
from tests.http.conftest import cli, start_server, stop
from tests.ui.conftest import UiServer, sign_in

UI_ORDER = Choreography(
    "ui_order",
    start="UiOrderPlaced",
    completed="UiOrderShipped",
    compensated="UiOrderRefunded",
    deadline=timedelta(minutes=5),
)
NOW = datetime.now(UTC)
HOSTILE = "<script>alert(1)</script>"


def event(n: int, kind: str, saga: str, ago: timedelta, source: str) -> Envelope:
    return Envelope(f"e{n}", kind, saga, source, None, NOW - ago)


async def seed(db: str) -> None:
    store = open_tracker_store(db)
    await store.open(create=True)
    await store.save_knowledge([UI_ORDER], [])
    await store.aclose()
    async with Tracker(db=db) as tracker:
        for e in (
            event(1, "UiOrderPlaced", "o-done", timedelta(minutes=3), "orders"),
            event(2, "UiOrderShipped", "o-done", timedelta(minutes=2), "shipping"),
            event(3, "UiOrderPlaced", "o-late", timedelta(hours=2), "orders"),
            event(4, "UiOrderPlaced", HOSTILE, timedelta(hours=1), "orders"),
        ):
            await tracker.record(e)


@pytest.fixture(scope="module")
def sagas_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    folder = tmp_path_factory.mktemp("sagas-ui")
    db = f"sqlite:///{folder / 'sagaline.db'}"
    log = folder / "server.log"
    operator = cli("tokens", "create", "ops", "--role", "operator", "--db", db, "--quiet")
    viewer = cli("tokens", "create", "watcher", "--role", "viewer", "--db", db, "--quiet")
    asyncio.run(seed(db))
    process, url = start_server(db, log)
    try:
        yield UiServer(url, db, log, operator.strip(), viewer.strip())
    finally:
        code = stop(process)
        assert code in (0, -signal.SIGTERM), log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()


def test_the_landing_page_lists_the_stalled_sagas_with_what_they_wait_for(
    sagas_ui: UiServer,
) -> None:
    with sagas_ui.browser_client() as client:
        sign_in(client, sagas_ui.viewer)
        html = client.get("/").text
        stalled = html[html.index('id="stalled"') :]
        stalled = stalled[: stalled.index("</table>")]
        assert 'href="/sagas/o-late"' in stalled
        assert "UiOrderShipped from shipping" in stalled  # who sends it, learnt from traffic
        assert "o-done" not in stalled


def test_the_sagas_list_filters_by_status_and_links_each_saga(sagas_ui: UiServer) -> None:
    with sagas_ui.browser_client() as client:
        sign_in(client, sagas_ui.viewer)
        every = client.get("/sagas")
        assert every.status_code == 200
        for saga in ("o-done", "o-late"):
            assert f'href="/sagas/{saga}"' in every.text
        done = client.get("/sagas?status=completed").text
        assert 'href="/sagas/o-done"' in done and "/sagas/o-late" not in done
        late = client.get("/sagas?status=STALLED").text
        assert 'href="/sagas/o-late"' in late and "/sagas/o-done" not in late
        wrong = client.get("/sagas?status=LOST")
        assert wrong.status_code == 422 and "unknown saga status" in wrong.text


def test_a_saga_page_shows_its_timeline_in_order_and_what_it_waits_for(
    sagas_ui: UiServer,
) -> None:
    with sagas_ui.browser_client() as client:
        sign_in(client, sagas_ui.viewer)
        done = client.get("/sagas/o-done").text
        assert "COMPLETED" in done and "ui_order" in done
        assert done.index("UiOrderPlaced") < done.index("UiOrderShipped")
        assert 'id="waiting"' not in done
        late = client.get("/sagas/o-late").text
        waiting = late[late.index('id="waiting"') :]
        assert "UiOrderShipped from shipping" in waiting and "deadline" in waiting
        missing = client.get("/sagas/nobody")
        assert missing.status_code == 404 and "No such saga" in missing.text


def test_a_correlation_id_with_markup_is_shown_as_text(sagas_ui: UiServer) -> None:
    with sagas_ui.browser_client() as client:
        sign_in(client, sagas_ui.viewer)
        listing = client.get("/sagas").text
        assert HOSTILE not in listing and "&lt;script&gt;" in listing
        page = client.get(f"/sagas/{quote(HOSTILE, safe='')}")
        assert page.status_code == 200
        assert HOSTILE not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_saga_pages_need_a_session(sagas_ui: UiServer) -> None:
    with sagas_ui.browser_client() as client:
        for path in ("/sagas", "/sagas/o-done"):
            response = client.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/signin?next=")


def test_a_database_no_tracker_wrote_into_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'plain.db'}"
    viewer = cli("tokens", "create", "watcher", "--role", "viewer", "--db", db, "--quiet")
    process, url = start_server(db, tmp_path / "server.log")
    try:
        server = UiServer(url, db, tmp_path / "server.log", "", viewer.strip())
        with server.browser_client() as client:
            sign_in(client, server.viewer)
            listing = client.get("/sagas")
            assert listing.status_code == 200
            assert "No tracker has recorded into this database" in listing.text
            assert 'id="stalled"' not in client.get("/").text
            assert client.get("/sagas/o-1").status_code == 404
    finally:
        stop(process)
    assert not re.search("Traceback", (tmp_path / "server.log").read_text())
