"""Crash testing for users' own workflows: kill a run at every commit boundary, resume it,
and check that it ends as it does uncrashed.

A saga is only as durable as its author's code lets it be: a decision made outside a step
(``random()``, ``time.time()``, a read of a file) replays differently after a crash, and a
step that is not idempotent runs its effect twice. :func:`crash_test` finds such bugs the
way sagaline's own crash tests do: each part runs in a real worker process that is really
killed with SIGKILL, and a fresh process resumes the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

import sagaline
from sagaline.engine.registry import WorkflowDef, default_name
from sagaline.engine.steps import current_step
from sagaline.model.codec import Codec
from sagaline.model.errors import SagalineError
from sagaline.testing._crash_child import Found, Job, name_prefix
from sagaline.testing.crash_report import (
    RUN_ID,
    Boundary,
    BoundaryResult,
    CrashReport,
    Outcome,
    check,
)

__all__ = [
    "Boundary",
    "BoundaryResult",
    "CrashReport",
    "Outcome",
    "crash_test",
    "record_effect",
]

LEDGER_ENV = "SAGALINE_CRASH_LEDGER"
# Not ``-m``: the package imports the module first, and runpy would warn of running it twice.
_CHILD = "import sys; from sagaline.testing._crash_child import main; sys.exit(main(sys.argv[1:]))"
_SLACK = 30.0  # seconds a process may take beyond the run's timeout: start-up, reading


def record_effect(what: str | None = None) -> None:
    """Count one real execution of a side effect, for :func:`crash_test`'s ledger.

    Call it from a step or compensation where it does its real work (charges, sends,
    writes). The ledger lives outside sagaline's tables, so it sees every execution, also
    those whose result a crash lost: that is how a crash test tells a step that ran twice
    from one that was merely replayed. ``what`` defaults to the running step's name.
    Outside a crash test it does nothing, so steps may call it unconditionally.
    """
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    if what is None:
        running = current_step()
        what = running.step if running is not None else "effect"
    line = msgspec.json.encode({"effect": what, "pid": os.getpid()}) + b"\n"
    # One O_APPEND write: whole lines even from concurrent processes, and it is in the
    # kernel before the process can be killed.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def crash_test(
    wf: WorkflowDef[Any, Any],
    /,
    *args: Any,
    kwargs: Mapping[str, Any] | None = None,
    module: str | None = None,
    db: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    parallel: int = 2,
    in_flight: int = 1,
    fake_clock: bool = True,
) -> CrashReport:
    """Run ``wf(*args, **kwargs)`` uncrashed, then crashed at every commit boundary; compare.

    First one worker process runs the workflow to its end: its final status, the calls it
    recorded, the compensations it ran and how many commits it made are the reference. Then,
    for each commit N and each side of it (just before N reaches the database, just after),
    a worker on a fresh database runs the workflow and SIGKILLs itself there, and a fresh
    worker process resumes the run. Each crash point passes when the resumed run:

    - ends in the reference's status (and is settled: not left running or suspended);
    - recorded every step and compensation exactly once in its history;
    - recorded the same calls as the reference (in order, unless it runs parallel branches);
    - ran every compensation the reference ran and no other (in order, likewise);
    - left no run (children included) unsettled;
    - with :func:`record_effect` in the steps: lost no effect, and repeated at most the
      ``in_flight`` steps that a crash can catch mid-way (none after a commit landed).

    Only deterministic workflows can be tested so: the workflow must take the same path
    each time it is given the same input and its steps return the same results. Results
    are not compared (a step may rightly return a new id when it runs again), and a step
    whose outcome depends on timing or on the outside world makes the reference itself
    unreliable. Workflows that wait for a signal or an event nobody sends are not supported.

    Each process imports ``module`` so the workflow and its steps are registered (with
    this process's ``sys.path``); by default the module that defines ``wf``. A ``.py`` file
    is imported under its file name, which must give the workflow the same name as here. A
    script that calls this must guard the call with ``if __name__ == "__main__":``, since
    the workers import the script. Every run has the id ``"crash-test"``, so
    ``sagaline.uuid4()`` replays alike in each.

    Timers run on a time-skipping :class:`~sagaline.testing.FakeClock` in each process
    (the next due timer comes from the database, so it works across the crash);
    ``fake_clock=False`` runs them in real time. Retry back-offs stay real: keep them short.

    Args:
        wf: the workflow; ``*args`` and ``kwargs`` are its arguments (stored as JSON).
        module: what the worker processes import to know ``wf``.
        db: a folder for the SQLite databases (one per crash point, kept for inspection),
            or a ``postgresql://`` URL (a schema per crash point, dropped once read).
            Default: a temporary folder, removed unless the test fails.
        timeout: seconds a run may take to settle, in each process.
        parallel: crash points tested at once (each uses two processes in turn).
        in_flight: how many steps may be mid-way at one moment (1 without parallel
            branches): the real executions a crash may rightly repeat.
        fake_clock: run timers on a time-skipping fake clock.

    Returns:
        A :class:`CrashReport`; ``assert report.ok, report.explain()``.

    It blocks while the processes run (seconds: two short processes per crash point); from
    an async test, ``await asyncio.to_thread(crash_test, ...)`` keeps the loop free.
    """
    if not isinstance(wf, WorkflowDef):
        raise SagalineError(f"crash_test expects a @workflow function, got {wf!r}")
    values = wf.signature.bind(args, dict(kwargs or {}))
    data = wf.signature.encode_args(Codec(), values).decode()
    name, file = _module(wf, module)
    places = _Places(db)
    tester = _Tester(
        places,
        Job(
            db="",
            module=name,
            module_file=file,
            workflow=wf.name,
            input=data,
            run_id=RUN_ID,
            out="",
            path=[p for p in sys.path if p],
            timeout=timeout,
            fake_clock=fake_clock,
            drop_schema=places.postgres,
        ),
        prefix=name_prefix(wf.name),
    )
    reference, problem = tester.reference()
    report = CrashReport(wf.name, reference, folder=str(places.folder), problem=problem)
    if reference is not None and problem is None:
        boundaries = [
            Boundary(n, before) for n in range(1, reference.commits + 1) for before in (True, False)
        ]
        with ThreadPoolExecutor(max(1, parallel)) as pool:
            found = list(pool.map(tester.crash, boundaries))
        report.boundaries = [check(reference, b, o, p, in_flight) for b, (o, p) in found]
    places.done(report.ok)
    return report


def _module(wf: WorkflowDef[Any, Any], given: str | None) -> tuple[str, str | None]:
    """The module name the workers import, and its file for when that name is not
    importable as such (a script run as ``__main__``, a test module pytest loaded)."""
    if given is not None:
        if given.endswith(".py") or "/" in given:
            path = Path(given).resolve()
            if not path.is_file():
                raise SagalineError(f"crash_test module={given!r}: no such file")
            return path.stem, str(path)
        return given, None
    name = default_name(wf.fn).removesuffix(f".{wf.fn.__qualname__}")
    loaded = sys.modules.get(wf.fn.__module__)
    file = getattr(loaded, "__file__", None)
    if not name or (name == "__main__" and file is None):
        raise SagalineError(
            f"cannot tell which module defines workflow {wf.name!r}; pass module='pkg.mod' "
            f"or module='path/to/file.py'"
        )
    return name, file


class _Places:
    """Where each process's database, job, ledger and log go."""

    def __init__(self, db: str | os.PathLike[str] | None) -> None:
        self.postgres = isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))
        self._temporary = db is None or self.postgres
        if self._temporary:
            self.folder = Path(tempfile.mkdtemp(prefix="sagaline-crash-"))
        else:
            self.folder = Path(os.fspath(db)).resolve()  # type: ignore[arg-type]
            self.folder.mkdir(parents=True, exist_ok=True)
        self._base = str(db) if self.postgres else ""
        self._token = uuid.uuid4().hex[:8]

    def url(self, label: str) -> str:
        if self.postgres:
            parts = urlsplit(self._base)
            query = dict(parse_qsl(parts.query))
            query["schema"] = f"{query.get('schema', 'crash')}_{self._token}_{label}"
            return urlunsplit(parts._replace(query=urlencode(query)))
        for old in self.folder.glob(f"{label}.*"):
            old.unlink()  # a folder reused from an earlier test: start afresh
        return f"sqlite:///{self.folder / label}.db"

    def file(self, label: str, suffix: str) -> Path:
        return self.folder / f"{label}.{suffix}"

    def done(self, ok: bool) -> None:
        if self._temporary and (ok or self.postgres):
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            shutil.rmtree(self.folder / "pycache", ignore_errors=True)


