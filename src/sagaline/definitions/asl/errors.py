"""ASL errors: a name and a cause, matched by Retry and Catch.

A state machine fails with data, not with Python types: ``{"Error": name, "Cause": text}``.
Every failure inside the interpreter is an :class:`AslError` carrying that pair, whatever
raised it (a Fail state, a path that matched nothing, a Python step's exception, a
timeout), so Retry/Catch matching is one rule over names.

    Exception
     └── AslError             an ASL error: ``name``, ``cause``
          └── (raised by the machine's states, resources and processing)
    SagalineError
     └── ExecutionFailed      the machine ended FAILED: what a workflow run raises
"""

from __future__ import annotations

from collections.abc import Sequence

from sagaline.model.errors import SagalineError

ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
QUERY_EVALUATION = "States.QueryEvaluationError"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
BRANCH_FAILED = "States.BranchFailed"
RESULT_PATH_MATCH = "States.ResultPathMatchFailure"
PARAMETER_PATH = "States.ParameterPathFailure"
ITEM_READER = "States.ItemReaderFailed"
EXCEEDED_TOLERATED = "States.ExceedToleratedFailureThreshold"
DATA_LIMIT = "States.DataLimitExceeded"
NO_CHOICE = "States.NoChoiceMatched"

_NOT_CAUGHT_BY_ALL = frozenset({RUNTIME})
"""Errors no wildcard matches. AWS goes further for States.Runtime: no Retrier or Catcher
sees it, even one that names it (recorded behaviour, the corpus's test_catch_states_runtime)."""


class AslError(Exception):
    """An ASL error: ``name`` (``Error``) and ``cause`` (``Cause``, may be None)."""

    def __init__(self, name: str | None, cause: str | None = None) -> None:
        self.name = name
        self.cause = cause
        super().__init__(f"{name}: {cause}" if cause else str(name))

    def output(self) -> dict[str, str | None]:
        """The error output a Catcher passes on (AWS keeps unset fields as null)."""
        return {"Error": self.name, "Cause": self.cause}


def runtime(state: str, entered: int, text: str, name: str = RUNTIME) -> AslError:
    """The error AWS raises for a state that cannot be processed, worded as AWS does."""
    return AslError(
        name,
        f"An error occurred while executing the state '{state}' "
        f"(entered at the event id #{entered}). {text}",
    )


def matches(patterns: Sequence[str], name: str | None) -> bool:
    """Does a Retrier's or Catcher's ``ErrorEquals`` match the error ``name``?"""
    error = name or ""
    if error == RUNTIME:
        return False
    for pattern in patterns:
        if pattern == error:
            return True
        if error in _NOT_CAUGHT_BY_ALL:
            continue
        if pattern == ALL:
            return True
        if pattern == TASK_FAILED and error != TIMEOUT:
            return True
    return False


def python_error_name(qualified: str) -> str:
    """A Python exception's ASL name: its class name, without module or outer classes."""
    return qualified.rsplit(".", 1)[-1]


class ExecutionFailed(SagalineError):
    """The state machine ended in a Fail state or an uncaught error.

    Raised out of the run's workflow so that the engine unwinds what the machine's
    ``sagaline:`` steps did (their compensations), as for any failing workflow.
    """

    code = "asl_execution_failed"

    def __init__(self, error: str | None, cause: str | None) -> None:
        self.error = error
        self.cause = cause
        super().__init__(f"state machine failed: {error}: {cause}")
