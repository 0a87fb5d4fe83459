"""The crash test's checks alone, on outcomes made by hand: each broken invariant is named
in plain words, and only what a crash may rightly change is let through."""

from __future__ import annotations

from collections import Counter

from sagaline.testing.crash_report import Boundary, Outcome, check


def _outcome(**changes: object) -> Outcome:
    base: dict[str, object] = {
        "status": "COMPENSATED",
        "settled": True,
        "commits": 5,
        "commit_log": ("a succeeded", "b failed", "x", "y", "z"),
        "path": ("a", "b (failed)"),
        "branched": False,
        "compensations": ("undo_a", "undo_0"),
        "repeats": (),
        "unsettled": (),
        "error": None,
        "effects": Counter({"a": 1}),
    }
    return Outcome(**{**base, **changes})  # type: ignore[arg-type]


def test_a_missing_compensation_is_named() -> None:
    result = check(_outcome(), Boundary(2, True), _outcome(compensations=("undo_0",)), None, 1)
    assert result.what == "b failed"
    assert result.problems == [
        "it took another path: it ran compensations [undo_0], where the uncrashed run ran "
        "[undo_a, undo_0]"
    ]
    assert result.describe() == (
        "killed just before commit 2 (b failed), then resumed in a new process"
    )


def test_compensations_out_of_order_repeats_and_stuck_runs_are_named() -> None:
    got = _outcome(
        compensations=("undo_0", "undo_a"),
        repeats=("a (run 'crash-test', call 1) is recorded 2 times",),
        unsettled=("run 'crash-test/3' (child) was left SUSPENDED",),
    )
    problems = check(_outcome(), Boundary(1, False), got, None, 1).problems
    assert problems == [
        "a (run 'crash-test', call 1) is recorded 2 times",
        "run 'crash-test/3' (child) was left SUSPENDED",
        "its compensations ran in the order [undo_0, undo_a], the uncrashed run's in the "
        "order [undo_a, undo_0]",
    ]


def test_one_repeat_is_allowed_only_where_a_step_was_caught_mid_way() -> None:
    twice = _outcome(effects=Counter({"a": 2}))
    assert check(_outcome(), Boundary(1, True), twice, None, 1).ok
    (problem,) = check(_outcome(), Boundary(1, False), twice, None, 1).problems
    assert problem.startswith("effects were repeated: 'a' 2 times (uncrashed 1)")
    lost = check(_outcome(), Boundary(1, True), _outcome(effects=Counter()), None, 1)
    assert lost.problems == [
        "effect 'a' was done 0 times, fewer than the 1 time of the uncrashed run: an effect "
        "was lost"
    ]


def test_a_blocked_run_is_explained_by_its_replay_error() -> None:
    got = _outcome(status="BLOCKED", path=("a",), error="history recorded 'a' but code calls 'c'")
    (problem,) = check(_outcome(), Boundary(3, False), got, None, 1).problems
    assert problem == (
        "it ended BLOCKED, where the uncrashed run ended COMPENSATED: replay after the crash "
        "did not match the recorded history (history recorded 'a' but code calls 'c')"
    )
