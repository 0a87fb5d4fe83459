"""What :func:`sagaline.testing.crash_test` found: each crash point's outcome against the
uncrashed run's, and the invariants it broke, in plain words.

The checks are pure functions of what the worker processes read back from their databases
and ledgers, so they can be tested (and trusted) apart from the processes that feed them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sagaline.model.status import RunStatus
from sagaline.testing._crash_child import Found

RUN_ID = "crash-test"
_RECORDED = {
    "StepSucceeded": "step",
    "StepFailed": "step",
    "CompensationSucceeded": "compensation",
    "CompensationFailed": "compensation",
}
_HINT = (
    "A run that takes another path after a crash decides something outside a step: "
    "random(), time.time() or datetime.now(), uuid.uuid4(), a read of a file, a setting or "
    "a service. Move it into a @step (its result is recorded and replayed) or use "
    "sagaline.now() / sagaline.uuid4(), which replay the same."
)


@dataclass(frozen=True)
class Boundary:
    """A crash point: just before the ``commit``-th commit reaches the database, or just
    after it landed."""

    commit: int
    before: bool

    @property
    def label(self) -> str:
        return f"{'before' if self.before else 'after'}_{self.commit:02d}"

    def __str__(self) -> str:
        return f"just {'before' if self.before else 'after'} commit {self.commit}"


@dataclass(frozen=True)
class Outcome:
    """How one run ended, as its database and the effects ledger tell."""

    status: str
    settled: bool
    commits: int
    commit_log: tuple[str, ...]
    path: tuple[str, ...]
    """The calls the run recorded (steps, sleeps, waits, children), in order."""
    branched: bool
    """It ran parallel branches: the order of its calls may rightly vary."""
    compensations: tuple[str, ...]
    """The compensations recorded as done, in the order they ran."""
    repeats: tuple[str, ...]
    """Steps or compensations whose result the history records more than once."""
    unsettled: tuple[str, ...]
    """Runs of the database (children too) left running, suspended or pending."""
    error: str | None
    effects: Counter[str]
    crashed: bool = True
    """False: the run finished before reaching its crash point (it made fewer commits)."""

    @classmethod
    def of(cls, found: Found, effects: Counter[str], prefix: str, crashed: bool = True) -> Outcome:
        def short(name: str) -> str:
            return name.removeprefix(prefix)

        mine = sorted((s for s in found.steps if s["run"] == RUN_ID), key=lambda s: s["seq"])
        calls = [s for s in mine if s["kind"] != "compensation"]
        events = sorted(found.events, key=lambda e: e["id"])
        recorded = Counter(
            (e["run"], e["seq"], short(str(e.get(_RECORDED[e["type"]], ""))))
            for e in events
            if e["type"] in _RECORDED
        )
        return cls(
            status=found.status or "unknown",
            settled=found.settled,
            commits=found.commits,
            commit_log=tuple(found.commit_log),
            path=tuple(_call(s, short) for s in calls),
            branched=any(s["branch"] for s in calls),
            compensations=tuple(
                short(str(e["compensation"]))
                for e in events
                if e["type"] == "CompensationSucceeded"
            ),
            repeats=tuple(
                f"{name} (run {run!r}, call {seq}) is recorded {n} times"
                for (run, seq, name), n in recorded.items()
                if n > 1
            ),
            unsettled=tuple(
                f"run {r['run']!r} ({short(r['workflow'])}) was left {r['status']}"
                for r in found.runs
                if not RunStatus(r["status"]).is_settled
            ),
            error=_why(found.run_error, prefix),
            effects=Counter({short(k): n for k, n in effects.items()}),
            crashed=crashed,
        )


def _why(error: dict[str, Any] | None, prefix: str) -> str | None:
    """The run's error without its operator advice (what to deploy, what to retry): in a
    crash test the code did not change, so only the first clause helps."""
    message = str((error or {}).get("message", "")).split("; ")[0]
    return (message.replace(f"'{prefix}", "'") if prefix else message) or None


def _call(step: dict[str, Any], short: Callable[[str], str]) -> str:
    name, kind = short(str(step["name"])), str(step["kind"])
    said = name if kind in ("step", name) else f"{kind} {name}"
    return said + (" (failed)" if step["status"] == "FAILED" else "")


@dataclass
class BoundaryResult:
    """One crash point: what happened there and the invariants it broke."""

    boundary: Boundary
    outcome: Outcome | None
    problems: list[str]
    what: str = ""
    """What the commit at this boundary wrote, in the uncrashed run."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        where = f"killed {self.boundary}" + (f" ({self.what})" if self.what else "")
        if self.outcome is not None and not self.outcome.crashed:
            return f"{where}: never reached (it made only {self.outcome.commits} commits)"
        return f"{where}, then resumed in a new process"


