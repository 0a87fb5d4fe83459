"""ASL conformance: the interpreter measured against recorded AWS behaviour.

    python -m bench.asl_conformance [--corpus DIR] [--no-write]

Runs every case of ``../shared/asl-corpus`` (its README gives the formats and the
comparison rules followed here), prints the rate per category, writes
``bench/results/asl_conformance.json`` and the list of cases that still fail, with the
reason, to ``tests/definitions/asl_known_failures.txt``. ``tests/definitions/
test_asl_corpus.py`` runs the same code and fails when a rate drops below its floor.

Executions run on :class:`PureHost` (tasks answered by a replay mock built from the
case's recorded task results, time virtual): the same interpreter code a durable run
uses, without a database, so the whole corpus takes seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagaline.definitions.asl import Outcome, execute, validate
from sagaline.definitions.asl.errors import AslError
from sagaline.definitions.asl.host import PureHost, TaskRequest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "asl_conformance.json"
KNOWN_FAILURES = ROOT / "tests" / "definitions" / "asl_known_failures.txt"

FLOORS = {
    "asl-validator valid accepted": 1.0,
    "asl-validator invalid rejected": 1.0,
    "statelint expectations": 1.0,
    "localstack strict gate (350)": 0.95,
    "localstack pure, wildcard rules (414)": 0.90,
    "choice operators (491)": 0.98,
    "task mock, replay (196)": 0.80,
}
"""The rate each category must keep (the test's floors); targets from issue 13."""

_LITERAL_WILDCARDS = {"date", "timestamp", "snf_role_arn"}
_PLACEHOLDER = re.compile(r"<[^<>]+>")


def corpus_dir() -> Path:
    return Path(os.environ.get("SAGALINE_ASL_CORPUS", ROOT.parent / "shared" / "asl-corpus"))


@dataclass
class Category:
    name: str
    passed: int = 0
    total: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, case: str, reason: str | None) -> None:
        self.total += 1
        if reason is None:
            self.passed += 1
        else:
            self.failures.append((case, reason))

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 1.0


# -- comparison rules ---------------------------------------------------------------------


