"""The chaos oracle: what must hold after an experiment, judged from our own ledger.

It reads the ledger written by ``tests.chaos.saga`` (and the fault lines the harness adds)
and the runs' final state, reduced to plain data (:class:`FinalRun`), so that it shares no
code and no table with sagaline, and a test can plant faults in a result by hand.

Ledger lines, in file order (the order of the ``O_APPEND`` writes, the only order used):

- ``{"run", "act", "ev": "begin" | "end", "attempt", "pid", "t"}``: a step (``s0``..``s3``)
  or a compensation (``u0``..``u3``) begins or ends; a failing step's end has ``ok: false``;
- ``{"run", "act", "ev": "ack", "pid", "t"}``: the workflow got the step's result;
- ``{"fault", "ev": "begin" | "end", "pids", "t"}``: the harness is about to inflict a fault
  on ``pids`` (null: on every worker, as a server restart does), and it is over.

Why duplicates are bounded by the steps in flight, and what "in flight" means: an execution
is *acknowledged* once a later line proves its outcome committed — its ``ack``, or the
begin of any later act of its run (the engine moves on only after the commit). A fault can
make an act run again only if it was not acknowledged when the fault began; counting
executions that had merely *ended* would miss the ones killed between their end and their
commit. The last act of a run has no later line, so it is in flight only if it ran again.
Every duplicate must be explained by one such execution: by the worker a fault hit, begun
before the fault ended, unacknowledged when it began, followed by the duplicate after it.

A *late start* is a duplicate of another kind, counted apart: a worker stopped (SIGSTOP)
past its lease wakes up and begins an act of a run that another worker took over and ran
meanwhile. Its commit is fenced, but its side effect happens a second time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from tests.chaos.saga import STEPS

INVARIANTS = (
    "lost",
    "stuck",
    "wrong_status",
    "compensations",
    "recorded_once",
    "duplicates",
    "late_starts",
)
TERMINAL = frozenset({"COMPLETED", "COMPENSATED", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class Row:
    """One step row of a run in the store: the act it records, its status, and for a step
    its recorded result (the pid that ran it)."""

    act: str
    status: str
    pid: int | None = None


@dataclass(frozen=True)
class FinalRun:
    status: str
    rows: tuple[Row, ...]
    outcomes: tuple[int, ...] = ()
    """The seq of every outcome event (step or compensation succeeded/failed) in the run's
    history: each seq must appear once."""


@dataclass
class Execution:
    run: str
    act: str
    pid: int
    begin: int
    end: int | None = None
    ok: bool = True


@dataclass(frozen=True)
class Fault:
    kind: str
    begin: int
    end: int
    pids: frozenset[int] | None


@dataclass
class Verdict:
    runs: int = 0
    faults: int = 0
    executions: int = 0
    duplicates: int = 0
    in_flight: int = 0
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def counts(self) -> dict[str, int]:
        return {name: len(self.violations.get(name, [])) for name in INVARIANTS}

    @property
    def figures(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "faults": self.faults,
            "executions": self.executions,
            "duplicates": self.duplicates,
            "in_flight_at_faults": self.in_flight,
            "violations": self.counts(),
        }

    def explain(self, limit: int = 8) -> str:
        """The violations found, a few of each kind: for an assertion's message."""
        return "; ".join(
            f"{len(found)} {name}: {', '.join(found[:limit])}"
            for name, found in self.violations.items()
            if found
        )


def position(act: str) -> int:
    """The order of acts in any run: s0 < s1 < s2 < s3 < u3 < u2 < u1 < u0."""
    index = int(act[1:])
    return index if act[0] == "s" else STEPS + (STEPS - 1 - index)


def planned(fail_at: int) -> tuple[list[str], list[str], str]:
    """The acts a plan runs (forward, then the compensations) and its final status."""
    if fail_at < 0:
        return [f"s{i}" for i in range(STEPS)], [], "COMPLETED"
    undo = [f"u{i}" for i in reversed(range(fail_at))]
    return [f"s{i}" for i in range(fail_at + 1)], undo, "COMPENSATED" if undo else "FAILED"


