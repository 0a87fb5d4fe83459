"""The UI's pages: needs attention (the landing page), the runs list, a run, and the run's
live stream. A surface: each page reads what the API's handler for the same data reads
(:func:`sagaline.http.routes.read_run`, the store's indexed list and count queries) and
renders the API's own JSON view of it, so the two never disagree.

A run whose stored rows do not decode (damaged data) is shown as such, as the CLI shows
it: the lists mark it and go on past it, and its own page says what is damaged and what
to do, never a server error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from markupsafe import Markup
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sagaline.diagrams import notes_of, outcomes_of, run_graph, svg
from sagaline.engine.engine import Engine
from sagaline.engine.registry import workflow_names
from sagaline.http import views
from sagaline.http.auth import Principal, authenticate, find_principal
from sagaline.http.problems import Problem
from sagaline.http.routes import encode_cursor, read_run, run_query
from sagaline.http.sessions import Session, Sessions
from sagaline.http.ui.render import page
from sagaline.http.ui.sagas import Sagas
from sagaline.model.advice import advise
from sagaline.model.errors import RunNotFoundError, UndecodableRowError
from sagaline.model.records import EventRecord, RunRecord, StepRecord
from sagaline.model.status import ACTIVE, RunStatus
from sagaline.store.protocol import RunQuery
from sagaline.store.rows import UndecodableRun

ATTENTION = (
    RunStatus.COMPENSATION_FAILED,
    RunStatus.FAILED_AFTER_PIVOT,
    RunStatus.BLOCKED,
)
PAGE_SIZE = 50
STREAM_SECONDS = 300.0
"""A live stream ends after this and the browser opens a new one (EventSource does by
itself): a tab left open does not hold one request for ever."""
KEEPALIVE_SECONDS = 15.0
IDLE_SECONDS = 60.0
"""An active run nobody wrote to for this long is probably held by no worker (the CLI's
threshold too): the page says so."""


def version(run: RunRecord, events: list[EventRecord]) -> str:
    """What changes whenever the run's page would: its status and its latest event."""
    last = events[-1].id if events else 0
    return f"{run.status.value}:{last}:{int(run.cancel_requested)}"


def actions(detail: dict[str, Any]) -> list[str]:
    """Which operator buttons to offer. Only a hint for the page: the engine decides, and
    its refusal (with the reason) is what the operator sees if the run moved meanwhile."""
    status = RunStatus(detail["status"])
    offered = []
    if status is RunStatus.COMPENSATION_FAILED and detail["compensation_stack"]["failed"]:
        offered.append("skip")
    if status.is_parked:
        offered.append("retry")
    if not status.is_terminal:
        offered.append("cancel")
    if not status.is_terminal and status not in (
        RunStatus.COMPENSATING,
        RunStatus.COMPENSATION_FAILED,
    ):
        offered.append("signal")
    return offered


def run_diagram(run: RunRecord, steps: list[StepRecord]) -> Markup:
    """The run drawn on its workflow by :mod:`sagaline.diagrams`, each step's outcome on
    it. Safe to embed as it is: the drawing writes every name as XML text."""
    drawn = svg(run_graph(run, steps), outcomes_of(steps), notes=notes_of(steps), inline=True)
    return Markup(drawn)


def damaged(runs: list[RunRecord]) -> dict[str, str]:
    """What is wrong with each listed run whose row did not decode, by run id."""
    return {
        run.run_id: f"undecodable: {run.problem}" for run in runs if isinstance(run, UndecodableRun)
    }


def filled(params: QueryParams) -> QueryParams:
    """The form's parameters without the blank ones (an empty field means no filter)."""
    return QueryParams([(k, v) for k, v in params.multi_items() if v.strip()])


