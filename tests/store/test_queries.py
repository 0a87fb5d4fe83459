"""The named-query files: every name once, so no query silently replaces another."""

from __future__ import annotations

import pytest

from sagaline.store.queries import load_queries, parse_queries


@pytest.mark.parametrize("package", ["sagaline.store.sqlite", "sagaline.store.postgres"])
def test_each_dialect_loads_with_every_name_once(package: str) -> None:
    queries = load_queries(package)
    assert "claim" in queries and all(body for body in queries.values())


def test_a_name_given_twice_is_refused_with_the_name() -> None:
    text = "-- name: lock_queue\nSELECT 1\n-- name: other\nSELECT 2\n-- name: lock_queue\nSELECT 3"
    with pytest.raises(ValueError, match="'lock_queue' is named twice"):
        parse_queries(text, "test.sql")


def test_names_map_to_their_own_bodies() -> None:
    assert parse_queries("-- name: a\nSELECT 1\n-- name: b\nSELECT 2\n", "t") == {
        "a": "SELECT 1",
        "b": "SELECT 2",
    }
