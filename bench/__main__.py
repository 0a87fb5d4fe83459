"""The benchmark suite: ``python -m bench [--quick] [--only sqlite|postgres]``.

Prints one table and writes ``bench/results/suite.json``. Every figure sits next to the
floor measured in the same run on the same database: single-row INSERT+COMMIT per second
with the engine's durability settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import scenarios
from bench.report import print_table

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", type=Path, default=RESULTS / "suite.json")
    args = parser.parse_args()
    sizes = scenarios.Sizes.quick() if args.quick else scenarios.Sizes()
    backends = args.only or ["sqlite", "postgres"]
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        for backend in backends:
            rows[backend] = asyncio.run(scenarios.run_backend(backend, Path(tmp), args.pg, sizes))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "sizes": sizes.__dict__,
        "backends": rows,
    }
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
