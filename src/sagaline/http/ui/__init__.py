"""The web UI at ``/``: server-rendered pages (Jinja2, autoescaped), a stylesheet and one
small script for live updates and in-place confirmation, all shipped in the package.

Pages read without JavaScript; the script only adds live updates (server-sent events) and
confirming an action without leaving the page.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sagaline.engine.engine import Engine
from sagaline.http.sessions import Sessions
from sagaline.http.ui.actions import Forms
from sagaline.http.ui.locks import Locks
from sagaline.http.ui.pages import Pages
from sagaline.http.ui.render import STATIC
from sagaline.http.ui.sagas import Sagas

PUBLIC = ("/signin",)
PUBLIC_PREFIXES = ("/static/",)
"""The stylesheet and the script hold no data: the sign-in page needs them."""


def ui_routes(
    engine: Engine, sessions: Sessions, stopping: Callable[[], bool], sagas: Sagas
) -> list[BaseRoute]:
    pages = Pages(engine, sessions, stopping, sagas)
    forms = Forms(engine, sessions)
    locks = Locks(engine)
    acting = [
        Route(f"/runs/{{run_id:path}}/{action}", forms.handler(action), methods=["POST"])
        for action in ("cancel", "retry", "skip", "signal")
    ]
    return [
        Route("/", pages.landing, methods=["GET"]),
        Route("/signin", forms.signin_form, methods=["GET"]),
        Route("/signin", forms.signin, methods=["POST"]),
        Route("/signout", forms.signout, methods=["POST"]),
        Route("/runs", pages.runs, methods=["GET"]),
        *acting,
        Route("/runs/{run_id:path}/live", pages.live, methods=["GET"]),
        Route("/runs/{run_id:path}", pages.run, methods=["GET"]),
        Route("/sagas", sagas.list, methods=["GET"]),
        Route("/sagas/{correlation_id:path}", sagas.show, methods=["GET"]),
        Route("/locks", locks.list, methods=["GET"]),
        Route("/locks/{key:path}", locks.show, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


__all__ = ["PUBLIC", "PUBLIC_PREFIXES", "Sagas", "ui_routes"]
