"""Payload protection end to end: what the database and the bus hold is ciphertext.

Each test reads the real database (the SQLite file, or the PostgreSQL schema over its own
connection) to check what is stored, independently of sagaline's own reading of it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import urllib.parse
import zlib
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sagaline
from sagaline import (
    AesGcm,
    Chain,
    Engine,
    Event,
    RunFailedError,
    RunStatus,
    step,
    workflow,
)
from sagaline.bus import Message
from sagaline.model.codec import describe
from sagaline.model.status import StepKind
from tests.bus.harness import Services, until
from tests.conftest import POSTGRES_URL, MakeEngine

DEADLINE = 30.0
SECRET = "4111-1111-1111-1111"
K1 = bytes(range(32))
K2 = bytes(range(100, 132))
SEEN: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    SEEN.clear()
    yield


@dataclass
class Order:
    order_id: str
    card: str


@dataclass
class Receipt:
    order_id: str
    text: str


@step
async def charge_card(order: Order) -> Receipt:
    return Receipt(order.order_id, f"charged {order.card}")


@workflow
async def card_child(card: str) -> str:
    return f"child saw {card}"


@workflow
async def checkout(order: Order) -> str:
    receipt = await charge_card(order)
    note: str = await sagaline.wait_for_signal("confirm", type=str)
    child = await sagaline.start_child(card_child, order.card)
    return f"{receipt.text} | {note} | {await child.result()}"


@workflow
async def echo(text: str) -> str:
    return text


class Zlib:
    """A user's own codec through the hook: compression, marked so plain JSON still reads."""

    PREFIX = b"zl1:"

    def encode(self, data: bytes) -> bytes:
        return self.PREFIX + zlib.compress(data)

    def decode(self, data: bytes) -> bytes:
        return zlib.decompress(data[4:]) if data.startswith(self.PREFIX) else data


def aes(current: str = "k1", **keys: bytes) -> AesGcm:
    return AesGcm(keys or {"k1": K1}, current=current)


async def status_becomes(engine: Engine, run_id: str, status: RunStatus) -> None:
    async def check() -> None:
        while (await engine.get_run(run_id)).status is not status:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(check(), DEADLINE)


async def suspend_at_signal(engine: Engine, run_id: str) -> None:
    await engine.start(checkout, Order(run_id, SECRET), run_id=run_id)
    await status_becomes(engine, run_id, RunStatus.SUSPENDED)


EXPECTED = f"charged {SECRET} | ok {SECRET} | child saw {SECRET}"


async def only_child(engine: Engine, run_id: str) -> Any:
    (child,) = await engine.store.child_runs(run_id)
    return child


# -- reading the database directly ---------------------------------------------------------


def _pg_parts(url: str) -> tuple[str, str]:
    schema = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["schema"][0]
    return POSTGRES_URL, schema


async def stored_cells(url: str) -> list[tuple[str, str, bytes]]:
    """Every (table, column, value as bytes) in the database at ``url``."""
    cells: list[tuple[str, str, bytes]] = []

    def as_bytes(value: Any) -> bytes:
        return value if isinstance(value, bytes) else str(value).encode()

    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True)
        try:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                cursor = conn.execute(f'SELECT * FROM "{table}"')
                names = [d[0] for d in cursor.description]
                for row in cursor:
                    cells += [(table, n, as_bytes(v)) for n, v in zip(names, row, strict=True)]
        finally:
            conn.close()
        return cells
    import asyncpg

    server, schema = _pg_parts(url)
    pg = await asyncpg.connect(server)
    try:
        tables = await pg.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        for t in tables:
            for row in await pg.fetch(f'SELECT * FROM "{schema}"."{t["table_name"]}"'):
                cells += [(t["table_name"], k, as_bytes(v)) for k, v in row.items()]
    finally:
        await pg.close()
    return cells


async def overwrite_step_output(url: str, run_id: str, seq: int, output: bytes) -> None:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            with conn:
                conn.execute(
                    "UPDATE steps SET output = ? WHERE run_id = ? AND seq = ?",
                    (output, run_id, seq),
                )
        finally:
            conn.close()
        return
    import asyncpg

    server, schema = _pg_parts(url)
    pg = await asyncpg.connect(server)
    try:
        await pg.execute(
            f'UPDATE "{schema}".steps SET output = $1 WHERE run_id = $2 AND seq = $3',
            output,
            run_id,
            seq,
        )
    finally:
        await pg.close()


