"""Input and output processing of one state, in either query language.

JSONPath: ``InputPath`` → ``Parameters`` → (the state's work) → ``ResultSelector`` →
``Assign`` → ``ResultPath`` → ``OutputPath``. JSONata: ``Arguments`` → (work) →
``Assign`` and ``Output``, both evaluated with the variables as they were before the
state. Errors are worded as AWS words them, since the conformance corpus compares causes
character for character.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagaline.definitions.asl import intrinsics, jsonata_ql, paths
from sagaline.definitions.asl.errors import QUERY_EVALUATION, RUNTIME, AslError, runtime
from sagaline.definitions.asl.scope import JSONATA, Scope


class StateRun:
    """One entry into a state: its scope, name, definition and where it was entered."""

    def __init__(
        self, scope: Scope, name: str, state: Mapping[str, Any], entered: int, raw: Any
    ) -> None:
        self.scope = scope
        self.name = name
        self.state = state
        self.entered = entered
        self.raw = raw
        self.language = str(state.get("QueryLanguage", scope.language))
        self.retry_count = 0
        resource = state.get("Resource")
        self.task_token: str | None = None
        if isinstance(resource, str) and resource.endswith(".waitForTaskToken"):
            self.task_token = f"{scope.execution['Id']}:{name}:{entered}"
        self.entered_time = scope.host.now().isoformat().replace("+00:00", "Z")

    @property
    def jsonata(self) -> bool:
        return self.language == JSONATA

    def error(self, text: str, name: str = RUNTIME) -> AslError:
        return runtime(self.name, self.entered, text, name)

    def context(self) -> dict[str, Any]:
        return self.scope.context(self.name, self.entered_time, self.retry_count, self.task_token)

    # -- JSONPath -------------------------------------------------------------------------

    def read(self, path: str, data: Any) -> Any:
        """``path`` read from ``data`` (``$``), the context (``$$``) or a variable; an
        intrinsic function where the field allows one (``ErrorPath``, ``CausePath``)."""
        try:
            if path.startswith("States."):
                return intrinsics.evaluate(
                    path, lambda p: self.read(p, data), self.scope.host.entropy
                )
            return paths.resolve(path, data, self.context(), self.scope.variables)
        except paths.PathInvalid as exc:
            raise self.error(str(exc)) from None

    def field_path(self, field: str, data: Any) -> Any:
        """A ``*Path`` field of the state (``InputPath``, ``ItemsPath``...); absent is ``$``."""
        path = self.state.get(field, "$")
        if path is None:
            return {}
        try:
            return self.read(path, data)
        except paths.PathMissing as exc:
            raise self.error(f"Invalid path '{path}' : {exc.missing}") from None

    def template(self, template: Any, data: Any) -> Any:
        """A payload template rendered against ``data`` (keys ending ``.$`` evaluated)."""

        def intrinsic(text: str, resolve: paths.Resolver) -> Any:
            return intrinsics.evaluate(text, resolve, self.scope.host.entropy)

        try:
            return paths.render(template, lambda p: self.read(p, data), intrinsic, "")
        except paths.PathMissing as exc:
            raise self.error(
                f"The JSONPath '{exc.path}' specified for the field '{exc.where}' could not "
                f"be found in the input '{paths.compact(data)}'"
            ) from None
        except paths.PathInvalid as exc:
            raise self.error(str(exc)) from None

    def effective_input(self) -> Any:
        """JSONPath: the state's input after ``InputPath``."""
        return self.field_path("InputPath", self.raw)

    def parameters(self, data: Any, field: str = "Parameters") -> Any:
        if field not in self.state:
            return data
        return self.template(self.state[field], data)

    # -- JSONata --------------------------------------------------------------------------

    def states_binding(self, **extra: Any) -> dict[str, Any]:
        return {"input": self.raw, "context": self.context(), **extra}

    def evaluate(self, value: Any, field: str, **extra: Any) -> Any:
        """A JSONata field: a ``{% %}`` expression or a template containing some."""
        states = self.states_binding(**extra)

        def one(text: str, where: str) -> Any:
            try:
                result = jsonata_ql.evaluate(
                    text,
                    states,
                    self.scope.variables,
                    self.scope.host.entropy,
                    self.scope.host.now,
                )
            except jsonata_ql.JsonataFailed as exc:
                raise self.error(
                    f"The JSONata expression '{text}' specified for the field '{where}' threw "
                    f"an error during evaluation. {exc.detail}",
                    QUERY_EVALUATION,
                ) from None
            except AslError:
                raise self.error(
                    f"The JSONata expression '{text}' specified for the field '{where}' "
                    f"returned an unsupported result type.",
                    QUERY_EVALUATION,
                ) from None
            if result is jsonata_ql.UNDEFINED:
                raise self.error(
                    f"The JSONata expression '{text}' specified for the field '{where}' "
                    f"returned nothing (undefined).",
                    QUERY_EVALUATION,
                )
            return result

        return jsonata_ql.render(value, one, field)

    def value(self, field: str, data: Any, default: Any = None) -> Any:
        """A field that may be a literal, a JSONata expression or (``FieldPath``) a path."""
        if field in self.state:
            value = self.state[field]
            return self.evaluate(value, field) if self.jsonata else value
        path_field = field + "Path"
        if path_field in self.state:
            try:
                return self.read(self.state[path_field], data)
            except paths.PathMissing as exc:
                if path_field in ("TimeoutSecondsPath", "HeartbeatSecondsPath"):
                    raise self.error(f"Invalid path '{exc.path}' : {exc.missing}") from None
                if path_field == "SecondsPath":
                    raise self.error(
                        f"The SecondsPath parameter does not reference an input value: {exc.path}"
                    ) from None
                raise self.error(
                    f"The JSONPath '{self.state[path_field]}' specified for the field "
                    f"'{path_field}' could not be found in the input '{paths.compact(data)}'"
                ) from None
        return default

    # -- the end of a state ---------------------------------------------------------------

    def assignments(self, assign: Any, base: Any, **extra: Any) -> dict[str, Any]:
        """The variables an ``Assign`` block sets, evaluated before any is set."""
        if assign is None:
            return {}
        if self.jsonata:
            values = self.evaluate(assign, "Assign", **extra)
        else:
            values = self.template(assign, base)
        if not isinstance(values, dict):
            raise self.error("Assign must be an object")
        return values

    def finish(
        self,
        value: Any,
        *,
        assign: Any = None,
        result_path: Any = "$",
        output_path: Any = "$",
        output: Any = None,
        has_output: bool = False,
        assign_base: Any = None,
        **extra: Any,
    ) -> Any:
        """The state's output from its result; applies ``Assign`` (then the variables)."""
        if self.jsonata:
            values = self.assignments(assign, None, **extra)
            out = self.evaluate(output, "Output", **extra) if has_output else value
        else:
            base = value if assign_base is None else assign_base
            values = self.assignments(assign, base)
            merged = self.raw if result_path is None else self._result_path(result_path, value)
            out = self._output_path(output_path, merged)
        self.scope.variables.assign(values)
        return out

    def _result_path(self, path: str, result: Any) -> Any:
        try:
            return paths.put(self.raw, path, result)
        except paths.PathInvalid as exc:
            raise self.error(str(exc)) from None

    def _output_path(self, path: str | None, data: Any) -> Any:
        if path is None:
            return {}
        try:
            return self.read(path, data)
        except paths.PathMissing as exc:
            raise self.error(f"Invalid path '{path}' : {exc.missing}") from None