def normal(value: Any) -> Any:
    """JSON text parsed (both sides may hold either form)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def same_shape(expected: Any, actual: Any) -> bool:
    """The README's rule for nondeterministic cases: the same structure, any leaves."""
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(same_shape(expected[k], actual[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(same_shape(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return not isinstance(actual, dict | list)


def same(expected: Any, actual: Any, wildcards: bool, shape: bool = False) -> bool:
    if shape:
        return same_shape(expected, actual)
    if wildcards and isinstance(expected, str):
        if expected in _LITERAL_WILDCARDS:
            return True
        if _PLACEHOLDER.search(expected):
            pattern = ".*".join(re.escape(p) for p in _PLACEHOLDER.split(expected))
            return isinstance(actual, str) and re.fullmatch(pattern, actual, re.S) is not None
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(same(expected[k], actual[k], wildcards) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(same(e, a, wildcards) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return bool(expected == actual)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 160 else text[:157] + "..."


# -- executions ---------------------------------------------------------------------------


def replay_mock(recorded: list[dict[str, Any]]) -> Any:
    """A resource handler answering each Task, in order, with the recorded result."""
    queue = list(recorded)

    async def handler(request: TaskRequest) -> Any:
        if not queue:
            # Nothing was recorded: the task never answered. With a deadline, it timed out.
            if request.timeout is not None or request.heartbeat is not None:
                raise AslError("States.Timeout", None)
            raise AslError("States.Runtime", "the replay mock has no more recorded results")
        result = queue.pop(0)
        if result["event"].endswith("Succeeded"):
            return normal(result.get("output"))
        cause = result.get("cause")
        if cause is not None and not isinstance(cause, str):
            # As AWS wrote it: a Lambda called directly, with spaces; through the
            # lambda:invoke integration, compact.
            direct = ":function:" in request.resource
            cause = json.dumps(cause, separators=(", ", ": ") if direct else (",", ":"))
        raise AslError(result.get("error"), cause)

    return handler


async def run_execution(execution: dict[str, Any]) -> tuple[Any, list[tuple[str, str | None]]]:
    host = PureHost(handler=replay_mock(execution.get("task_results_in_order") or []))
    try:
        outcome = await execute(execution["definition"], normal(execution["input"]), host)
    except Exception as exc:  # a bug of the interpreter: reported as this case's reason
        crashed = Outcome("CRASHED", error=type(exc).__name__, cause=str(exc)[:300])
        return crashed, []
    pairs = [(e.type, e.name) for e in outcome.events]
    return outcome, pairs


def judge(
    execution: dict[str, Any], outcome: Any, wildcards: bool, shape: bool = False
) -> str | None:
    """None when the outcome matches the recorded one, else why not."""
    expected = execution["expected"]
    status = expected["status"]
    if status != outcome.status:
        got = outcome.status
        if outcome.status == "FAILED":
            got += f" {outcome.error}: {str(outcome.cause)[:200]}"
        return f"status: expected {status}, got {got}"
    if status == "SUCCEEDED":
        if not same(normal(expected.get("output")), normal(outcome.output), wildcards, shape):
            return (
                f"output: expected {_short(normal(expected.get('output')))}, "
                f"got {_short(outcome.output)}"
            )
        return None
    if expected.get("error") != outcome.error:
        return f"error: expected {expected.get('error')!r}, got {outcome.error!r}"
    if not same(normal(expected.get("cause")), normal(outcome.cause), wildcards):
        return f"cause: expected {_short(expected.get('cause'))}, got {_short(outcome.cause)}"
    return None


def recorded_pairs(execution: dict[str, Any]) -> list[tuple[str, str | None]]:
    out = []
    for event in execution.get("events") or []:
        name = None
        for key, details in event.items():
            state_event = key in ("stateEnteredEventDetails", "stateExitedEventDetails")
            if state_event and isinstance(details, dict):
                name = details.get("name")
        out.append((event["type"], name))
    return out


def _states_only(pairs: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    return [p for p in pairs if p[0].endswith(("StateEntered", "StateExited"))]


def _cases(path: Path) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for case in json.loads(path.read_text("utf-8"))["cases"]:
        for i, execution in enumerate(case["executions"]):
            yield f"{case['id']}#{i}", case, execution


async def _executions(corpus: Path, categories: dict[str, Category]) -> None:
    cases = corpus / "localstack" / "cases"
    strict = categories["localstack strict gate (350)"]
    pure = categories["localstack pure, wildcard rules (414)"]
    states = categories["state entry/exit sequence (recorded histories)"]
    for case_id, case, execution in _cases(cases / "executions-pure.json"):
        outcome, pairs = await run_execution(execution)
        features = case["features"]
        if not features.get("expected_has_placeholders") and not features.get(
            "nondeterministic_hint"
        ):
            strict.add(case_id, judge(execution, outcome, wildcards=False))
        shape = bool(features.get("nondeterministic_hint"))
        pure.add(case_id, judge(execution, outcome, wildcards=True, shape=shape))
        _history(states, case_id, execution, pairs)
    mock = categories["task mock, replay (196)"]
    for case_id, case, execution in _cases(cases / "executions-needs-task-mock.json"):
        outcome, pairs = await run_execution(execution)
        shape = bool(case["features"].get("nondeterministic_hint"))
        mock.add(case_id, judge(execution, outcome, wildcards=True, shape=shape))
        _history(states, case_id, execution, pairs)
    choices = categories["choice operators (491)"]
    for case_id, _case, execution in _cases(cases / "choice-operators.json"):
        outcome, _ = await run_execution(execution)
        choices.add(case_id, judge(execution, outcome, wildcards=False))


def _history(category: Category, case_id: str, execution: dict[str, Any], pairs: list[Any]) -> None:
    recorded = _states_only(recorded_pairs(execution))
    if not recorded:
        return
    ours = _states_only(pairs)
    reason = None if ours == recorded else f"state sequence differs: {len(ours)} vs {len(recorded)}"
    category.add(case_id, reason)


# -- validators ---------------------------------------------------------------------------


def _validators(corpus: Path, categories: dict[str, Category]) -> None:
    valid = categories["asl-validator valid accepted"]
    invalid = categories["asl-validator invalid rejected"]
    for path in sorted((corpus / "asl-validator" / "definitions").glob("*.json")):
        problems = _problems(path)
        if path.name.startswith("valid-"):
            why = None if not problems else f"rejected: {problems[0]}"
            valid.add(path.name, why)
        else:
            invalid.add(path.name, None if problems else "accepted")
    lint = categories["statelint expectations"]
    expectations = json.loads((corpus / "statelint" / "expectations.json").read_text("utf-8"))
    for name, expect in sorted(expectations.items()):
        count = expect.get("expected_problem_count")
        if count is None:
            continue
        problems = _problems(corpus / "statelint" / name)
        if (count == 0) != (not problems):
            got = f"{len(problems)} problems" + (f" ({problems[0]})" if problems else "")
            lint.add(name, f"expected {count} problems, got {got}")
        else:
            lint.add(name, None)


def _problems(path: Path) -> list[str]:
    return [f"{p.pointer}: {p.message}" for p in validate(path)]


# -- the report ---------------------------------------------------------------------------


def run(corpus: Path | None = None) -> dict[str, Category]:
    """Every category's result over the whole corpus."""
    corpus = corpus or corpus_dir()
    names = [*FLOORS, "state entry/exit sequence (recorded histories)"]
    categories = {name: Category(name) for name in names}
    _validators(corpus, categories)
    asyncio.run(_executions(corpus, categories))
    return categories


def table(categories: dict[str, Category]) -> str:
    lines = [
        f"| {'category':<48} | passed | total |   rate | floor |",
        "|" + "-" * 50 + "|--------|-------|--------|-------|",
    ]
    for cat in categories.values():
        floor = FLOORS.get(cat.name)
        shown = f"{floor:.0%}" if floor is not None else "  -  "
        lines.append(
            f"| {cat.name:<48} | {cat.passed:>6} | {cat.total:>5} | {cat.rate:>6.1%} | {shown:>5} |"
        )
    return "\n".join(lines)


def write(categories: dict[str, Category]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = {
        name: {
            "passed": c.passed,
            "total": c.total,
            "rate": round(c.rate, 4),
            "floor": FLOORS.get(name),
        }
        for name, c in categories.items()
    }
    RESULTS.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    lines = [
        "# ASL corpus cases that still fail, with the reason (python -m bench.asl_conformance)",
    ]
    for cat in categories.values():
        lines.append(f"\n## {cat.name}: {cat.total - cat.passed} failing")
        lines.extend(f"{case}\t{reason}" for case, reason in cat.failures)
    KNOWN_FAILURES.write_text("\n".join(lines) + "\n", "utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asl_conformance")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    categories = run(args.corpus)
    print(table(categories))
    if not args.no_write:
        write(categories)
    return 0


if __name__ == "__main__":
    sys.exit(main())