def plaintext_cells(cells: list[tuple[str, str, bytes]]) -> list[tuple[str, str]]:
    return [(table, column) for table, column, value in cells if SECRET.encode() in value]


# -- the tests -----------------------------------------------------------------------------


async def test_every_payload_is_stored_encrypted_and_reads_back(
    make_engine: MakeEngine, store_url: str
) -> None:
    async with make_engine(payload_codec=aes()) as engine:
        await suspend_at_signal(engine, "enc-1")
        await engine.signal("enc-1", "confirm", f"ok {SECRET}")
        assert await asyncio.wait_for(engine.handle("enc-1").result(), DEADLINE) == EXPECTED
        run, child = await engine.get_run("enc-1"), await only_child(engine, "enc-1")
        assert describe(run.input) == describe(run.output) == "encrypted with key 'k1'"
        assert describe(child.input) == "encrypted with key 'k1'"
    cells = await stored_cells(store_url)
    assert any(table == "signals" for table, _, _ in cells)  # the scan sees every table
    assert plaintext_cells(cells) == []


async def test_keys_rotate_without_rewriting_history(make_engine: MakeEngine) -> None:
    async with make_engine(payload_codec=aes()) as old:
        await suspend_at_signal(old, "rot-1")
        await old.start(echo, SECRET, run_id="rot-done")
        assert await asyncio.wait_for(old.handle("rot-done").result(), DEADLINE) == SECRET
    rotated = aes("k2", k1=K1, k2=K2)
    async with make_engine(payload_codec=rotated) as new:
        await new.signal("rot-1", "confirm", f"ok {SECRET}")
        assert await asyncio.wait_for(new.handle("rot-1").result(), DEADLINE) == EXPECTED
        assert await new.handle("rot-done").result() == SECRET  # written under k1 only
        run = await new.get_run("rot-1")
        assert describe(run.input) == "encrypted with key 'k1'"  # not rewritten
        assert describe(run.output) == "encrypted with key 'k2'"  # new writes use k2
        by_kind = {rec.kind: rec for rec in await new.steps("rot-1")}
        assert describe(by_kind[StepKind.STEP].output) == "encrypted with key 'k1'"
        assert describe(by_kind[StepKind.SIGNAL].output) == "encrypted with key 'k2'"
        assert describe((await only_child(new, "rot-1")).input) == "encrypted with key 'k2'"


async def test_an_unknown_key_parks_the_run_and_the_worker_carries_on(
    make_engine: MakeEngine,
) -> None:
    async with make_engine(payload_codec=aes()) as first:
        await suspend_at_signal(first, "key-1")
    async with make_engine(payload_codec=aes("k2", k2=K2)) as keyless:
        await keyless.signal("key-1", "confirm", "ok")
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(keyless.handle("key-1").result(), DEADLINE)
        assert info.value.status is RunStatus.BLOCKED
        assert info.value.cause is not None and info.value.cause["type"] == "PayloadKeyError"
        assert "encrypted with key 'k1'" in info.value.cause["message"]
        await keyless.start(echo, "still working", run_id="key-2")
        assert await asyncio.wait_for(keyless.handle("key-2").result(), DEADLINE) == (
            "still working"
        )
    async with make_engine(payload_codec=aes("k2", k1=K1, k2=K2)) as fixed:
        await fixed.retry("key-1", reason="gave the worker key k1", by="test")
        result = await asyncio.wait_for(fixed.handle("key-1").result(), DEADLINE)
        assert result == f"charged {SECRET} | ok | child saw {SECRET}"


