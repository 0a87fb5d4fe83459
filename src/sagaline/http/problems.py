"""Errors as RFC 9457 problem details, each with sagaline's stable ``code``.

The one place where an error becomes an HTTP status: a :class:`SagalineError` keeps its own
``code``; the API's own refusals (no token, a viewer acting, a body too large, bad input)
raise :class:`Problem`. ``type`` is ``about:blank`` (so ``title`` is the status's phrase)
and clients branch on ``code``, which never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import msgspec

from sagaline.model.choreography import SagaNotFoundError
from sagaline.model.errors import (
    DatabaseUnavailableError,
    DefinitionError,
    InvalidNameError,
    InvalidOperationError,
    PayloadError,
    PayloadTooLargeError,
    RunNotFoundError,
    SagalineError,
    UndecodableRowError,
    UnknownWorkflowError,
)

PROBLEM_JSON = "application/problem+json"

_STATUS: list[tuple[type[SagalineError], int]] = [
    (RunNotFoundError, 404),
    (SagaNotFoundError, 404),
    (InvalidOperationError, 409),  # and RunConflictError, its subclass
    (PayloadTooLargeError, 413),
    (InvalidNameError, 422),
    (PayloadError, 422),
    (UnknownWorkflowError, 422),
    (DefinitionError, 422),  # a start's arguments do not bind to the workflow's parameters
    (DatabaseUnavailableError, 503),
    (UndecodableRowError, 500),  # the stored row is damaged: its message says which, and what to do
]


class Problem(Exception):
    """A refusal of the API's own, rendered as a problem document."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


def from_error(exc: SagalineError) -> Problem:
    """The problem a sagaline error is shown as (500 for one the API does not expect)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return Problem(status, exc.code, str(exc))
    return Problem(500, exc.code, "the server failed to handle the request; see its log")


def body(problem: Problem, instance: str) -> bytes:
    document: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
        "instance": instance,
        **problem.extra,
    }
    return msgspec.json.encode(document)


def list_limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    """The ``limit`` URL parameter of a list (runs, sagas, locks; API and pages alike).

    Raises:
        Problem: 422, it is not an integer from 1 to ``maximum``.
    """
    try:
        limit = int(params.get("limit", default))
    except ValueError:
        raise Problem(422, "invalid_request", "limit must be an integer") from None
    if not 1 <= limit <= maximum:
        raise Problem(422, "invalid_request", f"limit must be between 1 and {maximum}")
    return limit
