"""A real ``sagaline serve`` process per test, over each store, with three tokens."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sagaline import Engine
from sagaline.http.auth import Role, create_token

ROOT = Path(__file__).parents[2]
PYTHON = sys.executable


def cli(*args: str) -> str:
    done = subprocess.run(
        [PYTHON, "-m", "sagaline.serve_cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def make_tokens(db: str, *wanted: tuple[str, str, bool]) -> list[str]:
    """Tokens ``(name, role, payloads)`` created in this process, in one engine.

    The fixtures need three or four tokens per test; ``sagaline tokens create`` (tested in
    test_security) would start a Python process for each, seconds a test over the suite.
    """

    async def create() -> list[str]:
        async with Engine(db, worker=False) as engine:
            return [
                await create_token(engine.store, name, Role(role), payloads, time.time())
                for name, role, payloads in wanted
            ]

    return asyncio.run(create())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    db: str
    log: Path
    process: subprocess.Popen[bytes]
    operator: str
    viewer: str
    shapes: str
    """An operator token without payload access."""

    def client(self, token: str | None) -> httpx.Client:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def logs(self) -> str:
        return self.log.read_text("utf-8", "replace")


def start_server(db: str, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    out = log.open("ab")
    process = subprocess.Popen(
        [
            *(PYTHON, "-m", "sagaline.serve_cli", "serve", "--db", db, "--port", str(port)),
            *("--import", "tests.http.sagas", *extra),
        ],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the server did not start:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> int:
    process.terminate()
    try:
        return process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    operator, viewer, shapes = make_tokens(
        store_url,
        ("ops", "operator", True),
        ("watcher", "viewer", True),
        ("auditor", "operator", False),
    )
    log = tmp_path / "server.log"
    process, url = start_server(store_url, log)
    yield Server(url, store_url, log, process, operator, viewer, shapes)
    # uvicorn shuts down gracefully, then dies of the SIGTERM it caught, as it should.
    assert stop(process) in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()