class Ledger:
    """The ledger's lines, indexed: executions per (run, act), acks, faults."""

    def __init__(self, lines: Sequence[Mapping[str, Any]]) -> None:
        self.executions: dict[tuple[str, str], list[Execution]] = defaultdict(list)
        self.proofs: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.faults: list[Fault] = []
        self.acts: dict[str, set[str]] = defaultdict(set)
        self._faults_on: dict[int | None, list[Fault]] = defaultdict(list)
        open_: dict[tuple[str, str, int], Execution] = {}
        begun: dict[str, tuple[int, frozenset[int] | None]] = {}
        for i, line in enumerate(lines):
            if "fault" in line:
                if line["ev"] == "begin":
                    pids = line.get("pids")
                    begun[line["fault"]] = (i, None if pids is None else frozenset(pids))
                else:
                    start, pids = begun.pop(line["fault"])
                    fault = Fault(line["fault"], start, i, pids)
                    self.faults.append(fault)
                    for pid in pids if pids is not None else [None]:
                        self._faults_on[pid].append(fault)
                continue
            run, act, ev = line["run"], line["act"], line["ev"]
            if ev == "begin":
                execution = Execution(run, act, line["pid"], i)
                self.executions[run, act].append(execution)
                self.acts[run].add(act)
                open_[run, act, line["pid"]] = execution
                self.proofs[run].append((i, position(act) - 1))  # proves every earlier act
            elif ev == "end":
                found = open_.pop((run, act, line["pid"]), None)
                if found is not None:
                    found.end, found.ok = i, bool(line.get("ok", True))
            else:
                self.proofs[run].append((i, position(act)))

    def faults_on(self, pid: int) -> list[Fault]:
        """The faults that hit ``pid``: its own, and those on every worker."""
        return [*self._faults_on.get(pid, []), *self._faults_on.get(None, [])]

    def acknowledged(self, run: str, act: str) -> int | None:
        """The first line proving that ``act`` of ``run`` is recorded."""
        at = position(act)
        return min((i for i, upto in self.proofs[run] if upto >= at), default=None)

    def first(self, run: str, act: str, which: str) -> int | None:
        runs = self.executions.get((run, act), [])
        marks = [e.begin if which == "begin" else e.end for e in runs]
        return min((m for m in marks if m is not None), default=None)


def check(
    plans: Mapping[str, int],
    lines: Sequence[Mapping[str, Any]],
    final: Mapping[str, FinalRun],
) -> Verdict:
    """Judge an experiment: ``plans`` maps every started run to its ``fail_at``."""
    ledger = Ledger(lines)
    verdict = Verdict(runs=len(plans), faults=len(ledger.faults))
    for run_id, fail_at in plans.items():
        run = final.get(run_id)
        if run is None:
            verdict.violations["lost"].append(run_id)
        elif run.status not in TERMINAL:
            verdict.violations["stuck"].append(f"{run_id} {run.status}")
        else:
            _check_run(verdict, ledger, run_id, fail_at, run)
    _check_duplicates(verdict, ledger)
    return verdict


def _check_run(verdict: Verdict, ledger: Ledger, run_id: str, fail_at: int, run: FinalRun) -> None:
    forward, undo, status = planned(fail_at)
    bad = verdict.violations
    if run.status != status:
        bad["wrong_status"].append(f"{run_id} {run.status} (planned {status})")
    for act in sorted(ledger.acts[run_id] - set(forward) - set(undo)):
        kind = "compensations" if act[0] == "u" else "wrong_status"
        bad[kind].append(f"{run_id} ran {act}, which its plan never reaches")
    for act in forward:
        if ledger.first(run_id, act, "end") is None:
            bad["wrong_status"].append(f"{run_id} {run.status} but {act} never ran to its end")
    for act in undo:
        if ledger.first(run_id, act, "end") is None:
            bad["compensations"].append(f"{run_id} skipped {act}")
    sequence = [*forward, *undo]
    for before, after in pairwise(sequence):
        ended, begun = ledger.first(run_id, before, "end"), ledger.first(run_id, after, "begin")
        if ended is not None and begun is not None and begun < ended:
            kind = "compensations" if after[0] == "u" else "wrong_status"
            bad[kind].append(f"{run_id} began {after} before {before} had ended")
    _check_rows(verdict, ledger, run_id, fail_at, run)


