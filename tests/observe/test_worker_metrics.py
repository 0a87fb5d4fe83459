"""``sagaline worker --metrics-port``: a real worker process serves its metrics over HTTP,
and a scrape shows the runs it executed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sagaline import Engine
from tests.observe.sagas import order_saga

ROOT = Path(__file__).parents[2]
WORKER = [sys.executable, "-m", "sagaline", "worker", "--import", "tests.observe.sagas"]


@contextlib.contextmanager
def worker(db: str, *extra: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*WORKER, "--db", db, "--poll-interval", "0.05", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def metrics_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"metrics at (http://\S+/metrics)", line)
        if found:  # read the rest as it comes, so the worker never blocks on a full pipe
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return found.group(1)
    raise AssertionError(f"the worker never said where its metrics are (exit {proc.wait()})")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_headless_worker_serves_its_metrics(store_url: str) -> None:
    with worker(store_url, "--metrics-port", "127.0.0.1:0") as proc:
        url = metrics_url(proc)
        async with Engine(store_url, worker=False, metrics=False, tracing=False) as client:
            for order in ["ok-w1", "ok-w2", "ok-w3", "fail-w4"]:
                await client.start(order_saga, order, run_id=order)
            for order in ["ok-w1", "ok-w2", "ok-w3", "fail-w4"]:
                await client.wait(order, timeout=30)
        wf = ("workflow", "obs.order")
        completed = ("sagaline_runs_finished_total", (("status", "COMPLETED"), wf))
        compensated = ("sagaline_runs_finished_total", (("status", "COMPENSATED"), wf))
        gauge = ("sagaline_runs", (("status", "COMPLETED"),))
        deadline = time.monotonic() + 30
        samples = scrape(url)
        while gauge not in samples and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the first scrape asks for the counts
            samples = scrape(url)
        assert samples[completed] == 3
        assert samples[compensated] == 1
        charge = ("sagaline_step_attempts_total", (("kind", "step"), ("step", "obs.charge")))
        assert samples[charge] == 4
        assert samples[gauge] == 3
        assert samples[("sagaline_worker_concurrency", ())] == 100
        assert samples[("sagaline_commit_seconds_count", ())] > 0
        # Started by the client process, not the worker: not counted here.
        assert ("sagaline_runs_started_total", (wf,)) not in samples
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_taken_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = f"sqlite:///{tmp_path / 'w.db'}"
        with worker(db, "--metrics-port", f"127.0.0.1:{port}") as proc:
            out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out
    assert "choose another with --metrics-port" in " ".join(out.split())


@pytest.mark.parametrize("given", ["http", "127.0.0.1:99999"])
def test_a_malformed_metrics_port_is_a_clear_error(tmp_path: Path, given: str) -> None:
    with worker(f"sqlite:///{tmp_path / 'w.db'}", "--metrics-port", given) as proc:
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "give a port (9464) or a host and port" in " ".join(out.split())
