"""A real ``sagaline serve`` (with its worker) on SQLite, seeded by running real workflows,
and a real Chromium driven by Playwright.

The server imports ``tests.http.sagas`` (an item containing ``stuck`` parks its run in
COMPENSATION_FAILED, and the server's own worker carries a run on once an operator skips)
and ``tests.ui.flows`` (a workflow with a pivot).
Chromium is Debian's (``/usr/bin/chromium``, or ``SAGALINE_CHROMIUM``): where it or
Playwright is missing, browser tests skip with the reason locally and fail under CI.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import missing_service
from tests.http.conftest import cli, start_server, stop

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = os.environ.get("SAGALINE_CHROMIUM", "/usr/bin/chromium")
DEADLINE = 30.0


@dataclass
class UiServer:
    url: str
    db: str
    log: Path
    operator: str
    viewer: str

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token or self.operator}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def browser_client(self) -> httpx.Client:
        """A client that behaves like a browser: cookies, no bearer header, no redirects."""
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    def token(self, name: str, role: str) -> str:
        return cli("tokens", "create", name, "--role", role, "--db", self.db, "--quiet").strip()

    def start(self, workflow: str, item: str, run_id: str) -> None:
        with self.api() as client:
            body = {"workflow": workflow, "input": item, "run_id": run_id}
            response = client.post("/api/v1/runs", json=body)
            assert response.status_code in (200, 201), response.text

    def wait_status(self, run_id: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        with self.api() as client:
            while True:
                body: dict[str, Any] = client.get(f"/api/v1/runs/{quote(run_id, safe='')}").json()
                if body.get("status") == status or time.monotonic() > deadline:
                    assert body.get("status") == status, body
                    return body
                time.sleep(0.05)


def sign_in(client: httpx.Client, token: str) -> str:
    """Sign ``client`` in through the form, as a browser would; returns the CSRF token."""
    form = client.get("/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text
    done = client.post("/signin", data={"nonce": nonce[1], "token": token, "next": "/"})
    assert done.status_code == 303, done.text
    return csrf_of(client.get("/").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    folder = tmp_path_factory.mktemp("ui")
    db = f"sqlite:///{folder / 'sagaline.db'}"
    log = folder / "server.log"
    operator = cli("tokens", "create", "ops", "--role", "operator", "--db", db, "--quiet")
    viewer = cli("tokens", "create", "watcher", "--role", "viewer", "--db", db, "--quiet")
    process, url = start_server(db, log, "--import", "tests.ui.flows")
    server = UiServer(url, db, log, operator.strip(), viewer.strip())
    try:
        yield server
    finally:
        code = stop(process)
        assert code in (0, -signal.SIGTERM), log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")  # sync Playwright runs a loop in this thread: never
def browser() -> Iterator[Any]:  # let it outlive the module (asyncio tests after it fail)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("Playwright is not installed: pip install -e '.[dev]'")
    if not Path(CHROMIUM).exists():
        missing_service(f"Chromium is not at {CHROMIUM}: apt-get install chromium")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
    except Exception as exc:
        playwright.stop()
        missing_service(f"Chromium at {CHROMIUM} cannot start: {exc}")
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
