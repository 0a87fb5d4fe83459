"""``sagaline.testing.crash_test``: it passes a correct saga at every crash point, and it
catches the bugs that crashes expose (decisions made outside a step, effects outside a step)
with a report that names the crash point and the broken invariant."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sagaline.testing import crash_test
from sagaline.testing.crash_report import Boundary
from tests.testing import sagas

pytestmark = pytest.mark.crash


def test_a_correct_saga_ends_the_same_after_a_crash_at_every_commit(tmp_path: Path) -> None:
    report = crash_test(sagas.place_order, sagas.Order("o1"), db=tmp_path)
    assert report.ok, report.explain()
    ref = report.reference
    assert ref is not None and ref.status == "COMPLETED"
    assert ref.path == ("reserve", "charge", "sleep", "ship")  # the day passed on a fake clock
    assert ref.effects == {"reserve": 1, "charge": 1, "ship": 1}
    assert [b.boundary for b in report.boundaries] == [
        Boundary(n, before) for n in range(1, ref.commits + 1) for before in (True, False)
    ]
    by_place = {str(b.boundary): b.outcome for b in report.boundaries}
    assert all(o is not None and o.crashed for o in by_place.values())
    # Really killed: the step whose commit was lost ran again in the resuming process.
    before_charge = by_place["just before commit 2"]
    assert before_charge is not None and before_charge.effects["charge"] == 2
    assert "every one ended as uncrashed" in report.explain()
    assert (tmp_path / "after_02.db").exists()  # kept for `sagaline runs show --db ...`


def test_a_failing_saga_compensates_the_same_after_a_crash_at_every_commit() -> None:
    report = crash_test(sagas.place_order, sagas.Order("o2", lost_in_transit=True))
    assert report.ok, report.explain()
    assert report.reference is not None
    assert report.reference.status == "COMPENSATED"
    assert report.reference.compensations == ("refund", "release")
    assert not Path(report.folder).exists()  # a temporary folder, removed when it passed


def test_a_coin_flipped_outside_a_step_is_caught() -> None:
    report = crash_test(sagas.gamble, 3)
    assert not report.ok
    problems = [p for b in report.failures for p in b.problems]
    assert any("BLOCKED" in p or "another path" in p for p in problems), report.explain()
    text = report.explain()
    assert "crash points broke an invariant" in text and "random()" in text
    assert Path(report.folder).exists()  # kept to look into when it failed
    shutil.rmtree(report.folder)


def test_a_branch_on_the_wall_clock_is_caught() -> None:
    report = crash_test(sagas.quote, "ann")
    assert report.reference is not None and report.reference.path == ("send_quote", "book")
    assert not report.ok
    # Replayed after the restart, the check of time.time() says the quote has expired.
    failed = {str(b.boundary): b.problems for b in report.failures}
    assert any("expire" in p for problems in failed.values() for p in problems), failed
    assert "just before commit 1" not in failed  # send_quote ran afresh there: no gap
    shutil.rmtree(report.folder)


def test_an_effect_outside_a_step_is_caught_by_the_ledger() -> None:
    report = crash_test(sagas.notify, "bob")
    assert not report.ok
    failed = {str(b.boundary): " ".join(b.problems) for b in report.failures}
    assert "'email' 2 times" in failed["just after commit 2"], report.explain()
    assert "at most 0" in failed["just after commit 2"]
    shutil.rmtree(report.folder)


def test_a_module_that_defines_no_such_workflow_is_reported(tmp_path: Path) -> None:
    report = crash_test(sagas.gamble, 1, module="json", db=tmp_path)
    assert not report.ok and not report.boundaries
    assert "registered no workflow 'tests.testing.sagas.gamble'" in report.explain()


def test_crash_test_runs_on_postgresql(postgres_url: str) -> None:
    report = crash_test(sagas.confirm, "cy", db=postgres_url)
    assert report.ok, report.explain()
    assert len(report.boundaries) == 2 * 3
    assert _schemas_like(postgres_url) == []  # each crash point's schema dropped once read


def _schemas_like(url: str) -> list[str]:
    import asyncpg

    base, _, query = url.partition("?")
    prefix = query.removeprefix("schema=")

    async def read() -> list[str]:
        conn = await asyncpg.connect(base)
        try:
            rows = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{prefix}%"
            )
        finally:
            await conn.close()
        return [str(r["nspname"]) for r in rows]

    return asyncio.run(read())
