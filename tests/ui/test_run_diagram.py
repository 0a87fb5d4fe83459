"""The run page's diagram, drawn by ``sagaline.diagrams``, in real Chromium: each step's
outcome and its compensation's, the pivot marked, the steps not reached as not run, and
painted although the page's Content-Security-Policy allows no inline style."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.ui.conftest import DEADLINE, UiServer
from tests.ui.test_browser import sign_in

MS = int(DEADLINE * 1000)
VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""
NODES = """() => [...document.querySelectorAll("#diagram svg g[data-node]")].map((g) => ({
  title: g.querySelector("title").textContent,
  classes: g.getAttribute("class"),
  text: [...g.querySelectorAll("text")].map((t) => t.textContent).join(" "),
  fill: getComputedStyle(g.querySelector("rect, circle, polygon")).fill,
}))"""
RED = "rgb(254, 226, 226)"
"""A failed step's fill, from the drawing's presentation attributes."""


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(MS)
    context.add_init_script(VIOLATIONS)
    yield context.new_page()
    context.close()


def drawn(page: Any, ui: UiServer, run_id: str) -> dict[str, dict[str, str]]:
    """The run page's diagram nodes by name: their classes, their text and their fill."""
    page.goto(f"{ui.url}/runs/{quote(run_id, safe='')}")
    page.locator("#diagram svg").wait_for(state="visible")
    nodes: list[dict[str, str]] = page.evaluate(NODES)
    assert page.evaluate("window.cspViolations") == []
    return {node["title"].split(":")[0].split(" (")[0].split(" — ")[0]: node for node in nodes}


def shows(node: dict[str, str], outcome: str, *words: str) -> None:
    assert f"outcome-{outcome}" in node["classes"].split(), node
    for word in words:
        assert word in node["text"], node


def test_the_run_page_draws_each_outcome_of_a_compensated_and_a_stuck_run(
    ui: UiServer, page: Any, artifacts: Path
) -> None:
    ui.start("http-order", "decline", "drawn-compensated")
    ui.start("http-order", "stuck decline", "drawn-stuck")
    ui.wait_status("drawn-compensated", "COMPENSATED")
    ui.wait_status("drawn-stuck", "COMPENSATION_FAILED")
    sign_in(page, ui, ui.viewer)

    nodes = drawn(page, ui, "drawn-compensated")
    shows(nodes["http.reserve"], "compensated", "compensated")
    shows(nodes["http.charge"], "failed", "failed")
    shows(nodes["tests.http.sagas.release"], "succeeded", "succeeded")
    assert "outcome-" not in nodes["start"]["classes"]

    nodes = drawn(page, ui, "drawn-stuck")
    shows(nodes["http.reserve"], "compensation_failed", "compensation failed")
    shows(nodes["http.charge"], "failed", "failed")
    shows(nodes["tests.http.sagas.release"], "failed", "failed")
    assert nodes["http.charge"]["fill"] == RED  # painted: the policy kept the attributes
    page.locator("#diagram").screenshot(path=str(artifacts / "run-diagram-stuck.png"))


def test_the_run_page_draws_a_skipped_compensation_a_wait_and_a_pivot(
    ui: UiServer, page: Any
) -> None:
    ui.start("http-order", "stuck decline", "drawn-skipped")
    ui.start("http-approval", "desk", "drawn-waiting")
    ui.start("ui-shipping", "lost parcel", "drawn-pivot")
    ui.wait_status("drawn-skipped", "COMPENSATION_FAILED")
    with ui.api() as client:
        skipped = client.post("/api/v1/runs/drawn-skipped/skip", json={"reason": "by hand"})
        assert skipped.status_code == 200, skipped.text
    ui.wait_status("drawn-skipped", "COMPENSATED")
    ui.wait_status("drawn-waiting", "SUSPENDED")
    ui.wait_status("drawn-pivot", "FAILED_AFTER_PIVOT")
    sign_in(page, ui, ui.viewer)

    nodes = drawn(page, ui, "drawn-skipped")
    shows(nodes["http.reserve"], "skipped", "skipped by hand")
    shows(nodes["tests.http.sagas.release"], "skipped", "skipped by hand")

    nodes = drawn(page, ui, "drawn-waiting")
    shows(nodes["approved"], "waiting", "waiting")
    shows(nodes["http.reserve"], "pending", "not run")
    shows(nodes["tests.http.sagas.release"], "pending", "not run")

    nodes = drawn(page, ui, "drawn-pivot")
    shows(nodes["ui.pack"], "succeeded", "succeeded")
    shows(nodes["ui.ship"], "succeeded", "pivot", "succeeded")
    assert "pivot" in nodes["ui.ship"]["title"]
    shows(nodes["ui.notify"], "failed", "failed", "2 attempts")
    shows(nodes["tests.ui.flows.unpack"], "pending", "not run")  # sealed by the pivot
