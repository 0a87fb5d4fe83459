"""Semantic locks in the UI against the real server: the list by key (holders, then the
waiters in arrival order), the prefix filter, a key's own page (a free key says so), a
run's lock step linked to its key, markup in a key shown as text, and sessions required.

The holders and waiters are real runs of ``ui-locked`` (``tests.ui.flows``): each takes
its key, or waits for it, and holds it until the signal ``go``, which no test sends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tests.ui.conftest import DEADLINE, UiServer, sign_in

ORDER = "order:901"
DOC = "doc:5"
HOSTILE = "<script>alert(1)</script>&\"'"
HOSTILE_TEXT = "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#34;&#39;"


def key_url(key: str) -> str:
    return f"/locks/{quote(key, safe='')}"


def queue(client: httpx.Client, key: str) -> list[str]:
    """The key's holders, then its waiters, by run id, as the API answers."""
    info = client.get(f"/api/v1{key_url(key)}").json()
    return [r["run_id"] for r in info["holders"] + info["waiters"]]


def take(ui: UiServer, run_id: str, key: str, mode: str = "exclusive") -> None:
    """Start a run that asks for ``key``; return once it holds the key or waits for it (so
    that the next run asks after it) and is suspended there."""
    body = {"workflow": "ui-locked", "input": {"key": key, "mode": mode}, "run_id": run_id}
    with ui.api() as client:
        response = client.post("/api/v1/runs", json=body)
        assert response.status_code in (200, 201), response.text
        deadline = time.monotonic() + DEADLINE
        while run_id not in queue(client, key):
            assert time.monotonic() < deadline, queue(client, key)
            time.sleep(0.05)
    ui.wait_status(run_id, "SUSPENDED")


@pytest.fixture(scope="module")
def locked(ui: UiServer) -> Iterator[UiServer]:
    take(ui, "lk-a", ORDER)
    take(ui, "lk-b", ORDER)
    take(ui, "lk-c", ORDER)
    take(ui, "lk-r1", DOC, "shared")
    take(ui, "lk-r2", DOC, "shared")
    take(ui, "lk-x", HOSTILE)
    with ui.api() as client:
        assert queue(client, ORDER) == ["lk-a", "lk-b", "lk-c"]
    yield ui


def row_of(html: str, key: str) -> str:
    """The list's row of ``key``: from its link to the end of the row."""
    start = html.index(f'href="{key_url(key)}"')
    return html[start : html.index("</tr>", start)]


def cell(row: str, name: str) -> str:
    start = row.index(f'class="{name}"')
    return row[start : row.index("</td>", start)]


def test_the_locks_page_lists_each_keys_holders_and_its_waiters_in_arrival_order(
    locked: UiServer,
) -> None:
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)  # reading locks needs no operator
        listing = client.get("/locks")
        assert listing.status_code == 200
        order = row_of(listing.text, ORDER)
        holders, waiters = cell(order, "holders"), cell(order, "waiters")
        assert 'href="/runs/lk-a"' in holders and "exclusive" in holders
        assert "holds it since" in holders and "SUSPENDED" in holders
        assert "lk-b" not in holders and "lk-a" not in waiters
        assert waiters.index('href="/runs/lk-b"') < waiters.index('href="/runs/lk-c"')
        assert "waits since" in waiters
        shared = cell(row_of(listing.text, DOC), "holders")
        assert 'href="/runs/lk-r1"' in shared and 'href="/runs/lk-r2"' in shared
        assert "shared" in shared and "exclusive" not in shared
        assert cell(row_of(listing.text, DOC), "waiters").count("<li") == 0


def test_the_prefix_filter_narrows_the_list_and_an_empty_list_says_what_locks_are(
    locked: UiServer,
) -> None:
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)
        orders = client.get("/locks", params={"prefix": "order:"}).text
        assert key_url(ORDER) in orders and key_url(DOC) not in orders
        assert 'name="prefix" value="order:"' in orders
        none = client.get("/locks", params={"prefix": "sku:"})
        assert none.status_code == 200
        assert "No key starting with <code>sku:</code> is held or waited for" in none.text
        assert 'sagaline.lock("order:42")' in none.text  # how a workflow takes one
        typed = client.get("/locks", params={"prefix": '"><b>bold'}).text
        assert '"><b>bold' not in typed and "&#34;&gt;&lt;b&gt;bold" in typed
        cut = client.get("/locks", params={"limit": "1"}).text
        assert 'id="cut"' in cut and "Only the first 1 requests are shown" in cut


