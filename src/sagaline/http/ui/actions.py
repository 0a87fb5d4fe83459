"""The UI's forms: sign in, sign out, and the operator's cancel, retry, skip and signal.

Every form that changes state carries the session's CSRF token, checked here before
anything else (a bearer caller, which a browser never is by itself, needs none). An action
is confirmed first: without JavaScript the server answers the first post with a
confirmation page; with it, the page's script asks in place and posts with
``confirmed=yes``, asking for JSON, and shows the result where it is. The action itself is
:func:`sagaline.http.routes.act`, the API's: same engine call, same audit record.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from sagaline.engine.engine import Engine
from sagaline.http.auth import Principal, check_token, digest
from sagaline.http.problems import Problem, from_error
from sagaline.http.routes import act, send_signal
from sagaline.http.sessions import COOKIE, LIFETIME, SIGNIN_COOKIE, Session, Sessions, same
from sagaline.http.ui.render import page, run_url
from sagaline.model.errors import SagalineError, UndecodableRowError

MAX_FIELDS = 20
NONCE = re.compile(r"[A-Za-z0-9_-]{32}")
LABEL = {
    "cancel": "Cancel the run",
    "retry": "Retry the run",
    "skip": "Skip the failed compensation",
    "signal": "Send a signal",
}


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (first value of each). Any other body reads as no
    fields at all, so it fails the CSRF check: nothing but our own forms can act."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    text = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return {}
    return {name: values[0] for name, values in fields.items()}


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another site's URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def wants_json(request: Request) -> bool:
    return request.headers.get("accept", "").startswith("application/json")


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


class Forms:
    def __init__(self, engine: Engine, sessions: Sessions) -> None:
        self.engine = engine
        self.sessions = sessions

    async def signin_form(self, request: Request) -> Response:
        return self._signin_page(request, request.query_params.get("next"), None, 200)

    def _signin_page(
        self, request: Request, target: str | None, error: str | None, status: int
    ) -> Response:
        # One nonce per browser, kept while it signs in: a second sign-in page (another
        # tab, a redirected favicon request) must not invalidate the first one's form.
        nonce = request.cookies.get(SIGNIN_COOKIE) or ""
        if not NONCE.fullmatch(nonce):
            nonce = secrets.token_urlsafe(24)
        response = page(
            request, "signin.html", status, nonce=nonce, next=safe_next(target), error=error
        )
        response.set_cookie(
            SIGNIN_COOKIE,
            nonce,
            max_age=3600,
            path="/signin",
            secure=secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    async def signin(self, request: Request) -> Response:
        form = await read_form(request)
        target = form.get("next")
        if not same(form.get("nonce"), request.cookies.get(SIGNIN_COOKIE, "\0")):
            message = "the sign-in form expired or came from another site; sign in again"
            return self._signin_page(request, target, message, 403)
        token = form.get("token", "").strip()
        who = await check_token(self.engine.store, token)
        if who is None:
            message = "that token is not valid (or it was revoked); check it and try again"
            return self._signin_page(request, target, message, 401)
        old = request.cookies.get(COOKIE)
        if old:
            self.sessions.close(old)
        session = self.sessions.open(digest(token))
        response = RedirectResponse(safe_next(target), 303)
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(LIFETIME),
            path="/",
            secure=secure(request),
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    async def signout(self, request: Request) -> Response:
        refused = self._refused(request, await read_form(request))
        if refused is not None:
            return refused
        session: Session | None = request.state.session
        if session is not None:
            self.sessions.close(session.id)
        response = RedirectResponse("/signin", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def _refused(self, request: Request, form: dict[str, str]) -> Response | None:
        """403 when a session's request lacks its CSRF token: checked before anything."""
        session: Session | None = request.state.session
        if session is None or same(form.get("csrf"), session.csrf):
            return None
        message = "this form is not one this server gave you (missing or wrong CSRF token)"
        return self._result(request, "", message, 403)

    def handler(self, action: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            return await self.act(request, action)

        return handle

    async def act(self, request: Request, action: str) -> Response:
        form = await read_form(request)
        refused = self._refused(request, form)
        if refused is not None:
            return refused
        run_id: str = request.path_params["run_id"]
        who: Principal = request.state.principal
        if not who.may_act:
            message = f"token {who.name!r} is a viewer; acting on runs needs the operator role"
            return self._result(request, run_id, message, 403)
        if form.get("confirmed") != "yes":
            return page(
                request,
                "confirm.html",
                action=action,
                label=LABEL[action],
                run_id=run_id,
                form=form,
            )
        try:
            run = await self._perform(action, who, run_id, form)
        except Problem as problem:
            return self._result(request, run_id, problem.detail, problem.status)
        except UndecodableRowError as exc:  # the run's page says what is damaged, and why
            return self._result(request, run_id, f"{LABEL[action]}: refused, {exc}", 409)
        except SagalineError as exc:
            refusal = from_error(exc)
            return self._result(request, run_id, refusal.detail, refusal.status)
        done = f"{LABEL[action]}: done; run {run_id!r} is now {run.status.value}"
        return self._result(request, run_id, done, 200, run.status.value)

    async def _perform(self, action: str, who: Principal, run_id: str, form: dict[str, str]) -> Any:
        if action != "signal":
            return await act(self.engine, who, action, run_id, form.get("reason", ""))
        name = form.get("name", "").strip()
        if not name:
            raise Problem(422, "invalid_request", "give the signal's name")
        text = form.get("payload", "").strip()
        try:
            value = msgspec.json.decode(text) if text else None
        except msgspec.DecodeError:
            raise Problem(422, "invalid_request", "the payload must be JSON (or empty)") from None
        return await send_signal(self.engine, who, run_id, name, value)

    def _result(
        self, request: Request, run_id: str, message: str, status: int, now: str | None = None
    ) -> Response:
        """The outcome: JSON for the page's script, else a redirect to the run's page that
        shows it once (or, refused before acting, a page saying why)."""
        if wants_json(request):
            return JSONResponse({"ok": status < 400, "message": message, "status": now}, status)
        session: Session | None = request.state.session
        if run_id and (status < 400 or status in (409, 422)):
            if session is not None:
                session.flash.append((status < 400, message))
            return RedirectResponse(run_url(run_id), 303)
        return page(request, "refused.html", status, message=message, run_id=run_id)
