"""The OpenAPI 3.1 document of ``/api/v1``, written by hand to match :mod:`routes`.

``tests/http`` holds the server to it (schemathesis, against a live server): every
response's status, content type and body must be the ones declared here.
"""

from __future__ import annotations

from functools import cache

from sagaline.http.locks import paths as lock_paths
from sagaline.http.locks import schemas as lock_schemas
from sagaline.http.sagas import paths as saga_paths
from sagaline.http.sagas import schemas as saga_schemas
from sagaline.http.sessions import COOKIE
from sagaline.http.spec import Json
from sagaline.http.spec import ok as _ok
from sagaline.http.spec import query as _query
from sagaline.http.spec import ref as _ref
from sagaline.model.status import RunStatus, StepKind, StepStatus


def _nullable(schema: Json) -> Json:
    return {"anyOf": [schema, {"type": "null"}]}


TIME = {"type": "string", "format": "date-time"}
ANY: Json = {}
ERROR = _nullable({"type": "object", "description": "``type`` and ``message``, and more"})
STATUS = {"type": "string", "enum": [s.value for s in RunStatus]}


def _problem(description: str) -> Json:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _object(properties: Json, required: list[str] | None = None, extra: bool = False) -> Json:
    schema: Json = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    if not extra:
        schema["additionalProperties"] = False
    return schema


RUN_SUMMARY = _object(
    {
        "run_id": {"type": "string"},
        "workflow": {"type": "string"},
        "status": STATUS,
        "queue": {"type": "string"},
        "created_at": TIME,
        "updated_at": TIME,
        "wake_at": _nullable(TIME),
        "parent_run_id": _nullable({"type": "string"}),
        "cancel_requested": {"type": "boolean"},
        "error": ERROR,
    }
)

STEP = _object(
    {
        "seq": {"type": "integer"},
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": [k.value for k in StepKind]},
        "status": {"type": "string", "enum": [s.value for s in StepStatus]},
        "attempts": {"type": "integer"},
        "error": ERROR,
        "started_at": TIME,
        "finished_at": TIME,
        "pivot": {"type": "boolean"},
        "compensable": {"type": "boolean"},
        "compensates_seq": _nullable({"type": "integer"}),
        "branch": {"type": "string"},
        "input": ANY,
        "output": ANY,
    }
)

STACK = _object(
    {
        "sealed_by_pivot": _nullable({"type": "string"}),
        "pending": {
            "type": "array",
            "items": _object(
                {"seq": {"type": "integer"}, "name": {"type": "string"}, "kind": {"type": "string"}}
            ),
        },
        "failed": _nullable(
            _object(
                {
                    "seq": {"type": "integer"},
                    "name": {"type": "string"},
                    "compensates_seq": _nullable({"type": "integer"}),
                    "attempts": {"type": "integer"},
                    "error": ERROR,
                }
            )
        ),
    }
)

RUN_DETAIL = _object(
    {
        **RUN_SUMMARY["properties"],
        "input": {"description": "The arguments (or, without payload access, their shape)"},
        "output": ANY,
        "steps": {"type": "array", "items": _ref("Step")},
        "compensation_stack": _ref("CompensationStack"),
        "children": {
            "type": "array",
            "items": _object(
                {"run_id": {"type": "string"}, "workflow": {"type": "string"}, "status": STATUS}
            ),
        },
        "signals": {
            "type": "array",
            "description": "Signals kept for the run and not yet consumed",
            "items": _object(
                {
                    "id": {"type": "integer"},
                    "name": {"type": "string"},
                    "sent_at": TIME,
                    "payload": ANY,
                }
            ),
        },
        "timeline": {
            "type": "array",
            "items": _object(
                {
                    "at": TIME,
                    "offset_ms": {"type": "number"},
                    "type": {"type": "string"},
                    "subject": {"type": "string"},
                    "detail": {"type": "string"},
                    "seq": _nullable({"type": "integer"}),
                    "data": {"type": "object"},
                }
            ),
        },
    }
)

PROBLEM = _object(
    {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable: branch on it, not on the text"},
        "instance": {"type": "string"},
    },
    extra=True,
)

REASON = _object({"reason": {"type": "string", "minLength": 1, "pattern": r"\S"}})
START = _object(
    {
        "workflow": {"type": "string", "description": "A workflow registered in the server"},
        "input": {
            "description": "The workflow's argument; an object of them by parameter name when "
            "it has several; omitted: the parameters' defaults"
        },
        "run_id": {
            "type": "string",
            "description": "Idempotency: a start with an existing id "
            "and the same input returns that run (200)",
        },
    },
    required=["workflow"],
)
SIGNAL = _object({"name": {"type": "string"}, "payload": ANY}, required=["name"])

RUN_LIST = _object(
    {
        "runs": {"type": "array", "items": _ref("RunSummary")},
        "counts": {
            "type": "object",
            "description": "Runs matching the filters other than status, by status",
            "properties": {s.value: {"type": "integer"} for s in RunStatus},
            "required": [s.value for s in RunStatus],
            "additionalProperties": False,
        },
        "next_cursor": _nullable({"type": "string"}),
    }
)

