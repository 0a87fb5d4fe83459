"""Waiting on an ``asyncio.Event`` with a timeout, without ``asyncio.wait_for``.

On Python 3.11, ``wait_for`` can swallow a cancellation that arrives just as the awaited
event fires, leaving a shutting-down task running; ``asyncio.wait`` never does.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """True if ``event`` was set within ``timeout`` seconds."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()
