"""``sagaline worker``'s command line, parsed with the standard library alone.

A worker is the command started most often and waited on most: on every deploy, restart
and added replica, and a crashed worker's runs resume only once its replacement is up. The
operator commands' framework (typer, which loads pydantic, and the Rich tables) would add
about as much start-up time as the engine's own modules, so the worker's options live here
and :mod:`sagaline.entry` sends ``sagaline worker`` straight to :func:`main`; the typer
command of the same name forwards to it, so there is one definition of the options.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from sagaline.engine.engine import DEFAULT_URL
from sagaline.model.errors import SagalineError

DESCRIPTION = (
    "Run a long-lived worker: the imported workflows' runs, and with --bus the imported "
    "@sagaline.on handlers of its service and the outbox relay."
)


def parser(prog: str = "sagaline worker") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        required=True,
        metavar="MODULE",
        help="Module defining workflows and steps (repeatable): myapp.sagas or ./sagas.py.",
    )
    p.add_argument(
        "--db",
        default=os.environ.get("SAGALINE_DB", DEFAULT_URL),
        metavar="URL",
        help="Database URL (env SAGALINE_DB; default %(default)s).",
    )
    p.add_argument(
        "--queue",
        dest="queues",
        action="append",
        metavar="NAME",
        help="Queue to serve (repeatable; default: default).",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=100,
        metavar="N",
        help="Runs executed at once (default %(default)s).",
    )
    p.add_argument(
        "--lease-seconds",
        type=float,
        metavar="SECONDS",
        default=10.0,
        help="A dead worker's runs are taken over after this long (default %(default)s).",
    )
    p.add_argument(
        "--drain-seconds",
        type=float,
        metavar="SECONDS",
        default=30.0,
        help="On SIGTERM, how long runs may take to finish their step (default %(default)s).",
    )
    p.add_argument(
        "--bus",
        default=os.environ.get("SAGALINE_BUS"),
        metavar="URL",
        help="Message bus URL (nats://, amqp://, sqlite:///, postgresql://; env SAGALINE_BUS):"
        " run the handlers and relay the outbox.",
    )
    p.add_argument("--service", metavar="NAME", help="The service this worker is.")
    p.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        default=1.0,
        help="Seconds between looks for runs started elsewhere (SQLite; default %(default)s).",
    )
    p.add_argument(
        "--metrics-port",
        metavar="[HOST:]PORT",
        help="Serve Prometheus metrics at /metrics on PORT (every interface) or HOST:PORT; "
        "needs sagaline[metrics].",
    )
    return p


def say(line: str) -> None:
    """The worker's few lines about itself: plain text, flushed, for a log collector."""
    print(line, flush=True)


def main(argv: Sequence[str], prog: str = "sagaline worker") -> int:
    """Parse ``argv`` (the arguments after ``worker``) and serve until signalled.

    Returns the exit code: 0 after a signal, 1 with a message on stderr when the worker
    cannot start (a module that does not import, a database it cannot open), 2 for a
    command line argparse refuses (with its usage)."""
    args = parser(prog).parse_args(list(argv))
    from sagaline.worker_process import run_worker

    try:
        asyncio.run(
            run_worker(
                args.db,
                args.imports,
                args.queues or ["default"],
                args.concurrency,
                args.lease_seconds,
                say,
                args.drain_seconds,
                bus=args.bus,
                service=args.service,
                poll_interval=args.poll_interval,
                metrics_port=args.metrics_port,
            )
        )
    except SagalineError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