async def test_a_tampered_payload_parks_the_run_with_the_reason(
    make_engine: MakeEngine, store_url: str
) -> None:
    async with make_engine(payload_codec=aes()) as engine:
        await suspend_at_signal(engine, "tamper-1")
        charged = next(r for r in await engine.steps("tamper-1") if r.kind is StepKind.STEP)
        assert charged.output is not None
        flipped = charged.output[:-1] + bytes([charged.output[-1] ^ 1])
        await overwrite_step_output(store_url, "tamper-1", charged.seq, flipped)
        await engine.signal("tamper-1", "confirm", "ok")
        with pytest.raises(RunFailedError) as info:
            await asyncio.wait_for(engine.handle("tamper-1").result(), DEADLINE)
        assert info.value.status is RunStatus.BLOCKED
        assert info.value.cause is not None
        assert info.value.cause["type"] == "PayloadTamperedError"
        assert "does not authenticate" in info.value.cause["message"]
        assert "'k1'" in info.value.cause["message"]
        await engine.start(echo, "unaffected", run_id="tamper-2")
        assert await asyncio.wait_for(engine.handle("tamper-2").result(), DEADLINE) == (
            "unaffected"
        )


async def test_a_users_codec_runs_through_the_hook_over_older_plain_history(
    make_engine: MakeEngine, store_url: str
) -> None:
    async with make_engine() as plain:
        await suspend_at_signal(plain, "zip-1")  # written before any codec was configured
    assert ("runs", "input") in plaintext_cells(await stored_cells(store_url))  # the scan sees
    async with make_engine(payload_codec=Chain(Zlib(), aes())) as zipped:
        await zipped.signal("zip-1", "confirm", f"ok {SECRET}")
        assert await asyncio.wait_for(zipped.handle("zip-1").result(), DEADLINE) == EXPECTED
        run = await zipped.get_run("zip-1")
        assert run.input.startswith(b"[")  # still the plain JSON it was written as
        assert run.output is not None
        assert AesGcm({"k1": K1}).decode(run.output).startswith(Zlib.PREFIX)
    async with make_engine(payload_codec=Zlib()) as only_zip:
        await only_zip.start(echo, SECRET * 50, run_id="zip-2")
        assert await asyncio.wait_for(only_zip.handle("zip-2").result(), DEADLINE) == SECRET * 50
        stored = (await only_zip.get_run("zip-2")).input
        assert stored.startswith(Zlib.PREFIX) and SECRET.encode() not in stored


# -- the bus -------------------------------------------------------------------------------


@dataclass
class CardCharged:
    order_id: str
    card: str


@sagaline.on("EncCardCharged", service="enc-billing", name="enc-billing.record")
async def record_charge(event: Event[CardCharged]) -> None:
    SEEN.append(event.data)


@sagaline.on("EncCardCharged", service="enc-audit", name="enc-audit.record")
async def audit_charge(event: Event[CardCharged]) -> None:
    SEEN.append(("audit", event.data))


async def test_an_outbox_message_is_encrypted_on_the_wire(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus_url = f"sqlite:///{tmp_path / 'bus.db'}"
    async with AsyncExitStack() as stack:
        services = Services(stack, tmp_path, bus_url)
        tap = await services.tap("EncCardCharged")
        shop = await services.start("enc-shop", payload_codec=aes())
        await services.start("enc-billing", payload_codec=aes())
        caplog.set_level(logging.ERROR, logger="sagaline.bus")
        audit = await services.start("enc-audit")  # has no key
        await shop.publish("EncCardCharged", CardCharged("o-9", SECRET), correlation_id="s-9")
        await until("the handler ran", lambda: bool(SEEN))
        handled = list(SEEN)
        assert handled == [CardCharged("o-9", SECRET)]  # decrypted for the handler
        await until("the tap saw the message", lambda: len(tap.received) >= 1)
        wire: Message = tap.received[0]
        assert describe(wire.body) == "encrypted with key 'k1'"
        assert SECRET.encode() not in wire.body
        assert wire.headers["sagaline-correlation-id"] == "s-9"  # headers stay readable
        await until(
            "the keyless service refused the message",
            lambda: any("encrypted with key 'k1'" in r.getMessage() for r in caplog.records),
        )
        assert [r for r in await audit.list_runs() if r.workflow == "enc-audit.record"] == []
    for name in ("enc-shop", "enc-billing", "bus"):
        assert plaintext_cells(await stored_cells(f"sqlite:///{tmp_path / f'{name}.db'}")) == []