class Pages:
    """The page handlers, bound to one open engine."""

    def __init__(
        self, engine: Engine, sessions: Sessions, stopping: Callable[[], bool], sagas: Sagas
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.stopping = stopping
        self.sagas = sagas

    async def landing(self, request: Request) -> Response:
        store = self.engine.store
        parked = await store.search_runs(RunQuery(statuses=ATTENTION), PAGE_SIZE + 1)
        counts = await store.count_runs(RunQuery())
        shown = parked[:PAGE_SIZE]
        return page(
            request,
            "landing.html",
            runs=[views.run_summary(run) for run in shown],
            problems=await self._stuck(shown),
            damaged=damaged(shown),
            more=len(parked) > PAGE_SIZE,
            counts=[(s.value, counts.get(s, 0)) for s in RunStatus],
            attention_query=str(QueryParams([("status", s.value) for s in ATTENTION])),
            stalled=await self.sagas.stalled(),
        )

    async def _stuck(self, runs: list[RunRecord]) -> dict[str, str]:
        """What is stuck in each run, as the CLI's list says it: the page's steps in one
        read. A run with a row that does not decode says so instead, and the others still
        say what is stuck in them (their steps read one run at a time)."""
        store = self.engine.store
        problems = damaged(runs)
        readable = [run for run in runs if run.run_id not in problems]
        try:
            steps = await store.load_steps_many([run.run_id for run in readable])
        except UndecodableRowError:
            steps = {}
            for run in readable:
                try:
                    steps[run.run_id] = await store.load_steps(run.run_id)
                except UndecodableRowError as exc:
                    problems[run.run_id] = f"undecodable: {exc.reason}"
        for run in readable:
            if run.run_id in steps:
                problems[run.run_id] = advise(run, steps[run.run_id]).problem
        return problems

    async def runs(self, request: Request) -> Response:
        params = filled(request.query_params)
        context: dict[str, Any] = {
            "problems": {},
            "damaged": {},
            "params": params,
            "statuses": [s.value for s in RunStatus],
            "workflows": workflow_names(),
            "runs": [],
            "counts": [],
            "next_url": None,
            "first_url": None,
            "others": [(k, v) for k, v in params.multi_items() if k not in ("status", "cursor")],
            "error": None,
        }
        try:
            default = [] if "limit" in params else [("limit", str(PAGE_SIZE))]
            query, limit = run_query(QueryParams([*params.multi_items(), *default]))
        except Problem as problem:
            context["error"] = problem.detail
            return page(request, "runs.html", 422, **context)
        store = self.engine.store
        found = await store.search_runs(query, limit + 1)
        shown = found[:limit]
        counts = await store.count_runs(query)
        marked = damaged(shown)  # said in place of an error, as the CLI's list says it
        context.update(
            runs=[views.run_summary(run) for run in shown], problems=marked, damaged=marked
        )
        context["counts"] = [(s.value, counts.get(s, 0)) for s in RunStatus]
        rest = [(k, v) for k, v in params.multi_items() if k != "cursor"]
        if "cursor" in params:
            context["first_url"] = "/runs?" + str(QueryParams(rest))
        if len(found) > limit and shown:
            cursor = encode_cursor(shown[-1].created_at, shown[-1].run_id)
            context["next_url"] = "/runs?" + str(QueryParams([*rest, ("cursor", cursor)]))
        return page(request, "runs.html", **context)

    async def run(self, request: Request) -> Response:
        run_id: str = request.path_params["run_id"]
        try:
            records = await read_run(self.engine, run_id)
        except RunNotFoundError:
            return page(request, "missing.html", 404, run_id=run_id)
        except UndecodableRowError as exc:
            return await self._damaged(request, run_id, exc)
        who: Principal = request.state.principal
        detail = records.detail(who.payloads)
        idle = time.time() - records.run.updated_at > IDLE_SECONDS
        return page(
            request,
            "run.html",
            run=detail,
            problem=advise(records.run, records.steps, idle=idle).problem,
            steps=[s for s in detail["steps"] if s["kind"] != "compensation"],
            compensations=[s for s in detail["steps"] if s["kind"] == "compensation"],
            diagram=run_diagram(records.run, records.steps),
            version=version(records.run, records.events),
            actions=actions(detail),
            active=RunStatus(detail["status"]) in ACTIVE,
        )

    async def _damaged(self, request: Request, run_id: str, exc: UndecodableRowError) -> Response:
        """The page of a run that cannot be shown: which row is damaged, and what to do.
        What of the run itself decodes (its row may be sound, its steps not) is shown."""
        try:
            run = await self.engine.store.load_run(run_id)
        except UndecodableRowError:
            run = None
        return page(
            request,
            "damaged.html",
            run_id=run_id,
            run=None if run is None else views.run_summary(run),
            error=exc,
        )

    async def live(self, request: Request) -> Response:
        """Server-sent events: ``change`` (with the run's new version) whenever the run's
        page would change; the page's script then fetches the page again and swaps in the
        parts that changed. Ends when the caller's token is revoked or the server stops."""
        run_id: str = request.path_params["run_id"]
        return StreamingResponse(
            self._changes(request, run_id),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def _changes(self, request: Request, run_id: str) -> AsyncIterator[str]:
        store = self.engine.store
        yield "retry: 2000\n\n"
        last, quiet, ends = "", time.monotonic(), time.monotonic() + STREAM_SECONDS
        while not self.stopping() and time.monotonic() < ends:
            if not await self._still_signed_in(request):
                yield "event: end\ndata: signed out\n\n"
                return
            try:
                run = await store.load_run(run_id)
            except UndecodableRowError:  # its page says so; nothing more to follow
                yield "event: end\ndata: undecodable\n\n"
                return
            if run is None:
                yield "event: end\ndata: no such run\n\n"
                return
            now = version(run, await store.read_events(run_id))
            if now != last:
                data = msgspec.json.encode({"version": now, "status": run.status.value})
                yield f"event: change\ndata: {data.decode()}\n\n"
                last, quiet = now, time.monotonic()
            elif time.monotonic() - quiet > KEEPALIVE_SECONDS:
                yield ": still here\n\n"
                quiet = time.monotonic()
            await asyncio.sleep(0.25 if run.status in ACTIVE else 1.0)

    async def _still_signed_in(self, request: Request) -> bool:
        """Asked again on every tick: a stream is a request that lasts, and revoking a token
        must end it as it ends the next request."""
        store = self.engine.store
        session: Session | None = request.state.session
        if session is None:
            return await authenticate(store, request.headers.get("authorization")) is not None
        if self.sessions.get(session.id) is None:
            return False
        return await find_principal(store, session.digest) is not None
