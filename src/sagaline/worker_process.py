"""The ``sagaline worker`` process: import the user's modules, then serve until signalled."""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from sagaline.engine.engine import Engine
from sagaline.engine.handlers import handlers_of
from sagaline.engine.registry import workflow_names
from sagaline.model.errors import SagalineError
from sagaline.model.urls import redact


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
    console: Console,
    drain_seconds: float = 30.0,
    *,
    bus: str | None = None,
    service: str | None = None,
    poll_interval: float = 1.0,
) -> None:
    """Serve until SIGTERM or SIGINT; then let runs finish the step they are in (up to
    ``drain_seconds``) and release them, so other workers resume them at once."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import_modules(imports)
    if not workflow_names():
        raise SagalineError(f"no @workflow or @sagaline.on handler found in {', '.join(imports)}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = Engine(
        url,
        queues=queues,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        bus=bus,
        service=service,
        poll_interval=poll_interval,
    )
    await engine.open()
    try:
        console.print(
            f"worker serving {', '.join(queues)} on {url} with {len(workflow_names())} "
            f"workflow(s), up to {concurrency} runs at once"
        )
        if bus is not None:
            try:
                await engine.bus_ready(timeout=10)
            except TimeoutError:
                console.print("the bus is unreachable for now; events wait in the outbox")
            handled = ", ".join(sorted({h.topic for h in handlers_of(service)})) or "nothing"
            console.print(
                f"service {service or '(every handler its own)'} on bus {redact(bus)}: handling "
                f"{handled}; relaying the outbox"
            )
        await stop.wait()
        console.print(f"stopping: runs finish their current step (up to {drain_seconds:g} s)")
    finally:
        await engine.aclose(drain_seconds)
    console.print("worker stopped; its runs were released")