@dataclass
class CrashReport:
    """Every crash point of one workflow; ``ok`` when none broke an invariant."""

    workflow: str
    reference: Outcome | None
    folder: str
    problem: str | None = None
    """Why no crash point could be tested (the uncrashed run failed to run or settle)."""
    boundaries: list[BoundaryResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None and all(b.ok for b in self.boundaries)

    @property
    def failures(self) -> list[BoundaryResult]:
        return [b for b in self.boundaries if not b.ok]

    def explain(self) -> str:
        """Which crash point broke which invariant, in plain words."""
        head = f"crash test of workflow {self.workflow!r}"
        if self.problem is not None:
            return f"{head}: {self.problem}"
        ref = self.reference
        assert ref is not None
        lines = [
            f"{head}: {len(self.failures)} of {len(self.boundaries)} crash points broke an "
            f"invariant" + ("" if self.failures else " — every one ended as uncrashed"),
            f"uncrashed it ended {ref.status} after {ref.commits} commits, recording "
            f"{_list(ref.path)}; compensations: {_list(ref.compensations)}"
            + (f"; effects: {_counts(ref.effects)}" if ref.effects else ""),
        ]
        for result in self.boundaries:
            mark = "ok  " if result.ok else "FAIL"
            lines.append(f"{mark} {result.describe()}")
            lines.extend(f"       - {problem}" for problem in result.problems)
        if self.failures:
            if any(_diverged(b) for b in self.failures):
                lines.append(_HINT)
            lines.append(f"the databases and worker logs are kept in {self.folder}")
        return "\n".join(lines)


def _diverged(result: BoundaryResult) -> bool:
    return any("path" in p or "history" in p for p in result.problems)


def check(
    reference: Outcome, boundary: Boundary, got: Outcome | None, failure: str | None, in_flight: int
) -> BoundaryResult:
    """Compare one crash point's outcome with the uncrashed run's."""
    log = reference.commit_log
    what = log[boundary.commit - 1] if boundary.commit <= len(log) else ""
    if got is None:
        return BoundaryResult(boundary, None, [failure or "no outcome"], what)
    return BoundaryResult(boundary, got, list(_problems(reference, boundary, got, in_flight)), what)


def _problems(ref: Outcome, boundary: Boundary, got: Outcome, in_flight: int) -> Iterable[str]:
    if not got.settled:
        yield f"it was left {got.status}: nothing finished it after the restart"
    if got.status != ref.status:
        said = f"it ended {got.status}, where the uncrashed run ended {ref.status}"
        if got.status == RunStatus.BLOCKED and got.error:
            said += f": replay after the crash did not match the recorded history ({got.error})"
        yield said
    yield from got.repeats
    yield from got.unsettled
    if got.status == RunStatus.BLOCKED:
        return  # its path stops short where replay diverged: the status has said it all
    paths = list(_compare("recorded", "calls", ref.path, got.path, ref.branched))
    paths += _compare("ran", "compensations", ref.compensations, got.compensations, True)
    yield from paths
    same_set = sorted(ref.compensations) == sorted(got.compensations)
    if not ref.branched and same_set and ref.compensations != got.compensations:
        yield (
            f"its compensations ran in the order {_list(got.compensations)}, the uncrashed "
            f"run's in the order {_list(ref.compensations)}"
        )
    if not paths:  # on another path other effects are expected: the path has said it
        yield from _effects(ref.effects, got.effects, _allowed(boundary, got, in_flight))


def _compare(
    verb: str, what: str, ref: tuple[str, ...], got: tuple[str, ...], as_sets: bool
) -> Iterable[str]:
    same = Counter(ref) == Counter(got) if as_sets else ref == got
    if not same:
        yield (
            f"it took another path: it {verb} {what} {_list(got)}, where the uncrashed run "
            f"{verb} {_list(ref)}"
        )


def _allowed(boundary: Boundary, got: Outcome, in_flight: int) -> int:
    """Real executions a crash here may rightly repeat: the steps caught mid-way. Just
    before a commit, the one whose result it carried is done again; just after, only the
    other branches then in flight."""
    if not got.crashed:
        return 0
    return max(0, in_flight if boundary.before else in_flight - 1)


def _effects(ref: Counter[str], got: Counter[str], allowed: int) -> Iterable[str]:
    for name in sorted(ref.keys() - got.keys() | {k for k in ref if got[k] < ref[k]}):
        yield (
            f"effect {name!r} was done {_times(got[name])}, fewer than the "
            f"{_times(ref[name])} of the uncrashed run: an effect was lost"
        )
    extra = {k: got[k] - ref[k] for k in got if got[k] > ref[k]}
    if sum(extra.values()) > allowed:
        which = ", ".join(f"{k!r} {_times(got[k])} (uncrashed {ref[k]})" for k in sorted(extra))
        yield (
            f"effects were repeated: {which}; a crash here may repeat at most {allowed} (the "
            f"steps it caught mid-way), so something ran again that had already been "
            f"recorded, or that runs outside a step (the workflow's own code reruns on replay)"
        )


def _times(n: int) -> str:
    return "1 time" if n == 1 else f"{n} times"


def _list(items: Iterable[str]) -> str:
    listed = ", ".join(items)
    return f"[{listed}]" if listed else "none"


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {_times(n)}" for k, n in sorted(counts.items()))
