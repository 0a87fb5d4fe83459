"""The ``sagaline worker`` process: import the user's modules, then serve until signalled."""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sagaline.codecs import from_env
from sagaline.engine import metrics
from sagaline.engine.engine import Engine
from sagaline.engine.handlers import handlers_of
from sagaline.engine.registry import workflow_names
from sagaline.model.errors import SagalineError
from sagaline.model.urls import redact

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


def import_modules(names: Sequence[str]) -> None:
    """Import each ``--import``: a module name (``myapp.sagas``) or a file (``./sagas.py``).

    The error says which it was: a module that cannot be found, or one whose own import
    failed (naming what it could not import, and where)."""
    if "" not in sys.path:
        sys.path.insert(0, "")  # let --import find modules in the current directory
    for given in names:
        name = _module_name(given)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name != exc.name and not name.startswith(f"{exc.name}."):
                raise SagalineError(
                    f"importing {given!r} failed: it imports {exc.name!r}, which is not "
                    f"installed here ({exc})"
                ) from exc
            raise SagalineError(
                f"cannot find module {given!r}; pass a module importable from here "
                f"(--import myapp.sagas) or a file (--import ./sagas.py)"
            ) from exc
        except Exception as exc:
            raise SagalineError(f"importing {given!r} failed: {type(exc).__name__}: {exc}") from exc


def _module_name(given: str) -> str:
    """``./pkg/sagas.py`` → ``sagas`` with ``./pkg`` on the path; a module name as it is."""
    if not given.endswith(".py") and "/" not in given:
        return given
    path = Path(given).resolve()
    if not path.is_file():
        raise SagalineError(f"--import {given!r}: no such file")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return path.stem


async def run_worker(
    url: str,
    imports: Sequence[str],
    queues: Sequence[str],
    concurrency: int,
    lease_seconds: float,
    say: Callable[[str], None],
    drain_seconds: float = 30.0,
    *,
    bus: str | None = None,
    service: str | None = None,
    poll_interval: float = 1.0,
    metrics_port: str | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; then let runs finish the step they are in (up to
    ``drain_seconds``) and release them, so other workers resume them at once.

    ``metrics_port`` (``PORT`` or ``HOST:PORT``) serves the process's Prometheus metrics at
    ``/metrics`` over plain HTTP, for a worker that runs no ``sagaline serve``; without it
    the worker keeps no metrics (nothing could read them), which spares each step their
    cost and the process the loading of prometheus-client."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import_modules(imports)
    if not workflow_names():
        raise SagalineError(f"no @workflow or @sagaline.on handler found in {', '.join(imports)}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exporter = None if metrics_port is None else serve_metrics(metrics_port)
    engine = Engine(
        url,
        queues=queues,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        bus=bus,
        service=service,
        poll_interval=poll_interval,
        metrics=exporter is not None,  # nobody could read them without the port
        payload_codec=from_env(),
    )
    try:
        await engine.open()
        if exporter is not None:
            host, port = exporter.server_address[:2]
            say(f"metrics at http://{_url_host(str(host))}:{port}/metrics")
        say(
            f"worker serving {', '.join(queues)} on {redact(url)} with {len(workflow_names())} "
            f"workflow(s), up to {concurrency} runs at once"
        )
        if bus is not None:
            try:
                await engine.bus_ready(timeout=10)
            except TimeoutError:
                say("the bus is unreachable for now; events wait in the outbox")
            handled = ", ".join(sorted({h.topic for h in handlers_of(service)})) or "nothing"
            say(
                f"service {service or '(every handler its own)'} on bus {redact(bus)}: handling "
                f"{handled}; relaying the outbox"
            )
        await stop.wait()
        say(f"stopping: runs finish their current step (up to {drain_seconds:g} s)")
    finally:
        await engine.aclose(drain_seconds)
        if exporter is not None:
            exporter.shutdown()
            exporter.server_close()
    say("worker stopped; its runs were released")


def serve_metrics(where: str) -> WSGIServer:
    """Start prometheus-client's exporter thread on ``PORT`` or ``HOST:PORT``.

    Without a host it listens on every interface, as exporters do, so a Prometheus on
    another host can scrape it; it serves counts and names (workflows, steps, statuses),
    never payloads, and takes no action. Give ``127.0.0.1:PORT`` to keep it local.

    Raises:
        SagalineError: prometheus-client is missing, ``where`` is malformed, or the port
            cannot be bound (in use, say).
    """
    metrics.require()
    import prometheus_client

    host, _, port_text = where.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(port_text)
    except ValueError:
        raise SagalineError(
            f"--metrics-port {where!r}: give a port (9464) or a host and port (127.0.0.1:9464)"
        ) from None
    try:
        server, _ = prometheus_client.start_http_server(port, addr=host)
    except OSError as exc:
        raise SagalineError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; is another "
            f"process using the port? choose another with --metrics-port"
        ) from exc
    return server


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
