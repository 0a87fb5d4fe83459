"""Pages from templates: Jinja2 with autoescaping on, so run ids, error texts and payloads
(anything a user or a workflow wrote) reach the browser as text, never as markup.

Templates and static files are package data (``ui/templates``, ``ui/static``), shipped in
the wheel: the UI needs no CDN and no build step.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from sagaline.http.auth import Principal
from sagaline.http.sessions import Session

HERE = Path(__file__).parent
STATIC = HERE / "static"

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def run_url(run_id: str, action: str = "") -> str:
    """The run's page (or one of its action paths); the id is quoted whole, slashes too."""
    return f"/runs/{quote(run_id, safe='')}" + (f"/{action}" if action else "")


def lock_url(key: str) -> str:
    """A lock key's page; the key is quoted whole, as a run id is."""
    return f"/locks/{quote(key, safe='')}"


def moment(text: str | None) -> str:
    """An RFC 3339 time as the pages show it: to the second, in UTC."""
    if not text:
        return ""
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S UTC")


def error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    kind = str(error.get("type", "")).rsplit(".", 1)[-1]
    message = str(error.get("message", ""))
    return f"{kind}: {message}" if kind else message


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


ENV.filters.update(moment=moment, error_text=error_text, as_json=as_json, short=short)
ENV.globals.update(run_url=run_url, lock_url=lock_url, urlencode=urlencode)


def page(
    request: Request,
    template: str,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page for the signed-in caller: the template gets who they are and their CSRF token
    (every form that acts must carry it) and the results of their last actions."""
    who: Principal | None = getattr(request.state, "principal", None)
    session: Session | None = getattr(request.state, "session", None)
    flash: list[tuple[bool, str]] = []
    if session is not None:
        flash, session.flash = session.flash, []
    html = ENV.get_template(template).render(
        who=who,
        csrf="" if session is None else session.csrf,
        flash=flash,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status)
