"""The HTTP surface: the JSON API (and later the web UI and metrics) ``sagaline serve`` runs."""

from __future__ import annotations

from sagaline.http.app import DEFAULT_MAX_BODY_BYTES, create_app

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]
