"""``sagaline serve`` and ``sagaline tokens …``: the HTTP API and web UI, and the tokens
that open them.

A surface: the application lives in :mod:`sagaline.http`; tokens are made and checked by
:mod:`sagaline.http.auth`. ``python -m sagaline.serve_cli`` runs these commands on their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.markup import escape

from sagaline.codecs import from_env
from sagaline.console import make_console
from sagaline.engine.engine import DEFAULT_URL, Engine
from sagaline.http.auth import Role, create_token
from sagaline.http.limits import DEFAULT_MAX_BODY_BYTES
from sagaline.model.errors import SagalineError
from sagaline.model.urls import redact
from sagaline.worker_process import import_modules

T = TypeVar("T")
console = make_console()
tokens_app = typer.Typer(
    rich_markup_mode=None,
    help="API tokens for `sagaline serve`: created, listed, revoked.",
    no_args_is_help=True,
    add_completion=False,
)
Db = Annotated[
    str,
    typer.Option("--db", envvar="SAGALINE_DB", help="Database URL (env SAGALINE_DB)."),
]
DEFAULT_DB = DEFAULT_URL


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _run(db: str, action: Callable[[Engine], Awaitable[T]]) -> T:
    async def go() -> T:
        async with Engine(db, worker=False, payload_codec=from_env()) as engine:
            return await action(engine)

    try:
        return asyncio.run(go())
    except (SagalineError, ValueError) as exc:
        raise _fail(str(exc)) from None


@tokens_app.command("create")
def create(
    name: str,
    role: Annotated[
        Role,
        typer.Option(
            "--role", help="viewer reads; operator also acts; worker only takes and answers tasks."
        ),
    ],
    db: Db = DEFAULT_DB,
    no_payloads: Annotated[
        bool,
        typer.Option("--no-payloads", help="Show payloads' shapes (JSON types), not values."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print the token alone.")] = False,
) -> None:
    """Create a token and print it, once: only its SHA-256 digest is stored."""
    token = _run(db, lambda e: create_token(e.store, name, role, not no_payloads, time.time()))
    if quiet:
        typer.echo(token)
        return
    console.print(escape(f"token {name!r} ({role.value}) created; it is shown only this once:"))
    typer.echo(token)
    console.print("use it as `Authorization: Bearer <token>`, or sign in to the web UI with it")


@tokens_app.command("list")
def list_tokens(db: Db = DEFAULT_DB) -> None:
    """List tokens (names, roles, whether revoked); tokens themselves are never stored."""
    tokens = _run(db, lambda e: e.store.list_tokens())
    for t in tokens:
        state = "revoked" if t.revoked_at is not None else "active"
        payloads = "payloads" if t.payloads else "shapes only"
        console.print(escape(f"{t.name}\t{t.role}\t{payloads}\t{state}"))
    if not tokens:
        console.print("no tokens; create one with `sagaline tokens create NAME --role viewer`")


@tokens_app.command("revoke")
def revoke(name: str, db: Db = DEFAULT_DB) -> None:
    """Revoke a token: it stops working at once, in every running server."""
    if not _run(db, lambda e: e.store.revoke_token(name, time.time())):
        raise _fail(f"no active token is named {name!r}; see `sagaline tokens list`")
    console.print(escape(f"token {name!r} revoked"))


def serve(
    db: Db = DEFAULT_DB,
    bus: Annotated[
        str | None,
        typer.Option("--bus", envvar="SAGALINE_BUS", help="Message bus URL (env SAGALINE_BUS)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Module defining workflows and steps (repeatable)."),
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also execute the imported workflows' runs in this process.",
        ),
    ] = True,
    max_body_bytes: Annotated[
        int, typer.Option(help="Larger request bodies are refused (413).")
    ] = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Serve the web UI (/), the JSON API (/api/v1), /metrics and /healthz until SIGINT or
    SIGTERM."""
    from sagaline.http.server import serve as run_server

    try:
        import_modules(imports or [])
        engine = Engine(db, worker=worker, bus=bus, payload_codec=from_env())
        console.print(escape(f"sagaline serving {redact(db)} on http://{host}:{port}"))
        console.print(
            escape(
                f"web UI: http://{host}:{port}/ (sign in with a token from "
                f"`sagaline tokens create NAME --role operator`)"
            )
        )
        asyncio.run(run_server(engine, host, port, max_body_bytes))
    except SagalineError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        pass


def _standalone() -> typer.Typer:
    app = typer.Typer(
        rich_markup_mode=None,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.add_typer(tokens_app, name="tokens")
    app.command("serve")(serve)
    return app


if __name__ == "__main__":
    _standalone()()
