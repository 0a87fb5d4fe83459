"""Rows whose stored text does not decode: the CLI shows them as such and goes on.

The rows are garbled the way damaged data looks to a reader whose pages are sound: a
status no version wrote, JSON cut short. Nothing is mocked: the CLI runs in its own
process on a real file.
"""

from __future__ import annotations

import sqlite3
import subprocess

from tests.cli.test_cli import parked_db, sagaline

__all__ = ["parked_db"]  # the fixture: a completed run 'ok', a parked run 'bad'


def _garble(url: str, *statements: str) -> None:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        for statement in statements:
            assert conn.execute(statement).rowcount >= 1, statement
        conn.commit()
    finally:
        conn.close()


def _shown(done: subprocess.CompletedProcess[str]) -> str:
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    return " ".join(out.split())  # Rich wraps long lines


def test_runs_list_shows_an_undecodable_row_and_the_others(parked_db: str) -> None:
    _garble(
        parked_db,
        "UPDATE runs SET status = 'GAR BLED' WHERE run_id = 'ok'",
        "UPDATE runs SET error = '{\"message\": \"cut sho' WHERE run_id = 'bad'",
    )
    done = sagaline("runs", "list", "--db", parked_db, check=False)
    out = _shown(done)
    assert done.returncode == 0, out
    assert "2 run(s)" in out and "undecodable" in out
    assert "GAR BLED" in out  # the reason names what it found


def test_runs_show_marks_an_undecodable_event_and_goes_on(parked_db: str) -> None:
    _garble(
        parked_db,
        "UPDATE events SET data = '{broken' WHERE run_id = 'bad' "
        "AND id = (SELECT min(id) FROM events WHERE run_id = 'bad')",
    )
    done = sagaline("runs", "show", "bad", "--db", parked_db, check=False)
    out = _shown(done)
    assert done.returncode == 0, out
    assert "undecodable:" in out
    assert "RunStarted" in out and "CompensationFailed" in out  # before and past it


def test_runs_show_says_when_the_steps_do_not_decode(parked_db: str) -> None:
    _garble(parked_db, "UPDATE steps SET status = 'NOPE' WHERE run_id = 'bad' AND seq = 1")
    done = sagaline("runs", "show", "bad", "--db", parked_db, check=False)
    out = _shown(done)
    assert done.returncode == 0, out
    assert "steps: undecodable:" in out and "NOPE" in out and "sagaline db check" in out


def test_runs_show_of_an_undecodable_run_is_a_one_line_error(parked_db: str) -> None:
    _garble(parked_db, "UPDATE runs SET status = 'GARBLED' WHERE run_id = 'ok'")
    done = sagaline("runs", "show", "ok", "--db", parked_db, check=False)
    out = _shown(done)
    assert done.returncode == 1
    assert "cannot be decoded" in out and "GARBLED" in out and "sagaline db check" in out
