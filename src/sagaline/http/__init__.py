"""The HTTP surface ``sagaline serve`` runs: the JSON API, the web UI and ``/metrics``."""

from __future__ import annotations

from sagaline.http.app import DEFAULT_MAX_BODY_BYTES, create_app

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]
