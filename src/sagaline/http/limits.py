"""Limits of the HTTP surface that its command line needs without loading the server."""

from __future__ import annotations

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""Request bodies over this are refused (413) unless ``sagaline serve --max-body-bytes``."""
