"""``sagaline queues limit`` and ``queues list``: concurrency and rate limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import sagaline


def listed(db: str) -> list[str]:
    """``queues list``, its columns (tabs, which the console expands) one space apart."""
    return [
        " ".join(line.split())
        for line in sagaline("queues", "list", "--db", db).stdout.splitlines()
    ]


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'queues.db'}"
    sagaline("db", "migrate", "--db", url)
    return url


def test_rates_per_second_minute_and_hour_are_set_listed_and_removed(db: str) -> None:
    out = sagaline("queues", "limit", "mail", "--rate", "20/s", "--burst", "1", "--db", db)
    assert out.stdout.strip() == "queue 'mail': at most 20/s (burst 1)"
    sagaline("queues", "limit", "sms", "--rate", "600/m", "--db", db)
    sagaline("queues", "limit", "fax", "3", "--rate", "90/h", "--db", db)
    assert listed(db) == ["fax 3 90/h (burst 1)", "mail - 20/s (burst 1)", "sms - 10/s (burst 10)"]
    sagaline("queues", "limit", "fax", "--rate", "none", "--db", db)
    sagaline("queues", "limit", "mail", "--rate", "none", "--db", db)
    assert listed(db) == ["fax 3 -", "sms - 10/s (burst 10)"]  # the limit of fax stays


def test_a_rate_alone_leaves_the_concurrency_limit_as_it_was(db: str) -> None:
    sagaline("queues", "limit", "mail", "2", "--db", db)
    sagaline("queues", "limit", "mail", "--rate", "5/s", "--db", db)
    assert listed(db) == ["mail 2 5/s (burst 5)"]
    sagaline("queues", "limit", "mail", "--db", db)  # no LIMIT, no --rate: the limit goes
    assert listed(db) == ["mail - 5/s (burst 5)"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate", "20 per sec"], "bad rate '20 per sec': give runs per second, minute or hour"),
        (["--rate", "0/s"], "bad rate '0/s': a rate must be more than zero"),
        (["--rate", "-1/s"], "bad rate '-1/s': a rate must be more than zero"),
        (["--rate=-1/s"], "bad rate '-1/s': a rate must be more than zero"),
        (["--rate", "20/d"], "bad rate '20/d'"),
        (["--rate", "20/s", "--burst", "0"], "bad --burst 0"),
        (["--rate", "none", "--burst", "3"], "bad --burst 3"),
        (["--burst", "3"], "--burst needs --rate"),
    ],
)
def test_bad_rates_say_why_in_one_line_exit_2_and_change_nothing(
    db: str, args: list[str], says: str
) -> None:
    sagaline("queues", "limit", "mail", "4", "--db", db)
    result = sagaline("queues", "limit", "mail", *args, "--db", db, check=False)
    assert result.returncode == 2, result
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert listed(db) == ["mail 4 -"]
