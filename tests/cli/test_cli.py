"""The ``sagaline`` command, run in its own process as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sagaline import Engine, NonRetryable, RetryPolicy, RunFailedError, step, workflow
from tests.engine import sagas
from tests.engine.sagas import Plan


def sagaline(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagaline.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def parked_db(tmp_path: Path) -> str:
    """A database holding one completed run and one parked in COMPENSATION_FAILED."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def fill() -> None:
        async with Engine(url) as engine:
            await (await engine.start(sagas.order, Plan("ok"), run_id="ok")).result()
            bad = Plan("bad", fail_charge=True, fail_release=99)
            with contextlib.suppress(RunFailedError):
                await (await engine.start(sagas.order, bad, run_id="bad")).result()

    asyncio.run(fill())
    return url


def test_demo_runs_three_scenarios(tmp_path: Path) -> None:
    out = sagaline("demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}").stdout
    assert out.count("as expected") == 3
    assert "killed with SIGKILL" in out
    assert "release_inventory" in out and "cancel_order" in out


def test_choreography_demo_runs_four_services_on_the_embedded_broker(tmp_path: Path) -> None:
    out = sagaline("demo", "choreography", "--folder", str(tmp_path / "shop")).stdout
    assert out.count("as expected") == 3
    for service in ("order", "payment", "inventory", "shipping"):
        assert f"service {service}: worker process" in out
    for event in ("OrderCompleted", "InventoryFailed", "RefundIssued", "OrderCancelled"):
        assert event in out
    assert "killed with SIGKILL inside its book step" in out
    assert "waiting for ShipmentBooked" in out  # what the tracker saw the saga wait on


def test_runs_list_and_filter(parked_db: str) -> None:
    out = sagaline("runs", "list", "--db", parked_db).stdout
    assert "ok" in out and "bad" in out and "COMPLETED" in out
    only = sagaline("runs", "list", "--db", parked_db, "--status", "compensation_failed").stdout
    assert "COMPENSATION_FAILED" in only and "COMPLETED" not in only


def test_runs_show_prints_the_timeline(parked_db: str) -> None:
    out = sagaline("runs", "show", "bad", "--db", parked_db).stdout
    for text in ("StepFailed", "CompensationAttemptFailed", "CompensationFailed", "card declined"):
        assert text in out
    # It ends with what is stuck and the commands that move the run on.
    assert "needs attention: compensation release (undoing reserve) failed after 3" in out
    assert "sagaline runs retry bad" in out and "sagaline runs skip bad --reason" in out


def test_runs_list_says_which_compensation_is_stuck(parked_db: str) -> None:
    out = sagaline("runs", "list", "--db", parked_db).stdout
    assert "compensation release (undoing reserve) failed after 3 attempt(s)" in out


def test_skip_then_the_worker_finishes_unwinding(parked_db: str) -> None:
    out = sagaline(
        "runs", "skip", "bad", "--reason", "fixed by hand", "--by", "ana", "--db", parked_db
    )
    assert "COMPENSATING" in out.stdout

    async def finish() -> str:
        async with Engine(parked_db) as worker:
            return (await worker.wait("bad", timeout=30)).status.value

    assert asyncio.run(finish()) == "COMPENSATED"


def test_errors_are_messages_not_tracebacks(parked_db: str) -> None:
    missing = sagaline("runs", "show", "nope", "--db", parked_db, check=False)
    assert missing.returncode == 1
    assert "run 'nope' not found" in missing.stdout
    assert "Traceback" not in missing.stdout + missing.stderr
    wrong = sagaline("runs", "retry", "ok", "--db", parked_db, check=False)
    assert wrong.returncode == 1 and "only runs parked" in wrong.stdout
    status = sagaline("runs", "list", "--status", "weird", "--db", parked_db, check=False)
    assert status.returncode == 2 and "unknown status 'weird'" in status.stdout


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"x" * 4096)
    result = sagaline("runs", "list", "--db", f"sqlite:///{junk}", check=False)
    assert result.returncode == 1 and "is not a SQLite database" in result.stdout


def test_signal_from_the_shell_wakes_a_waiting_run(tmp_path: Path) -> None:
    from tests.engine import sagas_durable as d

    url = f"sqlite:///{tmp_path / 'signal.db'}"

    async def start() -> None:
        async with Engine(url) as engine:
            handle = await engine.start(d.approval, "cli", 3600.0, run_id="cli")
            while (await handle.status()).value != "SUSPENDED":
                await asyncio.sleep(0.01)

    asyncio.run(start())
    bad = sagaline(
        "runs", "signal", "cli", "approved", "--payload", "{nope", "--db", url, check=False
    )
    assert bad.returncode == 2 and "--payload is not JSON" in bad.stdout
    sagaline(
        "runs", "signal", "cli", "approved", "--payload", '{"by": "ana", "limit": 9}', "--db", url
    )

    async def finish() -> object:
        async with Engine(url) as engine:
            return await asyncio.wait_for(engine.handle("cli").result(), 30)

    assert asyncio.run(finish()) == d.Approval("ana", 9)
    shown = sagaline("runs", "show", "cli", "--db", url).stdout
    assert "SignalReceived" in shown and "SignalConsumed" in shown


