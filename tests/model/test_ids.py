"""Run ids are UUIDv7: 32 hex digits that sort by creation time (index locality)."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from sagaline.engine.ids import fresh_id
from sagaline.model.ids import uuid7_hex


def test_is_a_version_7_uuid_in_the_old_form() -> None:
    text = uuid7_hex(1_700_000_000_123, os.urandom(10))
    assert len(text) == 32 and text == text.lower()
    parsed = uuid.UUID(text)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert int(text[:12], 16) == 1_700_000_000_123  # the first 48 bits are the milliseconds


def test_sorts_by_milliseconds_whatever_the_randomness() -> None:
    ids = [uuid7_hex(ms, entropy) for ms, entropy in [(5, b"\xff" * 10), (6, b"\x00" * 10)]]
    assert ids == sorted(ids)
    assert uuid7_hex(5, b"\xff" * 10) != uuid7_hex(5, b"\xfe" * 10)


def test_entropy_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="10 bytes"):
        uuid7_hex(0, b"short")


def test_fresh_ids_are_unique_and_ordered_across_milliseconds() -> None:
    first = fresh_id()
    many = {fresh_id() for _ in range(10_000)}
    assert len(many) == 10_000
    time.sleep(0.002)
    assert fresh_id() > first


def test_a_run_started_without_an_id_gets_a_time_ordered_one(tmp_path: object) -> None:
    import asyncio

    from sagaline import Engine, workflow

    @workflow(name="test_ids.noop")
    async def noop() -> int:
        return 1

    async def main() -> list[str]:
        async with Engine(f"sqlite:///{tmp_path}/ids.db") as engine:
            ids = []
            for _ in range(3):
                handle = await engine.start(noop)
                await handle.result()
                ids.append(handle.run_id)
                await asyncio.sleep(0.002)
            return ids

    ids = asyncio.run(main())
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)
