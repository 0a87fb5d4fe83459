"""Named SQL queries loaded from a ``queries.sql`` file, in the manner of procrastinate.

Keeping SQL in .sql files keeps it out of f-strings and lets each dialect own its text.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """The file's queries by name; a name given twice is an error, never a silent override.

    A repeated name once made a lock query replace the queue-limit lock, and limited
    queues ran three times over their limit; the loader is where that is cheapest to stop.
    """
    text = resources.files(package).joinpath(filename).read_text("utf-8")
    return parse_queries(text, f"{package}/{filename}")


def parse_queries(text: str, where: str) -> dict[str, str]:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{where}: query {name!r} is named twice; name each query once")
        queries[name] = body.strip()
    return queries


def load_migrations(package: str) -> list[tuple[int, str]]:
    """Numbered migrations (``0001_initial.sql``...) of a dialect, in order."""
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d{4})_\w+\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text("utf-8")))
    return sorted(found)