def _check_rows(verdict: Verdict, ledger: Ledger, run_id: str, fail_at: int, run: FinalRun) -> None:
    forward, undo, _ = planned(fail_at)
    want = Counter((act, "FAILED" if act == f"s{fail_at}" else "SUCCEEDED") for act in forward)
    want.update((act, "SUCCEEDED") for act in undo)
    got = Counter((row.act, row.status) for row in run.rows)
    bad = verdict.violations["recorded_once"]
    if got != want:
        extra, missing = dict(got - want), dict(want - got)
        bad.append(f"{run_id} rows: extra {extra or '{}'}, missing {missing or '{}'}")
    for row in run.rows:
        runners = {e.pid for e in ledger.executions.get((run_id, row.act), [])}
        if row.pid is not None and row.pid not in runners:
            bad.append(f"{run_id} {row.act} recorded as run by {row.pid}, which never ran it")
    twice = sorted(seq for seq, n in Counter(run.outcomes).items() if n > 1)
    if twice:
        bad.append(f"{run_id} outcome events written twice for seq {twice}")


def _check_duplicates(verdict: Verdict, ledger: Ledger) -> None:
    in_flight: set[tuple[int, str, str, int]] = set()
    late = 0
    for (run_id, act), runs in ledger.executions.items():
        verdict.executions += len(runs)
        verdict.duplicates += len(runs) - 1
        acked = ledger.acknowledged(run_id, act)
        for earlier, later in zip(runs, [*runs[1:], None], strict=True):
            hit = [
                f
                for f in ledger.faults_on(earlier.pid)
                if earlier.begin < f.end
                and (acked is None or acked > f.begin)
                and (later is None or later.begin > f.begin)
            ]
            if later is not None and not hit and _started_late(ledger, earlier, later):
                late += 1
                verdict.violations["late_starts"].append(
                    f"{run_id} {act} ran again (line {later.begin}) by {later.pid}, woken up "
                    f"after {earlier.pid} had taken the run over"
                )
            elif later is not None and not hit:
                verdict.violations["duplicates"].append(
                    f"{run_id} {act} ran again (line {later.begin}) with no fault to explain it"
                )
            if later is not None or not _is_last(ledger, run_id, act):
                in_flight.update((f.begin, run_id, act, earlier.begin) for f in hit)
    verdict.in_flight = len(in_flight)
    if verdict.duplicates - late > verdict.in_flight:
        verdict.violations["duplicates"].append(
            f"{verdict.duplicates} duplicate executions for {verdict.in_flight} in flight at faults"
        )


def _started_late(ledger: Ledger, earlier: Execution, later: Execution) -> bool:
    """``later``'s worker was stopped (a fault on it alone) before ``earlier`` began on
    another worker, and began the act again after that, so once it woke (a stopped process
    writes nothing; its first lines may precede the fault's end line): it acted on a run
    it had lost."""
    return earlier.pid != later.pid and any(
        f.pids is not None and f.begin < earlier.begin < later.begin
        for f in ledger.faults_on(later.pid)
    )


def _is_last(ledger: Ledger, run_id: str, act: str) -> bool:
    """No later act of the run ever began: nothing in the ledger can acknowledge it."""
    at = position(act)
    return not any(position(a) > at for a in ledger.acts[run_id])


def late_writes(
    lines: Sequence[Mapping[str, Any]], final: Mapping[str, FinalRun], pid: int
) -> list[str]:
    """Writes by ``pid`` that landed after it lost the run: rows recording it as the runner
    of an act that another worker took over during a fault on ``pid``, and outcome events
    written twice."""
    ledger = Ledger(lines)
    faults = [f for f in ledger.faults if f.pids is not None and pid in f.pids]
    found = []
    for run_id, run in final.items():
        for row in run.rows:
            if row.pid != pid:
                continue
            runs = ledger.executions.get((run_id, row.act), [])
            if any(e.pid != pid and e.begin > f.begin for e in runs for f in faults):
                found.append(f"{run_id} {row.act}")
        found.extend(f"{run_id} seq {s}" for s, n in Counter(run.outcomes).items() if n > 1)
    return found


def planned_failures(plans: Iterable[int]) -> int:
    return sum(1 for fail_at in plans if fail_at >= 0)
