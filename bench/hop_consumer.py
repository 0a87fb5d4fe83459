"""The far end of the hop-latency benchmark, run as its own process:

    BENCH_HOP_LOG=FILE sagaline worker --db URL --bus URL --service hop \\
        --import bench.hop_consumer

Each ``BenchHop`` delivery starts a run of :func:`record`, which appends
``index sent_at started_at`` (Unix seconds) to ``BENCH_HOP_LOG`` as soon as the run begins.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import sagaline
from sagaline import Event

TOPIC = "BenchHop"
SERVICE = "hop"


@dataclass
class Hop:
    index: int
    sent_at: float
    """``time.time()`` just before the producer's publish commit."""


@sagaline.on(TOPIC, service=SERVICE, name="hop.record")
async def record(event: Event[Hop]) -> None:
    started = time.time()
    _append(f"{event.data.index} {event.data.sent_at!r} {started!r}\n")


def _append(line: str) -> None:
    # One O_APPEND write per line: whole lines even if a replay writes a line again.
    fd = os.open(os.environ["BENCH_HOP_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
