"""Fixtures shared by every test: one suite over every store backend.

``store_url`` is parametrized by backend; engine tests take it (directly or through
``engine``/``make_engine``) and so run unchanged against each store. PostgreSQL tests get a
fresh schema each, dropped afterwards. Where PostgreSQL is unreachable they skip with the
reason locally, and fail when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from sagaline import Engine

pytest_plugins = ["tests.pgcluster"]  # the private cluster for server-fault tests

BACKENDS = ["sqlite", "postgres"]
POSTGRES_URL = os.environ.get(
    "SAGALINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_pg_problem: list[str] = []


def _postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None; asked once per session."""
    if not _pg_problem:
        try:
            import asyncpg

            async def probe() -> None:
                conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
                await conn.close()

            asyncio.run(probe())
            _pg_problem.append("")
        except Exception as exc:
            _pg_problem.append(
                f"PostgreSQL at {POSTGRES_URL} is unreachable ({exc!r}); start it (the "
                f"README's 'Scaling out on PostgreSQL' says how) or set "
                f"SAGALINE_TEST_POSTGRES_URL"
            )
    return _pg_problem[0] or None


def missing_service(problem: str) -> NoReturn:
    """A real service a test needs is absent: skip with the reason locally, fail under CI.

    The one place that decides it, so that no test is ever skipped in CI.
    """
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def require_postgres() -> None:
    problem = _postgres_unreachable()
    if problem is not None:
        missing_service(problem)


def _drop_schema(schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            # The name is generated below from hex digits only.
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL for a fresh, empty schema on the test PostgreSQL server."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}schema={schema}"
    _drop_schema(schema)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend: str = request.param
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'sagaline.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


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
