"""A fresh database for every Hypothesis example, on the backend of ``store_url``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import _drop_schema

FreshUrl = Callable[[], str]


@pytest.fixture
def fresh_url(store_url: str) -> Iterator[FreshUrl]:
    """Each call gives the URL of a new, empty database (a SQLite file, a schema)."""
    schemas: list[str] = []

    def make() -> str:
        n = len(schemas) + 1
        if store_url.startswith("sqlite"):
            schemas.append("")
            return f"{store_url.rsplit('/', 1)[0]}/example-{n}.db"
        found = re.search(r"schema=(\w+)", store_url)
        assert found is not None, store_url
        schemas.append(f"{found.group(1)}_{n}")
        return store_url.replace(found.group(0), f"schema={schemas[-1]}")

    yield make
    for schema in filter(None, schemas):
        _drop_schema(schema)
