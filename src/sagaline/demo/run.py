"""``sagaline demo``: the order saga three ways, each with its timeline."""

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

from sagaline import Engine, RunFailedError
from sagaline.console import styled_status, timeline_table
from sagaline.demo.order import Order, ledger_counts, order_saga
from sagaline.model.timeline import short_name
from sagaline.store.sqlite.store import path_from_url


async def run_demo(url: str, console: Console) -> bool:
    """Run the three scenarios; True when each ended as it should."""
    db_path = Path(path_from_url(url)).resolve()
    ledger = str(db_path.with_suffix(".ledger.jsonl"))
    tag = uuid.uuid4().hex[:6]
    console.print(f"[bold]sagaline demo[/bold] · database {db_path} · ledger {ledger}\n")
    ok = True
    async with Engine(url) as engine:
        console.rule("1. happy path")
        order = Order(f"order-{tag}-1", 4200, ledger)
        handle = await engine.start(order_saga, order, run_id=order.order_id)
        receipt = await handle.result()
        console.print(f"receipt: {receipt}")
        ok &= await _show(engine, console, order, "COMPLETED")

        console.rule("2. payment declined: compensations run in reverse")
        order = Order(f"order-{tag}-2", 990000, ledger, decline=True)
        handle = await engine.start(order_saga, order, run_id=order.order_id)
        try:
            await handle.result()
        except RunFailedError as exc:
            console.print(f"result() raised RunFailedError: {exc.cause.get('message')}")
        ok &= await _show(engine, console, order, "COMPENSATED")

    console.rule("3. worker killed with SIGKILL while shipping, then restarted")
    order = Order(f"order-{tag}-3", 1500, ledger, ship_pause=60.0)
    ok &= await _crash_scenario(url, console, order)
    console.print(f"look at these runs again: sagaline runs list --db {url}")
    return ok


async def _crash_scenario(url: str, console: Console, order: Order) -> bool:
    marker = Path(f"{order.ledger}.{order.order_id}.shipping")
    async with Engine(url, worker=False) as client:
        first = _spawn_worker(url)
        console.print(f"worker process {first.pid} started")
        await client.start(order_saga, order, run_id=order.order_id)
        deadline = time.monotonic() + 30
        while not marker.exists():
            if time.monotonic() > deadline or first.poll() is not None:
                first.kill()
                console.print("[red]the worker never reached ship_order[/red]")
                return False
            await asyncio.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        run = await client.get_run(order.order_id)
        console.print(
            f"worker {first.pid} killed with SIGKILL inside ship_order; the run is "
            f"{styled_status(run.status)} with {len(await client.steps(order.order_id))} "
            f"steps recorded"
        )
        second = _spawn_worker(url)
        console.print(f"worker process {second.pid} started; it resumes the run by replay")
        try:
            await client.wait(order.order_id, timeout=60)
        finally:
            second.terminate()
            second.wait()
        ok = await _show(client, console, order, "COMPLETED")
    marker.unlink(missing_ok=True)
    return ok


def _spawn_worker(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sagaline.demo.worker", url])


async def _show(engine: Engine, console: Console, order: Order, expected: str) -> bool:
    run = await engine.get_run(order.order_id)
    console.print(timeline_table(run, await engine.history(order.order_id)))
    counts = ledger_counts(order.ledger, order.order_id)
    console.print("executions: " + ", ".join(f"{short_name(k)} ×{v}" for k, v in counts.items()))
    good = run.status.value == expected
    mark = "[green]as expected[/green]" if good else f"[red]expected {expected}[/red]"
    console.print(f"final status {styled_status(run.status)} · {mark}\n")
    return good
