"""A worker process for the demo's crash scenario: ``python -m sagaline.demo.worker URL``."""

from __future__ import annotations

import asyncio
import sys

import sagaline.demo.order  # noqa: F401 - registers the order saga in this process
from sagaline import Engine


async def main(url: str) -> None:
    async with Engine(url, poll_interval=0.1):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