@step(name="cli.markup_step", retry=RetryPolicy(max_attempts=1))
async def markup_step(text: str) -> str:
    raise NonRetryable(text)


@workflow(name="cli.markup")
async def markup_saga(text: str) -> str:
    return await markup_step(text)


def test_user_text_is_shown_literally_never_as_markup(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'markup.db'}"
    text = "card [/red] declined [bold]list[int][/bold]"

    async def fill() -> None:
        async with Engine(url) as engine:
            with contextlib.suppress(RunFailedError):
                await (await engine.start(markup_saga, text, run_id="m[1]")).result()

    asyncio.run(fill())
    listed = sagaline("runs", "list", "--db", url).stdout
    shown = sagaline("runs", "show", "m[1]", "--db", url).stdout
    assert "m[1]" in listed and text in listed.replace("\n", "")
    assert text in shown.replace("\n", "")


def test_reading_commands_never_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "x.db"
    done = sagaline("runs", "list", "--db", f"sqlite:///{missing}", check=False)
    assert done.returncode == 1
    assert f"there is no sagaline database at {missing}" in done.stdout
    assert not (tmp_path / "no").exists()  # neither the file nor its folders
    folder = sagaline("runs", "list", "--db", f"sqlite:///{tmp_path}", check=False)
    assert folder.returncode == 1 and "is a folder, not a database file" in folder.stdout
    assert "Traceback" not in done.stdout + done.stderr + folder.stdout + folder.stderr


def test_db_migrate_is_the_command_that_creates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert "schema is up to date" in sagaline("db", "migrate", "--db", url).stdout
    assert "0 run(s)" in sagaline("runs", "list", "--db", url).stdout


def test_retry_records_who_and_why(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"

    async def parked() -> None:
        async with Engine(url) as engine:
            bad = Plan("p1", fail_charge=True, fail_release=99)
            with contextlib.suppress(RunFailedError):
                await (await engine.start(sagas.order, bad, run_id="p1")).result()

    asyncio.run(parked())
    out = sagaline(
        "runs", "retry", "p1", "--db", url, "--reason", "inventory is back", "--by", "ana"
    ).stdout
    assert "p1 will be retried" in out
    shown = sagaline("runs", "show", "p1", "--db", url).stdout
    assert "reason: inventory is back" in shown and "by: ana" in shown


def test_runs_show_gives_human_durations_and_wall_clock_times(parked_db: str) -> None:
    import sqlite3

    path = parked_db.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # the last event, 2 d 4 h later
        db.execute(
            "UPDATE events SET at = at + 187200 WHERE id = "
            "(SELECT max(id) FROM events WHERE run_id = 'bad')"
        )
    out = sagaline("runs", "show", "bad", "--db", parked_db).stdout
    assert "since start" in out and "+ms" not in out
    assert "+0 ms" in out and "+2 d 4 h" in out
    wall = sagaline("runs", "show", "bad", "--db", parked_db, "--wall").stdout
    assert "time (UTC)" in wall and "+0 ms" not in wall
    assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", wall)


def test_compensation_rows_name_the_step_undone_and_the_compensation(parked_db: str) -> None:
    rows = [
        line
        for line in sagaline("runs", "show", "bad", "--db", parked_db).stdout.splitlines()
        if "Compensation" in line
    ]
    assert rows and all("│ reserve " in row and "via release" in row for row in rows), rows


def test_after_skip_with_no_worker_every_view_says_to_start_one(parked_db: str) -> None:
    worker = f"sagaline worker --import MODULE --db {parked_db}"
    skipped = sagaline("runs", "skip", "bad", "--reason", "by hand", "--db", parked_db).stdout
    assert worker in skipped
    shown = sagaline("runs", "show", "bad", "--db", parked_db).stdout
    assert "needs attention: COMPENSATING and no worker holds it" in shown
    assert "next:" in shown and worker in shown
    listed = sagaline("runs", "list", "--db", parked_db).stdout.replace("\n", "")
    assert "no worker holds it" in listed


def test_usage_lines_name_arguments_as_man_pages_do() -> None:
    usage = {
        ("runs", "show"): "runs show [OPTIONS] RUN_ID",
        ("runs", "skip"): "runs skip [OPTIONS] RUN_ID",
        ("runs", "signal"): "runs signal [OPTIONS] RUN_ID NAME",
        ("queues", "limit"): "queues limit [OPTIONS] QUEUE [LIMIT]",
    }
    for command, line in usage.items():
        out = sagaline(*command, "--help").stdout
        assert out.splitlines()[0].endswith(f" {line}"), out
