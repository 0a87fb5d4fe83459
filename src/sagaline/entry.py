"""The ``sagaline`` command's entry point: ``sagaline worker`` goes straight to its own
parser (:mod:`sagaline.worker_cli`), every other command to the operator CLI.

A worker's start-up is on the path of every restart's recovery, so it does not load the
operator commands' modules just to be dispatched past them.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        from sagaline.worker_cli import main as worker

        sys.exit(worker(sys.argv[2:]))
    from sagaline.cli import main as cli

    cli()
