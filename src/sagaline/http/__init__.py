"""The HTTP surface ``sagaline serve`` runs: the JSON API, the web UI and ``/metrics``.

The server is loaded on first use, so a command that only names a limit (or a worker
that imports this package's token helpers) does not load Starlette and the templates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagaline.http.limits import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from sagaline.http.app import create_app

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sagaline.http.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
