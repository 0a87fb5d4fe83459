"""The ``/api/v1`` handlers. A surface: each parses its request, calls the engine (or reads
the store), and shapes the answer with :mod:`sagaline.http.views`; nothing is decided here.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sagaline.engine.engine import Engine
from sagaline.engine.registry import get_workflow, step_defs, workflow_defs
from sagaline.http import views
from sagaline.http.auth import Principal
from sagaline.http.openapi import document
from sagaline.http.problems import Problem, list_limit
from sagaline.model.errors import PayloadDecodeError
from sagaline.model.names import check_name
from sagaline.model.records import EventRecord, RunRecord, SignalRecord, StepRecord
from sagaline.model.status import TERMINAL, RunStatus
from sagaline.store.protocol import RunQuery

audit = logging.getLogger("sagaline.http.audit")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
UNFINISHED = frozenset(RunStatus) - TERMINAL


class StartRequest(msgspec.Struct, forbid_unknown_fields=True):
    workflow: str
    input: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    run_id: str | None = None


class ReasonRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class SignalRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    payload: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


def json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(value), status, headers, "application/json")


def bad_input(detail: str) -> Problem:
    return Problem(422, "invalid_request", detail)


async def read_body(request: Request, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise bad_input(f"the request body is not valid: {exc}") from None


def principal(request: Request) -> Principal:
    found: Principal = request.state.principal
    return found


def operator(request: Request, action: str) -> Principal:
    return operator_of(principal(request), action)


def operator_of(who: Principal, action: str) -> Principal:
    """``who``, if they may act; otherwise the 403 that says which role is needed."""
    if not who.may_act:
        raise Problem(
            403,
            "forbidden",
            f"token {who.name!r} is a viewer; {action} needs a token with the operator role",
        )
    return who


def encode_cursor(created_at: float, run_id: str) -> str:
    raw = msgspec.json.encode([created_at, run_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, run_id = msgspec.json.decode(raw, type=tuple[float, str])
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise Problem(422, "invalid_cursor", "cursor is not one this API returned") from None
    return at, run_id


def timestamp(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_input(f"{name} must be an RFC 3339 date-time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def run_query(params: Mapping[str, str] | QueryParams) -> tuple[RunQuery, int]:
    """The list query given by URL parameters (the API's and the runs page's alike).

    Raises:
        Problem: 422, a parameter is not valid.
    """
    if not isinstance(params, QueryParams):
        params = QueryParams(params)
    statuses: list[RunStatus] = []
    for text in params.getlist("status"):
        try:
            statuses.append(RunStatus(text))
        except ValueError:
            names = ", ".join(s.value for s in RunStatus)
            raise bad_input(f"unknown status {text!r}; use one of {names}") from None
    limit = list_limit(params, DEFAULT_LIMIT, MAX_LIMIT)
    cursor = params.get("cursor")
    query = RunQuery(
        statuses=tuple(statuses),
        workflow=params.get("workflow") or None,
        created_after=timestamp("created_after", params.get("created_after")),
        created_before=timestamp("created_before", params.get("created_before")),
        prefix=params.get("prefix") or None,
        before=None if cursor is None else decode_cursor(cursor),
    )
    return query, limit


@dataclass(frozen=True)
class RunRecords:
    """Everything shown about one run, read with the same queries by the API and the UI."""

    run: RunRecord
    steps: list[StepRecord]
    events: list[EventRecord]
    children: list[RunRecord]
    signals: list[SignalRecord]

    def detail(self, values: bool) -> views.Json:
        return views.run_detail(
            self.run, self.steps, self.events, self.children, self.signals, values
        )


async def read_run(engine: Engine, run_id: str) -> RunRecords:
    """Raises: RunNotFoundError."""
    run = await engine.get_run(run_id)
    store = engine.store
    return RunRecords(
        run,
        await store.load_steps(run_id),
        await store.read_events(run_id),
        await store.child_runs(run_id),
        await store.load_signals(run_id),
    )


Operation = Callable[..., Awaitable[RunRecord]]
DOING = {
    "cancel": "cancelling a run",
    "retry": "retrying a run",
    "skip": "skipping a compensation",
    "signal": "signalling a run",
}
DONE = {
    "cancel": "cancelled run",
    "retry": "retried run",
    "skip": "skipped the failed compensation of run",
}


async def act(engine: Engine, who: Principal, action: str, run_id: str, reason: str) -> RunRecord:
    """Cancel, retry or skip as ``who`` (an operator), audited with their name and reason.

    Raises:
        Problem: 403 for a viewer, 422 for a blank reason.
        RunNotFoundError, InvalidOperationError: as the engine's method.
    """
    operator_of(who, DOING[action])
    if not reason.strip():
        raise bad_input("give a non-empty reason: it is kept in the run's audit trail")
    method: Operation = {
        "cancel": engine.cancel,
        "retry": engine.retry,
        "skip": engine.skip_compensation,
    }[action]
    run = await method(run_id, reason=reason, by=who.name)
    audit.info("%s %s %r: %r", who.name, DONE[action], run_id, reason)
    return run


async def send_signal(
    engine: Engine, who: Principal, run_id: str, name: str, value: Any
) -> RunRecord:
    """Signal a run as ``who`` (an operator), audited with their name."""
    operator_of(who, DOING["signal"])
    await engine.signal(run_id, name, value)
    audit.info("%s sent signal %r to run %r", who.name, name, run_id)
    return await engine.get_run(run_id)


class Api:
    """The handlers, bound to one open engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def routes(self) -> list[Route]:
        return [
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/runs", self.list_runs, methods=["GET"]),
            Route("/runs", self.start, methods=["POST"]),
            Route("/runs/{run_id:path}/cancel", self.cancel, methods=["POST"]),
            Route("/runs/{run_id:path}/retry", self.retry, methods=["POST"]),
            Route("/runs/{run_id:path}/skip", self.skip, methods=["POST"]),
            Route("/runs/{run_id:path}/signal", self.signal, methods=["POST"]),
            Route("/runs/{run_id:path}", self.show, methods=["GET"]),
            Route("/workflows", self.workflows, methods=["GET"]),
            Route("/queues", self.queues, methods=["GET"]),
        ]

    async def openapi(self, request: Request) -> Response:
        return json(document())

    async def list_runs(self, request: Request) -> Response:
        query, limit = run_query(request.query_params)
        store = self.engine.store
        runs = await store.search_runs(query, limit + 1)
        page, more = runs[:limit], len(runs) > limit
        counts = await store.count_runs(query)
        last = page[-1] if page else None
        return json(
            {
                "runs": [views.run_summary(run) for run in page],
                "counts": {s.value: counts.get(s, 0) for s in RunStatus},
                "next_cursor": encode_cursor(last.created_at, last.run_id)
                if more and last
                else None,
            }
        )

    async def show(self, request: Request) -> Response:
        records = await read_run(self.engine, request.path_params["run_id"])
        return json(records.detail(principal(request).payloads))

    async def start(self, request: Request) -> Response:
        who = operator(request, "starting a run")
        body: StartRequest = await read_body(request, StartRequest)
        args, kwargs = self._arguments(body)
        # 200 or 201 by whether the id was taken before: two identical starts racing may
        # both be told 201, for the one run they share (the start itself is idempotent).
        existed = body.run_id is not None and bool(
            await self.engine.store.load_run(check_name("run id", body.run_id))
        )
        handle = await self.engine.start(body.workflow, *args, run_id=body.run_id, **kwargs)
        run = await self.engine.get_run(handle.run_id)
        if not existed:
            audit.info("%s started run %r of %r", who.name, run.run_id, run.workflow)
        location = {"location": f"/api/v1/runs/{quote(run.run_id, safe='')}"}
        return json(views.run_summary(run), 200 if existed else 201, location)

    def _arguments(self, body: StartRequest) -> tuple[list[Any], dict[str, Any]]:
        """The request's ``input`` as the workflow's arguments, decoded to their types: the
        one argument itself, or an object of them by parameter name when there are more."""
        signature = get_workflow(body.workflow).signature
        params = list(zip(signature.params, signature.param_types, strict=True))
        given = body.input
        if len(params) == 1:
            if given is msgspec.UNSET:
                return [], {}
            param, kind = params[0]
            return [self._decode(bytes(given), kind, param.name)], {}
        if given is msgspec.UNSET:
            return [], {}
        try:
            fields = msgspec.json.decode(bytes(given), type=dict[str, msgspec.Raw] | None)
        except msgspec.ValidationError:
            raise bad_input(
                f"workflow {body.workflow!r} takes {len(params)} parameters: give input as "
                f"an object of them by name ({', '.join(p.name for p, _ in params)})"
            ) from None
        fields = fields or {}
        types = {p.name: t for p, t in params}
        unknown = sorted(set(fields) - set(types))
        if unknown:
            raise bad_input(f"workflow {body.workflow!r} has no parameter {unknown[0]!r}")
        return [], {
            name: self._decode(bytes(raw), types[name], name) for name, raw in fields.items()
        }

    def _decode(self, data: bytes, kind: Any, name: str) -> Any:
        try:
            return self.engine.codec.decode(data, kind, f"input {name!r}")
        except PayloadDecodeError as exc:
            raise Problem(
                422,
                "invalid_input",
                f"input {name!r} does not fit its parameter's type {exc.type_name}: "
                f"{exc.__cause__ or exc}",
            ) from None

    async def cancel(self, request: Request) -> Response:
        return await self._act(request, "cancel")

    async def retry(self, request: Request) -> Response:
        return await self._act(request, "retry")

    async def skip(self, request: Request) -> Response:
        return await self._act(request, "skip")

    async def _act(self, request: Request, action: str) -> Response:
        who = operator(request, DOING[action])
        body: ReasonRequest = await read_body(request, ReasonRequest)
        run = await act(self.engine, who, action, request.path_params["run_id"], body.reason)
        return json(views.run_summary(run))

    async def signal(self, request: Request) -> Response:
        who = operator(request, DOING["signal"])
        body: SignalRequest = await read_body(request, SignalRequest)
        value = None if body.payload is msgspec.UNSET else msgspec.json.decode(bytes(body.payload))
        run = await send_signal(self.engine, who, request.path_params["run_id"], body.name, value)
        return json(views.run_summary(run))

    async def workflows(self, request: Request) -> Response:
        return json(
            {
                "workflows": [
                    {
                        "name": w.name,
                        "queue": w.queue,
                        "schedule": None if w.schedule is None else w.schedule.expression,
                        "parameters": [p.name for p in w.signature.params],
                    }
                    for w in workflow_defs()
                ],
                "steps": [
                    {
                        "name": s.name,
                        "pivot": s.pivot,
                        "compensation": None if s.compensation is None else s.compensation.name,
                        "transactional": s.transactional,
                        "timeout": s.timeout,
                        "max_attempts": s.retry.max_attempts,
                    }
                    for s in step_defs()
                ],
            }
        )

    async def queues(self, request: Request) -> Response:
        limits = await self.engine.queue_limits()
        rates = await self.engine.queue_rates()
        depths = await self.engine.store.queue_depths(UNFINISHED)
        names = sorted(set(limits) | set(rates) | set(depths) | {"default"})
        return json(
            {
                "queues": [
                    {
                        "name": name,
                        "limit": limits.get(name),
                        "rate": None
                        if name not in rates
                        else {"per_second": rates[name].per_second, "burst": rates[name].burst},
                        "depth": depths.get(name, {}).get(RunStatus.PENDING, 0),
                        "by_status": {s.value: n for s, n in sorted(depths.get(name, {}).items())},
                    }
                    for name in names
                ]
            }
        )
