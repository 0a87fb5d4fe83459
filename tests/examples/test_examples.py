"""Every example runs as a user would run it, in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_order_saga_example_books_and_unwinds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'example.db'}"
    for _ in range(2):  # the second run finds the recorded runs: idempotent by run_id
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "order_saga.py"), url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert "-> booked ['FL-ada', 'HT-ada', 'PAY-ada']" in out
        assert "-> COMPENSATED: 75000 over a budget of 50000" in out
    assert out.count("booking flight") == 0  # nothing ran again the second time


def test_hybrid_example_publishes_domain_events_and_awaits_a_reply(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "hybrid.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "warehouse answered: {'sku': 'BOOK-1', 'bin': 'A-17'}" in out
    assert "-> track-o-1" in out
    assert "notify: order o-1 received" in out
    assert "notify: order o-1 shipped (track-o-1)" in out