def test_bad_filters_get_a_clear_message_not_an_error_page(locked: UiServer) -> None:
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)
        for params, message in (
            ({"limit": "0"}, "limit must be between 1 and 1000"),
            ({"limit": "many"}, "limit must be an integer"),
            ({"prefix": "k" * 300}, "is not valid: it is 300 characters long"),
            ({"prefix": "order:\x01"}, "control character"),
        ):
            response = client.get("/locks", params=params)
            assert response.status_code == 422, params
            assert response.headers["content-type"].startswith("text/html")
            assert 'id="filter-error"' in response.text and message in response.text
    assert "Traceback" not in locked.log.read_text()


def test_a_keys_page_shows_its_holders_and_its_queue_in_order(locked: UiServer) -> None:
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)
        page = client.get(key_url(ORDER))
        assert page.status_code == 200
        html = page.text
        holders = html[html.index('id="holders"') : html.index('id="queue"')]
        waiting = html[html.index('id="queue"') :]
        assert 'href="/runs/lk-a"' in holders and "lk-b" not in holders
        assert waiting.index('href="/runs/lk-b"') < waiting.index('href="/runs/lk-c"')
        assert "lk-a" not in waiting
        shared = client.get(key_url(DOC)).text
        assert "shared" in shared and "Nobody waits for it." in shared


def test_a_free_or_unknown_key_says_it_is_free_and_an_invalid_one_why(
    locked: UiServer,
) -> None:
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)
        free = client.get(key_url("order:nobody-took-it"))
        assert free.status_code == 200
        assert "This key is free" in free.text and "sagaline.lock(" in free.text
        invalid = client.get(key_url("k" * 300))
        assert invalid.status_code == 422
        assert 'id="key-error"' in invalid.text and "lock key" in invalid.text
        assert "is not valid" in invalid.text
    assert "Traceback" not in locked.log.read_text()


def test_a_parked_holder_is_marked_as_keeping_the_key_until_an_operator_acts(
    locked: UiServer,
) -> None:
    locked.start("ui-locked-order", "stuck decline", "lk-parked")
    locked.wait_status("lk-parked", "COMPENSATION_FAILED")
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)
        note = "parked: it holds the key until an operator ends the run"
        page = client.get(key_url("order:stuck decline")).text
        holders = page[page.index('id="holders"') : page.index('id="queue"')]
        assert 'href="/runs/lk-parked"' in holders and "COMPENSATION_FAILED" in holders
        assert note in holders
        assert note in row_of(client.get("/locks").text, "order:stuck decline")
        assert note not in row_of(client.get("/locks").text, ORDER)  # suspended, not parked


def test_a_runs_lock_step_links_to_the_keys_page(locked: UiServer) -> None:
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)
        run = client.get("/runs/lk-b").text
        steps = run[run.index('id="steps"') : run.index('id="compensations"')]
        assert f'<a href="{key_url(ORDER)}" class="lock-key">{ORDER}</a>' in steps
        plain = client.get("/runs/lk-a").text  # other steps keep their plain names
        assert plain.count('class="lock-key"') == 1


def test_a_key_with_markup_is_shown_as_text(locked: UiServer) -> None:
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)
        for path in ("/locks", key_url(HOSTILE), "/runs/lk-x"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert HOSTILE not in page.text and "<script>" not in page.text, path
            assert HOSTILE_TEXT in page.text, path
        assert 'href="/runs/lk-x"' in client.get(key_url(HOSTILE)).text
        assert f'href="{key_url(HOSTILE)}"' in client.get("/runs/lk-x").text


def test_lock_pages_need_a_session(locked: UiServer) -> None:
    for cookie in (None, "forged-session-id"):
        with locked.browser_client() as client:
            if cookie:
                client.cookies.set("sagaline_session", cookie)
            for path in ("/locks", "/locks?prefix=order:", key_url(ORDER)):
                response = client.get(path)
                assert response.status_code == 303, (path, response.text)
                assert response.headers["location"].startswith("/signin?next=")
                assert "lk-a" not in response.text


def test_the_navigation_links_to_the_locks_page(locked: UiServer) -> None:
    with locked.browser_client() as client:
        sign_in(client, locked.viewer)
        landing = client.get("/").text
        nav = landing[landing.index("<nav>") : landing.index("</nav>")]
        assert '<a href="/sagas">Sagas</a>' in nav and '<a href="/locks">Locks</a>' in nav
        here = client.get("/locks").text
        assert '<a href="/locks" aria-current="page">Locks</a>' in here
