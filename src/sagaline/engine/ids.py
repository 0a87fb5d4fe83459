"""Fresh run and message ids: time-ordered (``sagaline.model.ids``), from the wall clock
and the operating system's randomness."""

from __future__ import annotations

import os
import time

from sagaline.model.ids import uuid7_hex


def fresh_id() -> str:
    return uuid7_hex(time.time_ns() // 1_000_000, os.urandom(10))
