"""Where a state runs: the host, the history, the context object and the variables.

A Map iteration or a Parallel branch runs in a child scope: it reads the variables of the
scopes around it, and what it assigns stays its own (AWS's variable scoping). The context
object (``$$`` / ``$states.context``) is derived, per state, from the execution's and the
Map item's data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagaline.definitions.asl.host import History, Host

JSONPATH = "JSONPath"
JSONATA = "JSONata"


class Variables(Mapping[str, Any]):
    """Variables visible in a scope: its own over those of the scopes around it."""

    def __init__(self, parent: Variables | None = None) -> None:
        self.parent = parent
        self.own: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        scope: Variables | None = self
        while scope is not None:
            if name in scope.own:
                return scope.own[name]
            scope = scope.parent
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.flat())

    def __len__(self) -> int:
        return len(self.flat())

    def flat(self) -> dict[str, Any]:
        outer = self.parent.flat() if self.parent is not None else {}
        return {**outer, **self.own}

    def assign(self, values: Mapping[str, Any]) -> None:
        self.own.update(values)


@dataclass
class Scope:
    """One thread of states: the top level, a Parallel branch or a Map iteration."""

    host: Host
    history: History
    execution: dict[str, Any]
    state_machine: dict[str, Any]
    language: str = JSONPATH
    variables: Variables = field(default_factory=Variables)
    map_item: dict[str, Any] | None = None

    def child(self, language: str, map_item: dict[str, Any] | None = None) -> Scope:
        return Scope(
            self.host,
            self.history,
            self.execution,
            self.state_machine,
            language,
            Variables(self.variables),
            map_item,
        )

    def context(
        self, state: str, entered_time: str, retry_count: int = 0, token: str | None = None
    ) -> dict[str, Any]:
        """The context object as a state sees it."""
        current: dict[str, Any] = {"Name": state, "EnteredTime": entered_time}
        if retry_count:
            current["RetryCount"] = retry_count
        ctx: dict[str, Any] = {
            "Execution": self.execution,
            "StateMachine": self.state_machine,
            "State": current,
        }
        if token is not None:
            ctx["Task"] = {"Token": token}
        if self.map_item is not None:
            ctx["Map"] = {"Item": self.map_item}
        return ctx