WORKFLOWS = _object(
    {
        "workflows": {
            "type": "array",
            "items": _object(
                {
                    "name": {"type": "string"},
                    "queue": {"type": "string"},
                    "schedule": _nullable({"type": "string"}),
                    "parameters": {"type": "array", "items": {"type": "string"}},
                }
            ),
        },
        "steps": {
            "type": "array",
            "items": _object(
                {
                    "name": {"type": "string"},
                    "pivot": {"type": "boolean"},
                    "compensation": _nullable({"type": "string"}),
                    "transactional": {"type": "boolean"},
                    "timeout": _nullable({"type": "number"}),
                    "max_attempts": {"type": "integer"},
                }
            ),
        },
    }
)

QUEUES = _object(
    {
        "queues": {
            "type": "array",
            "items": _object(
                {
                    "name": {"type": "string"},
                    "limit": _nullable({"type": "integer"}),
                    "rate": _nullable(
                        _object(
                            {
                                "per_second": {"type": "number"},
                                "burst": {"type": "integer"},
                            }
                        )
                    ),
                    "depth": {"type": "integer", "description": "Runs waiting for a worker"},
                    "by_status": {
                        "type": "object",
                        "description": "Unfinished runs by status (zeros left out)",
                        "additionalProperties": {"type": "integer"},
                    },
                }
            ),
        }
    }
)

UNAUTHENTICATED = _problem("No valid bearer token (`unauthenticated`)")
FORBIDDEN = _problem("The token is a viewer's (`forbidden`)")
INVALID = _problem("Bad input (`invalid_request`, `invalid_name`, `invalid_cursor`, ...)")
TOO_LARGE = _problem("The body is over the server's limit (`body_too_large`)")
NOT_FOUND = _problem("No run has this id (`run_not_found`)")
WRONG_STATE = _problem("The run's status forbids it (`invalid_operation`)")
RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}


def _body(schema: str) -> Json:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


def _action(summary: str, body: str) -> Json:
    return {
        "post": {
            "summary": summary,
            "operationId": summary.split()[0].lower(),
            "parameters": [RUN_ID],
            "requestBody": _body(body),
            "responses": {
                "200": _ok("The run after the action", "RunSummary"),
                "401": UNAUTHENTICATED,
                "403": FORBIDDEN,
                "404": NOT_FOUND,
                "409": WRONG_STATE,
                "413": TOO_LARGE,
                "422": INVALID,
            },
        }
    }


TOKEN = {"type": "string", "description": "The lease token the claim returned"}
CLAIM = _object(
    {
        "queue": {"type": "string"},
        "worker": {"type": "string", "description": "Who claims (kept with the lease)"},
        "max": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
        "wait_seconds": {
            "type": "number",
            "minimum": 0,
            "maximum": 20,
            "default": 0,
            "description": "Long-poll: wait this long for a task before answering none",
        },
    },
    required=["queue", "worker"],
)
CLAIMED = _object(
    {
        "tasks": {
            "type": "array",
            "items": _object(
                {
                    "id": {"type": "string"},
                    "token": TOKEN,
                    "run_id": {"type": "string"},
                    "step": {"type": "string"},
                    "queue": {"type": "string"},
                    "input": {
                        "type": "object",
                        "description": "The step's arguments by parameter name",
                    },
                    "attempt": {"type": "integer"},
                    "deadline": _nullable(TIME),
                }
            ),
        }
    }
)
HEARTBEAT = _object({"token": TOKEN, "details": ANY}, required=["token"])
BEAT = _object({"deadline": _nullable(TIME), "cancel_requested": {"type": "boolean"}})
COMPLETE = _object({"token": TOKEN, "result": ANY}, required=["token"])
FAIL = _object(
    {
        "token": TOKEN,
        "error": _object(
            {"type": {"type": "string"}, "message": {"type": "string"}}, required=["type"]
        ),
        "non_retryable": {"type": "boolean", "default": False},
    },
    required=["token", "error"],
)
ANSWERED = _object(
    {"id": {"type": "string"}, "outcome": {"enum": ["completed", "retrying", "failed"]}}
)
NOT_A_WORKER = _problem("The token is not a worker's (`forbidden`)")
TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}


def _task_action(summary: str, body: str, answer: str, invalid: str) -> Json:
    return {
        "post": {
            "summary": summary,
            "operationId": summary.split()[0].lower() + "Task",
            "parameters": [TASK_ID],
            "requestBody": _body(body),
            "responses": {
                "200": _ok("Done", answer),
                "401": UNAUTHENTICATED,
                "403": NOT_A_WORKER,
                "404": _problem("No task has this id (`task_not_found`)"),
                "409": _problem("The token no longer holds the task (`task_lease_lost`)"),
                "413": TOO_LARGE,
                "422": _problem(invalid),
            },
        }
    }


