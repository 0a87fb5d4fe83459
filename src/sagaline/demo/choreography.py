"""``sagaline demo choreography``: the order saga across four service processes.

Each service is a real ``sagaline worker`` process with its own database; they share only
the bus (an embedded broker in a SQLite file unless ``--bus`` names another). The tracker,
in this process, records every event and prints each saga's timeline across services:
a completed order, one compensated (out of stock), and one whose shipping process is
killed with SIGKILL mid-step and restarted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from sagaline import Engine
from sagaline.console import saga_table, styled_saga_status
from sagaline.demo.shop import inventory, order, payment, shipping  # noqa: F401 - the tracker learns their handlers
from sagaline.demo.shop.events import Order
from sagaline.engine.tracker import Tracker
from sagaline.model.choreography import SagaNotFoundError, SagaStatus, SagaView
from sagaline.model.urls import redact

SERVICES = ("order", "payment", "inventory", "shipping")
DEADLINE = 60.0


class Fleet:
    """The four service processes, started and stopped by the demo."""

    def __init__(self, folder: Path, bus: str) -> None:
        self.folder = folder
        self.bus = bus
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def db(self, service: str) -> str:
        return f"sqlite:///{self.folder / f'{service}.db'}"

    async def start(self, service: str) -> subprocess.Popen[str]:
        log = (self.folder / f"{service}.log").open("a", encoding="utf-8")
        env = {**os.environ, "SAGALINE_DEMO_PAUSE": str(self.folder / "shipping.paused")}
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "sagaline", "worker", "--db", self.db(service)),
                *("--bus", self.bus, "--service", service),
                *("--import", f"sagaline.demo.shop.{service}", "--concurrency", "20"),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        self.procs[service] = proc
        await asyncio.wait_for(asyncio.to_thread(self._await_ready, proc), DEADLINE)
        return proc

    @staticmethod
    def _await_ready(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("service "):
                return
        raise RuntimeError(f"worker {proc.pid} exited before it was ready")

    def kill(self, service: str) -> int:
        proc = self.procs.pop(service)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return proc.pid

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


async def run_choreography_demo(folder: Path, bus: str | None, console: Console) -> bool:
    """Run the three scenarios; True when each saga ended as it should."""
    folder.mkdir(parents=True, exist_ok=True)
    bus = bus or f"sqlite:///{folder / 'bus.db'}"
    (folder / "shipping.paused").unlink(missing_ok=True)
    tag = uuid.uuid4().hex[:6]
    console.print(
        f"[bold]sagaline demo choreography[/bold] · bus {redact(bus)} · databases in {folder}\n"
    )
    fleet = Fleet(folder, bus)
    ok = True
    try:
        async with Tracker(bus=bus, db=f"sqlite:///{folder / 'tracker.db'}") as tracker:
            for service in SERVICES:
                proc = await fleet.start(service)
                console.print(f"service {service}: worker process {proc.pid}")
            async with Engine(fleet.db("order"), worker=False) as shop:
                console.rule("1. an order goes through every service")
                ok &= await _scenario(
                    shop, tracker, console, Order(f"{tag}-1", "BOOK", 1, 1200), SagaStatus.COMPLETED
                )

                console.rule("2. out of stock: inventory fails, payment refunds, order cancels")
                ok &= await _scenario(
                    shop,
                    tracker,
                    console,
                    Order(f"{tag}-2", "OUT-OF-STOCK", 1, 800),
                    SagaStatus.COMPENSATED,
                )

                console.rule(
                    "3. the shipping process is killed with SIGKILL mid-step, then restarted"
                )
                ok &= await _crash_scenario(
                    shop, tracker, fleet, console, Order(f"{tag}-3", "SLOW-TO-SHIP", 2, 500)
                )
    finally:
        fleet.stop()
    return ok


async def _scenario(
    shop: Engine, tracker: Tracker, console: Console, item: Order, expected: SagaStatus
) -> bool:
    await shop.start(order.place_order, item, run_id=item.order_id)
    view = await _settled(tracker, item.order_id)
    return _show(console, view, expected)


async def _crash_scenario(
    shop: Engine, tracker: Tracker, fleet: Fleet, console: Console, item: Order
) -> bool:
    pause = fleet.folder / "shipping.paused"
    await shop.start(order.place_order, item, run_id=item.order_id)
    deadline = time.monotonic() + DEADLINE
    while not pause.exists():
        if time.monotonic() > deadline:
            console.print("[red]shipping never started booking[/red]")
            return False
        await asyncio.sleep(0.05)
    pid = fleet.kill("shipping")
    console.print(f"shipping worker {pid} killed with SIGKILL inside its book step")
    stuck = await tracker.saga(item.order_id)
    console.print(saga_table(stuck))
    for wait in stuck.waiting_for:
        console.print(f"waiting for {escape(str(wait))}")
    proc = await fleet.start("shipping")
    console.print(f"shipping worker {proc.pid} started; it resumes the handler's run by replay")
    view = await _settled(tracker, item.order_id)
    return _show(console, view, SagaStatus.COMPLETED)


async def _settled(tracker: Tracker, correlation_id: str) -> SagaView:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            view = await tracker.saga(correlation_id)
        except SagaNotFoundError:
            view = None
        if view is not None and view.status is not SagaStatus.IN_PROGRESS:
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"saga {correlation_id!r} did not end within {DEADLINE:.0f} s")
        await asyncio.sleep(0.05)


def _show(console: Console, view: SagaView, expected: SagaStatus) -> bool:
    console.print(saga_table(view))
    for wait in view.waiting_for:
        console.print(f"waiting for {escape(str(wait))}")
    good = view.status is expected
    mark = "[green]as expected[/green]" if good else f"[red]expected {expected.value}[/red]"
    console.print(f"saga {styled_saga_status(view.status)} · {mark}\n")
    return good
