"""The chaos suite's marker and seed.

Every experiment draws its random choices (which worker, when, which sagas fail) from one
seed: random per run unless ``CHAOS_SEED`` is set, and named in every failure message, so
a failure can be replayed with the same choices (the timings stay the machine's own).
"""

from __future__ import annotations

import os
import random

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: faults inflicted on real worker processes, judged by the ledger"
    )


@pytest.fixture
def seed() -> int:
    given = os.environ.get("CHAOS_SEED")
    return int(given) if given else random.randrange(1 << 32)
