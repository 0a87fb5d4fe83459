"""Checking a definition before it runs: every problem found, each with a JSON pointer.

The rules are the spec's (fields allowed per state type and query language, transitions
that exist, terminal states, exclusive fields, Retry/Catch ranges, paths, intrinsic and
JSONata syntax) plus what AWS refuses at creation (duplicate keys, unreachable states).
A Problem's ``pointer`` is RFC 6901, so an editor can jump to the offending value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagaline.definitions.asl import document, jsonata_ql, schema
from sagaline.definitions.asl.errors import ALL
from sagaline.definitions.asl.expressions import ExpressionChecks
from sagaline.model.errors import DefinitionError


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (a JSON pointer into the document) and what."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


def _ptr(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def validate(definition: document.Source) -> list[Problem]:
    """Every problem found in ``definition`` (JSON text, a path or a mapping); [] if none."""
    problems: list[Problem] = []
    if isinstance(definition, Mapping):
        doc: Any = dict(definition)
    else:
        try:
            text = document.text_of(definition)
            doc = json.loads(text, object_pairs_hook=_pairs(problems))
        except DefinitionError as exc:
            return [Problem("", str(exc))]
        except json.JSONDecodeError as exc:
            return [Problem("", f"not valid JSON: {exc.msg} at line {exc.lineno}")]
    _Checker(problems).machine(
        doc,
        (),
        str(doc.get("QueryLanguage", "JSONPath")) if isinstance(doc, dict) else "JSONPath",
        top=True,
    )
    return problems


def _pairs(problems: list[Problem]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                problems.append(Problem("", f"duplicate field {key!r} in an object"))
            seen[key] = value
        return seen

    return hook


class _Checker(ExpressionChecks):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.names: set[str] = set()
        """State names seen so far: unique across the machine, nested ones included."""

    def add(self, where: tuple[str | int, ...], message: str) -> None:
        self.problems.append(Problem(_ptr(*where), message))

    def machine(
        self, doc: Any, where: tuple[str | int, ...], language: str, top: bool = False
    ) -> None:
        if not isinstance(doc, dict):
            self.add(where, "a state machine must be an object with StartAt and States")
            return
        allowed = {
            "Comment",
            "StartAt",
            "States",
            "Version",
            "TimeoutSeconds",
            "QueryLanguage",
            "ProcessorConfig",
        }
        for key in doc.keys() - allowed:
            self.add((*where, key), f"unknown field {key!r}")
        if doc.get("QueryLanguage", language) not in ("JSONPath", "JSONata"):
            self.add(
                (*where, "QueryLanguage"), 'not one of the allowed values ["JSONPath", "JSONata"]'
            )
        states = doc.get("States")
        if not isinstance(states, dict) or not states:
            self.add((*where, "States"), "States must be a non-empty object")
            return
        start = doc.get("StartAt")
        if not isinstance(start, str) or start not in states:
            self.add((*where, "StartAt"), f"StartAt {start!r} is not a state of this machine")
        for name, state in states.items():
            if name in self.names:
                self.add((*where, "States", name), f"state name {name!r} is used twice")
            self.names.add(name)
            self.state(name, state, states, (*where, "States", name), language)
        if not any(
            isinstance(s, dict) and (s.get("Type") in ("Succeed", "Fail") or s.get("End"))
            for s in states.values()
        ):
            self.add((*where, "States"), "no terminal state (Succeed, Fail or End: true)")
        if isinstance(start, str) and start in states:
            for name in states.keys() - schema.reachable(start, states):
                self.add((*where, "States", name), f"state {name!r} is unreachable")

    def state(
        self,
        name: str,
        state: Any,
        states: dict[str, Any],
        where: tuple[str | int, ...],
        language: str,
    ) -> None:
        if len(name) > 80:
            self.add(where, "a state name has at most 80 characters")
        if not isinstance(state, dict):
            self.add(where, "a state must be an object")
            return
        kind = state.get("Type")
        if kind not in schema.FIELDS:
            self.add((*where, "Type"), f"unknown state type {kind!r}")
            return
        lang = state.get("QueryLanguage", language)
        for key in state.keys() - schema.FIELDS[kind] - schema.COMMON:
            self.add((*where, key), f"field {key!r} is not allowed in a {kind} state")
        wrong = schema.JSONPATH_ONLY if lang == "JSONata" else schema.JSONATA_ONLY
        for key in state.keys() & wrong:
            self.add((*where, key), f"field {key!r} is not allowed with QueryLanguage {lang}")
        for a, b in schema.EXCLUSIVE:
            if a in state and b in state:
                self.add(where, f'may have only one of ["{a}", "{b}"]')
        self.transitions(kind, state, states, where)
        self.fields(kind, state, where, lang)
        for i, catcher in enumerate(state.get("Catch") or []):
            self.catcher(catcher, states, (*where, "Catch", i))
        for i, retrier in enumerate(state.get("Retry") or []):
            self.retrier(retrier, (*where, "Retry", i))
        self.handlers_last(state, where)
        if kind == "Parallel":
            branches = state.get("Branches")
            if not isinstance(branches, list) or not branches:
                self.add((*where, "Branches"), "Branches must be a non-empty array")
            for i, branch in enumerate(branches or []):
                self.machine(branch, (*where, "Branches", i), lang)
        if kind == "Map":
            processor = state.get("ItemProcessor", state.get("Iterator"))
            if processor is None:
                self.add(where, "a Map state needs an ItemProcessor (or Iterator)")
            else:
                key = "ItemProcessor" if "ItemProcessor" in state else "Iterator"
                self.machine(processor, (*where, key), lang)
            self.map_fields(state, where)

    def transitions(
        self, kind: str, state: dict[str, Any], states: dict[str, Any], where: tuple[Any, ...]
    ) -> None:
        flows = kind in ("Pass", "Task", "Wait", "Parallel", "Map")
        if flows and ("Next" in state) == bool(state.get("End")):
            self.add(where, "a state needs exactly one of Next or End: true")
        nxt = state.get("Next")
        if nxt is not None and nxt not in states:
            self.add((*where, "Next"), f"Next {nxt!r} is not a state of this machine")
        if kind == "Choice":
            choices = state.get("Choices")
            if not isinstance(choices, list) or not choices:
                self.add((*where, "Choices"), "Choices must be a non-empty array")
                return
            for i, rule in enumerate(choices):
                target = rule.get("Next") if isinstance(rule, dict) else None
                if target not in states:
                    self.add((*where, "Choices", i, "Next"), f"Next {target!r} is not a state")
                self.rule(rule, (*where, "Choices", i), state.get("QueryLanguage"), top=True)
            if "Default" in state and state["Default"] not in states:
                self.add((*where, "Default"), f"Default {state['Default']!r} is not a state")

    def rule(self, rule: Any, where: tuple[Any, ...], lang: Any, top: bool = False) -> None:
        from sagaline.definitions.asl.choice import operator_of

        if not isinstance(rule, dict):
            self.add(where, "a choice rule must be an object")
            return
        if "Condition" in rule:
            self.jsonata(rule["Condition"], (*where, "Condition"))
            return
        if not top and "Next" in rule:
            self.add((*where, "Next"), "a nested choice rule may not have Next")
        for key in ("And", "Or"):
            if key in rule:
                if not isinstance(rule[key], list) or not rule[key]:
                    self.add((*where, key), f"{key} must be a non-empty array")
                for i, sub in enumerate(rule.get(key) or []):
                    self.rule(sub, (*where, key, i), lang)
                return
        if "Not" in rule:
            self.rule(rule["Not"], (*where, "Not"), lang)
            return
        op = operator_of(rule)
        if op is None or "Variable" not in rule:
            self.add(where, "a choice rule needs a Variable and a comparison operator")
            return
        self.path(rule["Variable"], (*where, "Variable"))
        if op.endswith("Path"):
            self.path(rule[op], (*where, op))

    def fields(self, kind: str, state: dict[str, Any], where: tuple[Any, ...], lang: str) -> None:
        for key in ("InputPath", "OutputPath", "ResultPath"):
            if key in state and state[key] is not None:
                self.path(state[key], (*where, key), reference=key == "ResultPath")
        for key in (
            "ItemsPath",
            "SecondsPath",
            "TimestampPath",
            "TimeoutSecondsPath",
            "HeartbeatSecondsPath",
            "MaxConcurrencyPath",
            "ErrorPath",
            "CausePath",
        ):
            if key in state:
                self.path(state[key], (*where, key), intrinsic=key in ("ErrorPath", "CausePath"))
        for key in ("Parameters", "ResultSelector", "ItemSelector", "Credentials", "Assign"):
            if key in state:
                if key == "Credentials" and not isinstance(state[key], dict):
                    self.add((*where, key), "Credentials must be an object")
                self.template(state[key], (*where, key), lang)
        for key in ("Arguments", "Output", "Items", "Assign"):
            if key in state and lang == "JSONata":
                self.template(state[key], (*where, key), lang)
        if kind == "Wait":
            given = [
                k for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if k in state
            ]
            if len(given) != 1:
                self.add(
                    where,
                    "a Wait state needs exactly one of Seconds, SecondsPath, "
                    "Timestamp, TimestampPath",
                )
        if kind == "Task":
            self.task(state, where, lang)

    def task(self, state: dict[str, Any], where: tuple[Any, ...], lang: str) -> None:
        resource = state.get("Resource")
        if isinstance(resource, dict):
            return  # a CloudFormation intrinsic (Fn::GetAtt, Ref), resolved at deploy time
        if not isinstance(resource, str) or not resource:
            self.add((*where, "Resource"), "a Task needs a Resource")
            return
        if "${" in resource and "}" not in resource:
            self.add((*where, "Resource"), "unterminated ${...} substitution in Resource")
        if (
            ":lambda:" in resource
            and ":function:" in resource
            and not schema.LAMBDA.match(resource)
        ):
            self.add((*where, "Resource"), "not a valid Lambda function ARN")
        for key in ("TimeoutSeconds", "HeartbeatSeconds"):
            value = state.get(key)
            if (
                value is not None
                and not jsonata_ql.is_expression(value)
                and (isinstance(value, bool) or not isinstance(value, int) or value <= 0)
            ):
                self.add((*where, key), f"{key} must be a positive integer")
        timeout, beat = state.get("TimeoutSeconds"), state.get("HeartbeatSeconds")
        if isinstance(timeout, int) and isinstance(beat, int) and beat >= timeout:
            self.add((*where, "HeartbeatSeconds"), "HeartbeatSeconds must be below TimeoutSeconds")

    def map_fields(self, state: dict[str, Any], where: tuple[Any, ...]) -> None:
        if "ItemsPath" in state and state["ItemsPath"] is None:
            self.add((*where, "ItemsPath"), '"ItemsPath" may not be null')
        percent = state.get("ToleratedFailurePercentage")
        if isinstance(percent, int | float) and not 0 <= percent <= 100:
            self.add((*where, "ToleratedFailurePercentage"), "must be between 0 and 100")
        count = state.get("ToleratedFailureCount")
        if isinstance(count, int | float) and count < 0:
            self.add((*where, "ToleratedFailureCount"), "must not be negative")
        for key, sub in (("ItemReader", "ReaderConfig"), ("ItemBatcher", None)):
            block = state.get(key)
            block = block.get(sub) if sub and isinstance(block, dict) else block
            if isinstance(block, dict):
                for field in list(block):
                    if field + "Path" in block:
                        self.add((*where, key), f'may have only one of ["{field}", "{field}Path"]')

    def catcher(self, catcher: Any, states: dict[str, Any], where: tuple[Any, ...]) -> None:
        if not isinstance(catcher, dict):
            self.add(where, "a Catcher must be an object")
            return
        self.error_equals(catcher.get("ErrorEquals"), (*where, "ErrorEquals"))
        if catcher.get("Next") not in states:
            self.add((*where, "Next"), f"Next {catcher.get('Next')!r} is not a state")
        if catcher.get("ResultPath") is not None:
            self.path(catcher["ResultPath"], (*where, "ResultPath"), reference=True)

    def retrier(self, retrier: Any, where: tuple[Any, ...]) -> None:
        if not isinstance(retrier, dict):
            self.add(where, "a Retrier must be an object")
            return
        self.error_equals(retrier.get("ErrorEquals"), (*where, "ErrorEquals"))
        checks = [
            ("IntervalSeconds", int, 1, "allowed minimum is 1"),
            ("MaxAttempts", int, 0, "allowed minimum is 0"),
            ("BackoffRate", float, 1, "allowed minimum is 1"),
            ("MaxDelaySeconds", int, 1, "allowed floor is 0"),
        ]
        for key, kind, low, message in checks:
            value = retrier.get(key)
            if value is None:
                continue
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if not numeric or (kind is int and not isinstance(value, int)) or value < low:
                self.add((*where, key), f"{key}: {message}")
        jitter = retrier.get("JitterStrategy")
        if jitter is not None and jitter not in ("FULL", "NONE"):
            self.add((*where, "JitterStrategy"), 'not one of the allowed values ["FULL", "NONE"]')

    def error_equals(self, names: Any, where: tuple[Any, ...]) -> None:
        if not isinstance(names, list) or not names:
            self.add(where, "ErrorEquals: non-empty required")
        elif not all(isinstance(n, str) for n in names):
            self.add(where, "ErrorEquals must list error names (strings)")
        elif ALL in names and len(names) > 1:
            self.add(where, "States.ALL must appear alone in ErrorEquals")

    def handlers_last(self, state: dict[str, Any], where: tuple[Any, ...]) -> None:
        for key in ("Retry", "Catch"):
            handlers = state.get(key) or []
            for i, handler in enumerate(handlers[:-1]):
                if isinstance(handler, dict) and ALL in (handler.get("ErrorEquals") or []):
                    self.add((*where, key, i), f"a {key} on States.ALL must come last")
