"""Runs whose stored rows do not decode: the UI shows them as such and never fails.

The rows are damaged the way the CLI's tests damage them (``tests/cli``): with raw SQL
into the server's own SQLite file while it runs — a blob column holding text, a status no
version wrote. Nothing is mocked; the server's log must stay free of tracebacks (the
``ui`` fixture checks it when the module ends).
"""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import quote

import pytest

from tests.ui.conftest import DEADLINE, UiServer, sign_in

ORDER = ("older-ok", "damaged-input", "damaged-steps", "sound-stuck", "newer-ok")
"""Created in this order, so the runs list (newest first) has runs past each damaged one."""


def garble(ui: UiServer, statement: str, *params: str) -> None:
    conn = sqlite3.connect(ui.db.removeprefix("sqlite:///"), timeout=30)
    try:
        assert conn.execute(statement, params).rowcount == 1, statement
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def damaged(ui: UiServer) -> UiServer:
    for run_id in ORDER:
        item = "book" if run_id.endswith("-ok") else "stuck decline"
        ui.start("http-order", item, run_id)
        ui.wait_status(run_id, "COMPLETED" if run_id.endswith("-ok") else "COMPENSATION_FAILED")
    garble(ui, "UPDATE runs SET input = 'not a blob' WHERE run_id = ?", "damaged-input")
    garble(
        ui, "UPDATE steps SET output = 'not a blob' WHERE run_id = ? AND seq = 1", "damaged-steps"
    )
    return ui


def row(html: str, run_id: str) -> str:
    """The runs table's row of ``run_id``."""
    start = html.index(f'href="/runs/{run_id}"')
    return html[html.rindex("<tr", 0, start) : html.index("</tr>", start)]


def test_the_runs_list_marks_a_damaged_run_and_goes_on_past_it(damaged: UiServer) -> None:
    with damaged.browser_client() as client:
        sign_in(client, damaged.viewer)
        page = client.get("/runs")
    assert page.status_code == 200, page.text
    shown = [run_id for run_id in reversed(ORDER) if f'href="/runs/{run_id}"' in page.text]
    assert shown == list(reversed(ORDER))
    bad = row(page.text, "damaged-input")
    assert 'class="damaged"' in bad and ">undecodable</span>" in bad
    assert "undecodable: its input" in bad  # says which field
    assert "damaged" not in row(page.text, "older-ok")


def test_needs_attention_lists_damaged_runs_with_what_is_wrong(damaged: UiServer) -> None:
    with damaged.browser_client() as client:
        sign_in(client, damaged.viewer)
        page = client.get("/")
    assert page.status_code == 200, page.text
    assert ">undecodable</span>" in row(page.text, "damaged-input")
    assert "undecodable: its input" in row(page.text, "damaged-input")
    assert "undecodable: its output" in row(page.text, "damaged-steps")  # its steps, this time
    assert "compensation release (undoing reserve) failed" in row(page.text, "sound-stuck")


def test_a_damaged_runs_page_says_what_is_wrong_and_what_to_do(damaged: UiServer) -> None:
    with damaged.browser_client() as client:
        csrf = sign_in(client, damaged.operator)
        page = client.get("/runs/damaged-input")
        steps = client.get("/runs/damaged-steps")
        refused = client.post(
            "/runs/damaged-input/retry",
            data={"csrf": csrf, "reason": "try", "confirmed": "yes"},
            follow_redirects=True,
        )
        with client.stream("GET", "/runs/damaged-input/live") as stream:
            said = [line for line in stream.iter_lines() if line.startswith("event:")]
    assert page.status_code == 200, page.text
    assert "Its stored record cannot be decoded" in page.text
    assert "its input" in page.text and "sagaline db check" in page.text
    assert "What decoded" not in page.text  # the run's own row is the damaged one
    assert steps.status_code == 200, steps.text
    assert "its output" in steps.text and "step #1" in steps.text
    assert "What decoded" in steps.text and "COMPENSATION_FAILED" in steps.text
    assert refused.status_code == 200 and "Retry the run: refused" in refused.text  # flashed
    assert "Its stored record cannot be decoded" in refused.text  # on the run's page
    assert said == ["event: end"]
    assert damaged.wait_status("sound-stuck", "COMPENSATION_FAILED")


def test_an_operator_reaches_a_damaged_run_from_the_landing_page_in_chromium(
    damaged: UiServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    from tests.ui.test_browser import sign_in as sign_in_browser

    context = browser.new_context()
    context.set_default_timeout(int(DEADLINE * 1000))
    page = context.new_page()
    try:
        sign_in_browser(page, damaged, damaged.operator)
        page.locator("#attention a", has_text="damaged-input").click()
        page.wait_for_url(f"**/runs/{quote('damaged-input')}")
        expect(page.locator("h1")).to_contain_text("damaged-input")
        expect(page.locator("#damaged .table")).to_have_text("runs")
        expect(page.locator("#damaged .todo")).to_contain_text("sagaline db check")
    finally:
        context.close()


def test_a_status_no_version_wrote_leaves_the_counts_and_lists_working(damaged: UiServer) -> None:
    """Last in the module: it adds a run whose status column is garbled. The counts by
    status leave it out instead of failing every page that shows them."""
    damaged.start("http-order", "book", "garbled-status")
    damaged.wait_status("garbled-status", "COMPLETED")
    garble(damaged, "UPDATE runs SET status = 'GAR BLED' WHERE run_id = ?", "garbled-status")
    with damaged.browser_client() as client:
        sign_in(client, damaged.viewer)
        landing, runs = client.get("/"), client.get("/runs")
    assert landing.status_code == 200, landing.text
    assert runs.status_code == 200, runs.text
    assert ">undecodable</span>" in row(runs.text, "garbled-status")
    with damaged.api(damaged.viewer) as api:
        listed = api.get("/api/v1/runs")
        one = api.get("/api/v1/runs/damaged-input")
    assert listed.status_code == 200, listed.text
    assert "GAR BLED" not in listed.json()["counts"]
    # The API cannot render a run it cannot decode; its problem says what is wrong.
    assert one.status_code == 500 and one.json()["code"] == "undecodable_row"
    assert "'runs'" in one.json()["detail"] and "not a blob" in one.json()["detail"]