@dataclass
class _Tester:
    places: _Places
    template: Job
    prefix: str
    _env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The workers must import this very sagaline, also when it is not installed.
        src = str(Path(sagaline.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
        self._env = {**os.environ, "PYTHONPATH": path}
        if self._env.pop("PYTHONDONTWRITEBYTECODE", None):
            # Dozens of short processes would each compile sagaline and the user's code
            # anew (half of their start-up): they share a bytecode cache of their own
            # instead, in this test's folder, so the source tree stays as asked.
            self._env["PYTHONPYCACHEPREFIX"] = str(self.places.folder / "pycache")

    def reference(self) -> tuple[Outcome | None, str | None]:
        label = "reference"
        self.places.file(label, "effects.jsonl").unlink(missing_ok=True)
        url = self.places.url(label)
        code, found, log = self._spawn(label, label, url, start=True)
        if found is None or found.error is not None or code != 0:
            why = found.error if found is not None and found.error else f"exit code {code}"
            return None, f"the uncrashed run could not be run: {why}{log}"
        outcome = Outcome.of(found, self._effects(label), self.prefix)
        if not outcome.settled:
            return outcome, (
                f"the uncrashed run did not settle within {self.template.timeout:g} s "
                f"(it was {outcome.status}); it must finish on its own for a crash test"
            )
        if outcome.status == "BLOCKED":
            return outcome, (
                f"the uncrashed run was itself parked BLOCKED ({outcome.error}): it replays "
                f"differently even without a crash, when it resumes after a timer or a child"
            )
        if outcome.unsettled or outcome.repeats:
            return outcome, f"the uncrashed run: {'; '.join(outcome.unsettled + outcome.repeats)}"
        return outcome, None

    def crash(self, boundary: Boundary) -> tuple[Boundary, tuple[Outcome | None, str | None]]:
        label = boundary.label
        self.places.file(label, "effects.jsonl").unlink(missing_ok=True)
        url = self.places.url(label)
        code, found, log = self._spawn(label, f"{label}-crash", url, start=True, kill=boundary)
        if code == 0 and found is not None and found.error is None:
            return boundary, (
                Outcome.of(found, self._effects(label), self.prefix, crashed=False),
                None,
            )
        if code != -9:
            why = found.error if found is not None and found.error else f"exit code {code}"
            return boundary, (None, f"the worker meant to crash failed instead: {why}{log}")
        code, found, log = self._spawn(label, f"{label}-resume", url, start=False)
        if found is None or found.error is not None or code != 0:
            why = found.error if found is not None and found.error else f"exit code {code}"
            return boundary, (None, f"the worker resuming the run failed: {why}{log}")
        return boundary, (Outcome.of(found, self._effects(label), self.prefix), None)

    def _spawn(
        self, label: str, part: str, url: str, *, start: bool, kill: Boundary | None = None
    ) -> tuple[int, Found | None, str]:
        out, job_file, log = (self.places.file(part, s) for s in ("json", "job", "log"))
        out.unlink(missing_ok=True)
        job = msgspec.structs.replace(
            self.template,
            db=url,
            out=str(out),
            start=start,
            kill_commit=kill.commit if kill else 0,
            kill_before=kill.before if kill else False,
        )
        job_file.write_bytes(msgspec.json.encode(job))
        env = {**self._env, LEDGER_ENV: str(self.places.file(label, "effects.jsonl"))}
        command = [sys.executable, "-c", _CHILD, str(job_file)]
        with log.open("wb") as sink:
            try:
                code = subprocess.run(
                    command,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=job.timeout + _SLACK,
                ).returncode
            except subprocess.TimeoutExpired:
                code = -1  # subprocess.run has killed it
        found = msgspec.json.decode(out.read_bytes(), type=Found) if out.exists() else None
        return code, found, _tail(log) if code not in (0, -9) else ""

    def _effects(self, label: str) -> Counter[str]:
        path = self.places.file(label, "effects.jsonl")
        if not path.exists():
            return Counter()
        lines = path.read_bytes().splitlines()
        return Counter(str(msgspec.json.decode(line)["effect"]) for line in lines if line)


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return ("; its output ended:\n    " + "\n    ".join(text)) if text else ""
