"""A queue's rate limit: a token bucket, its refill arithmetic kept pure.

The bucket is a row in the database (rate, burst, tokens, refilled_at), read and written
by the store in the transaction of each claim, with ``now`` read from the database's clock:
every worker on every host draws from the one bucket, and no worker's clock is trusted.
Here is only the arithmetic: how full the bucket is at ``now``, and what a claim may take.

A bucket holds at most ``burst`` tokens and gains ``per_second`` of them each second. A
claim takes whole tokens only, one per run (or task) it leases, so over any span of ``T``
seconds at most ``burst + per_second * T`` leases are granted.

Every claim spends a token, whatever it resumes: a fresh run, a run woken after a
suspension (a sleep, a signal, a task's answer), a run taken over after its worker's lease
ran out, and each claim of an external task. A rate limit therefore caps how often work of
the queue is picked up, not how many distinct runs start.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
"""The units of ``sagaline queues limit --rate``: per second, minute, hour."""
_RATE = re.compile(r"(?P<count>[+-]?[0-9]+(?:\.[0-9]+)?)/(?P<unit>[smh])")


@dataclass(frozen=True)
class QueueRate:
    """A queue's rate limit: ``per_second`` leases a second, at most ``burst`` at once."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class Bucket:
    """A queue's token bucket as stored: ``tokens`` as of ``refilled_at`` (Unix seconds,
    the database's clock)."""

    per_second: float
    burst: int
    tokens: float
    refilled_at: float


@dataclass(frozen=True)
class Grant:
    """What a claim may take from a bucket at ``now``.

    ``allowed`` whole tokens are there to spend; ``tokens`` is the bucket refilled to
    ``at`` before anything is spent; ``at`` is ``now``, or the bucket's ``refilled_at`` if
    that is later (a reading of the clock taken before a concurrent claim wrote the bucket
    must not count the same time twice); ``retry_in`` is how many seconds until one more
    token than ``allowed`` is there.
    """

    allowed: int
    tokens: float
    at: float
    retry_in: float

    def retry_after(self, wanted: int, taken: int) -> float | None:
        """When a claim that wanted ``wanted`` and took ``taken`` should look again: None
        unless the rate is what stopped it (it took every token there was, and wanted
        more)."""
        return self.retry_in if taken == self.allowed < wanted else None


def default_burst(per_second: float) -> int:
    """One second's worth, at least one: a claim loop's jitter loses no throughput."""
    return max(1, math.ceil(per_second))


MOST_PER_SECOND = 1_000_000.0
MOST_BURST = 2**31 - 1


def check_rate(per_second: float, burst: int) -> str | None:
    """What is wrong with a rate limit, or None."""
    if not math.isfinite(per_second) or not 0 < per_second <= MOST_PER_SECOND:
        return (
            f"a queue rate must be more than 0 and at most {MOST_PER_SECOND:,.0f} a second, "
            f"got {per_second}"
        )
    if not 1 <= burst <= MOST_BURST:
        return f"a queue burst must be a whole number from 1 to {MOST_BURST}, got {burst}"
    return None


def refill(bucket: Bucket, now: float) -> float:
    """The bucket's tokens at ``now``: grown at its rate since ``refilled_at``, capped at
    its burst. A clock that stepped back adds nothing rather than removing tokens."""
    elapsed = max(0.0, now - bucket.refilled_at)
    return min(float(bucket.burst), bucket.tokens + elapsed * bucket.per_second)


def grant(bucket: Bucket, wanted: int, now: float) -> Grant:
    """How many of ``wanted`` leases the bucket allows at ``now``; spends nothing (the
    store spends what the claim took, which may be fewer: see :func:`spend`)."""
    at = max(now, bucket.refilled_at)
    tokens = refill(bucket, at)
    allowed = max(0, min(wanted, math.floor(tokens)))
    short = allowed + 1 - tokens
    return Grant(allowed, tokens, at, max(0.0, short) / bucket.per_second)


def spend(tokens: float, taken: int) -> float:
    """The tokens left once a claim took ``taken`` leases (never below zero)."""
    return max(0.0, tokens - taken)


def tokens_after_change(old: Bucket | None, rate: QueueRate, now: float) -> float:
    """A bucket's tokens when its queue's rate is set: full for a new bucket; for a changed
    one, what it held by its old rate, capped at the new burst (setting the rate again
    grants no extra burst)."""
    if old is None:
        return float(rate.burst)
    return min(float(rate.burst), refill(old, now))


def parse_rate(text: str) -> float | None:
    """``"20/s"``, ``"600/m"``, ``"2/h"`` as runs a second; ``"none"`` as None (no limit).

    Raises:
        ValueError: anything else, or a rate that is not positive; the message says what
            is accepted.
    """
    cleaned = text.strip().lower()
    if cleaned == "none":
        return None
    match = _RATE.fullmatch(cleaned)
    if match is None:
        raise ValueError(
            f"bad rate {text!r}: give runs per second, minute or hour, e.g. 20/s, 600/m or "
            f"100/h, or none"
        )
    per_second = float(match["count"]) / UNITS[match["unit"]]
    if per_second <= 0:
        raise ValueError(f"bad rate {text!r}: a rate must be more than zero (none removes it)")
    return per_second


def describe(rate: QueueRate) -> str:
    """A rate as an operator wrote it: ``20/s``, ``600/m`` or ``2/h``, and its burst."""
    for unit, seconds in UNITS.items():
        count = rate.per_second * seconds
        if count >= 1 and math.isclose(count, round(count), rel_tol=1e-9):
            return f"{round(count)}/{unit} (burst {rate.burst})"
    return f"{rate.per_second:g}/s (burst {rate.burst})"
