"""Fixtures shared by every test: one suite over every store backend.

``store_url`` is parametrized by backend; engine tests take it (directly or through
``engine``/``make_engine``) and so run unchanged against each store. PostgreSQL joins the
parameter list when its store lands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sagaline import Engine

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend: str = request.param
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'sagaline.db'}"
    raise AssertionError(f"unknown backend {backend}")


MakeEngine = Callable[..., Engine]


@pytest.fixture
async def make_engine(store_url: str) -> AsyncIterator[MakeEngine]:
    """Engines on the test's database, closed at the end of the test."""
    made: list[Engine] = []

    def make(**kwargs: Any) -> Engine:
        kwargs.setdefault("poll_interval", 0.05)
        engine = Engine(store_url, **kwargs)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.aclose()


@pytest.fixture
async def engine(make_engine: MakeEngine) -> AsyncIterator[Engine]:
    async with make_engine() as engine:
        yield engine