def _task_paths() -> Json:
    return {
        "/tasks/claim": {
            "post": {
                "summary": "Claim tasks of a queue (long-poll); worker tokens only",
                "operationId": "claimTasks",
                "requestBody": _body("ClaimRequest"),
                "responses": {
                    "200": _ok("The tasks leased to this worker (maybe none)", "ClaimedTasks"),
                    "401": UNAUTHENTICATED,
                    "403": NOT_A_WORKER,
                    "413": TOO_LARGE,
                    "422": INVALID,
                },
            }
        },
        "/tasks/{task_id}/heartbeat": _task_action(
            "Heartbeat: extend a task's lease", "HeartbeatRequest", "Heartbeat", "Bad input"
        ),
        "/tasks/{task_id}/complete": _task_action(
            "Complete a task with its result",
            "CompleteRequest",
            "TaskAnswered",
            "Bad input, or a result off the step's type (`invalid_task_result`)",
        ),
        "/tasks/{task_id}/fail": _task_action(
            "Fail a task's attempt", "FailRequest", "TaskAnswered", "Bad input"
        ),
    }


@cache
def document() -> Json:
    reads = {"401": UNAUTHENTICATED, "422": INVALID}
    return {
        "openapi": "3.1.0",
        "info": {"title": "sagaline", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/runs": {
                "get": {
                    "summary": "List runs, newest first, with counts by status",
                    "operationId": "listRuns",
                    "parameters": [
                        {
                            **_query(
                                "status",
                                {"type": "array", "items": STATUS},
                                "Only runs in these statuses (repeat the parameter)",
                            ),
                            "style": "form",
                            "explode": True,
                        },
                        _query("workflow", {"type": "string"}, "Only runs of this workflow"),
                        _query("created_after", TIME, "Created strictly after"),
                        _query("created_before", TIME, "Created strictly before"),
                        _query("prefix", {"type": "string"}, "Run ids starting with this"),
                        _query("cursor", {"type": "string"}, "next_cursor of the last page"),
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                            "Runs per page",
                        ),
                    ],
                    "responses": {"200": _ok("A page of runs", "RunList"), **reads},
                },
                "post": {
                    "summary": "Start a run of a workflow (idempotent by run_id)",
                    "operationId": "startRun",
                    "requestBody": _body("StartRequest"),
                    "responses": {
                        "200": _ok("The run with this id already existed", "RunSummary"),
                        "201": {
                            **_ok("The run was created", "RunSummary"),
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        "401": UNAUTHENTICATED,
                        "403": FORBIDDEN,
                        "409": _problem("run_id is taken by another start (`run_conflict`)"),
                        "413": TOO_LARGE,
                        "422": INVALID,
                    },
                },
            },
            "/runs/{run_id}": {
                "get": {
                    "summary": "One run: steps, compensation stack, children, signals, timeline",
                    "operationId": "showRun",
                    "parameters": [RUN_ID],
                    "responses": {
                        "200": _ok("The run", "RunDetail"),
                        "401": UNAUTHENTICATED,
                        "404": NOT_FOUND,
                    },
                }
            },
            "/runs/{run_id}/cancel": _action("Cancel a run", "ReasonRequest"),
            "/runs/{run_id}/retry": _action("Retry a parked run", "ReasonRequest"),
            "/runs/{run_id}/skip": _action("Skip a failed compensation", "ReasonRequest"),
            "/runs/{run_id}/signal": _action("Signal a run", "SignalRequest"),
            "/workflows": {
                "get": {
                    "summary": "Workflows and steps registered in the server",
                    "operationId": "listWorkflows",
                    "responses": {
                        "200": _ok("Registered definitions", "Workflows"),
                        "401": UNAUTHENTICATED,
                    },
                }
            },
            "/queues": {
                "get": {
                    "summary": "Queues: concurrency and rate limits, and depth",
                    "operationId": "listQueues",
                    "responses": {"200": _ok("Queues", "Queues"), "401": UNAUTHENTICATED},
                }
            },
            **_task_paths(),
            **lock_paths(UNAUTHENTICATED, INVALID),
            **saga_paths(UNAUTHENTICATED, INVALID),
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "401": UNAUTHENTICATED,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `sagaline tokens create NAME --role "
                    "viewer|operator|worker`",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": COOKIE,
                    "description": "The web UI's session (sign in at /signin). A request "
                    "that changes state with it must also carry the session's CSRF token in "
                    "an `x-csrf-token` header, or it is refused with 403 (`csrf`).",
                },
            },
            "schemas": {
                "Problem": PROBLEM,
                "RunSummary": RUN_SUMMARY,
                "RunDetail": RUN_DETAIL,
                "RunList": RUN_LIST,
                "Step": STEP,
                "CompensationStack": STACK,
                "StartRequest": START,
                "ReasonRequest": REASON,
                "SignalRequest": SIGNAL,
                "Workflows": WORKFLOWS,
                "Queues": QUEUES,
                "ClaimRequest": CLAIM,
                "ClaimedTasks": CLAIMED,
                "HeartbeatRequest": HEARTBEAT,
                "Heartbeat": BEAT,
                "CompleteRequest": COMPLETE,
                "FailRequest": FAIL,
                "TaskAnswered": ANSWERED,
                **lock_schemas(),
                **saga_schemas(),
            },
        },
    }
