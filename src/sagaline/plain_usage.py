"""Usage lines for every ``sagaline`` command, shared by the command modules."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class PlainUsage(TyperCommand):
    """Usage lines as in man pages (``RUN_ID``), not typer's ``{RUN_ID}``, which reads as
    a template placeholder left unfilled."""

    # Any: the context class is typer's vendored, private click.
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]
