"""docs/api.md is generated from the OpenAPI document; it must match what the server serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_api_reference_is_generated_from_the_current_openapi_document() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "api_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_reference_lists_every_route_of_the_document() -> None:
    from sagaline.http.openapi import document

    text = (ROOT / "docs" / "api.md").read_text()
    for path, ops in document()["paths"].items():
        for method in ops:
            assert f"`{method.upper()} /api/v1{path}`" in text
