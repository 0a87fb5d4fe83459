"""``sagaline asl validate`` and ``sagaline asl run``, as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sagaline.asl_cli import asl_app

EXAMPLES = Path(__file__).parents[2] / "examples" / "asl"


def test_validate_accepts_the_order_saga_and_points_at_a_broken_transition(
    tmp_path: Path,
) -> None:
    ok = CliRunner().invoke(asl_app, ["validate", str(EXAMPLES / "order_saga.json")])
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Z"}}}))
    result = CliRunner().invoke(asl_app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "/States/A/Next" in result.output


def test_run_prints_the_states_timeline_and_the_output(tmp_path: Path) -> None:
    order = {"order_id": "o-5", "sku": "book", "amount": 3, "card": "ok"}
    result = CliRunner().invoke(
        asl_app,
        [
            "run",
            str(EXAMPLES / "order_saga.json"),
            "--input",
            json.dumps(order),
            "--import",
            str(EXAMPLES / "order.py"),
            "--db",
            f"sqlite:///{tmp_path / 'r.db'}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ShipOrder" in result.output
    assert "TRACK-o-5" in result.output
